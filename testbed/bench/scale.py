"""Scale (issue 23): how bring-up, real time and teardown grow with the network, side by side
with Mininet on the same topologies, and the 1,000-node mega-constellation slice.

Three parts, one JSON (results/bench/scale.json) and one plot (results/bench/scale.png):

1. The curve, ours: the generated SAGIN of `scenario(n)` (UAV Wi-Fi cells of ground users,
   UAV-satellite links, a satellite ring, edge servers; the 100-node one is the scenario issue 2
   measured) at 25 ... 1,000 nodes, each run as a user runs it, `python -m testbed run --file`,
   for 10 s.  Per phase from the run's own timings (plan, namespaces, ns-3 load and build, tap
   attach, addresses and routes, health check, command -> time zero = first packet, teardown),
   CPU (every process of the run, reaped: getrusage of children) and memory at time zero (the
   drop in MemAvailable, kernel included, and per node).
2. The curve, Mininet: the same topologies (hosts, links, addresses, routes of our plan) on
   Mininet's API with userspace Open vSwitch, no link emulation (testbed.bench.mininet_ref,
   topo "plan"); ratios ours / Mininet per size.
3. starlink-slice (topologies/): >= 1,000 namespaces, >= 2,000 links, 60 s of 10 Hz link
   updates, pings on ten paths: the issue's targets, each with its measured value.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from testbed.run.results import RESULTS
from testbed.scenario.generated import sagin as scenario

ROOT = Path(__file__).resolve().parents[2]

SIZES = [25, 50, 100, 200, 500, 1000]


def mem_available_kb() -> int:
    """The kernel's MemAvailable (kB): a run's memory is the drop in it, kernel included."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _run_dir_after(name: str, t0: float) -> Path | None:
    latest = RESULTS / name / "latest"
    if latest.is_symlink() or latest.exists():
        d = latest.resolve()
        if d.stat().st_mtime >= t0 - 1:
            return d
    return None


@dataclass
class Watched:
    """What watching one command from outside gives (`watch_run`)."""

    t0: float  # wall time the command was started
    time_zero: float | None  # the run's time zero, as `time_zero` first reported it
    cpu_s: float  # CPU of every process of the run (all reaped when the command returns)
    wall_s: float
    mem: dict[str, Any]  # {"mem_available_drop_mb": ...} 2 s after time zero, if reached
    tail: str  # the last 3,000 characters of its output


def watch_run(argv: list[str], time_zero: Callable[[float], float | None],
              timeout_s: float = 900.0, poll_s: float = 0.5,
              on_start: Callable[[subprocess.Popen[str]], Callable[[], None]] | None = None,
              on_time_zero: Callable[[float], None] | None = None) -> Watched:
    """Run a command as a user starts it and wait for it, measured from outside: the drop in
    MemAvailable 2 s after the run's time zero (`time_zero(t0)`, polled until known), the CPU
    of all its processes, its output's tail.  SIGTERM at the timeout (a run tears down on
    it).  `on_start(proc)` may start a sampler and return what stops it; `on_time_zero` hears
    the time zero once."""
    avail0 = mem_available_kb()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    mem: dict[str, Any] = {}
    tz: float | None = None
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        stop = on_start(proc) if on_start is not None else None
        deadline = t0 + timeout_s
        try:
            while proc.poll() is None:
                if time.time() > deadline:
                    proc.terminate()
                    proc.wait(timeout=120)
                    break
                if tz is None:
                    tz = time_zero(t0)
                    if tz is not None and on_time_zero is not None:
                        on_time_zero(tz)
                elif not mem and time.time() > tz + 2.0:
                    mem = {"mem_available_drop_mb": round(
                        (avail0 - mem_available_kb()) / 1024, 1)}
                time.sleep(poll_s)
        except BaseException:
            proc.terminate()
            proc.wait(timeout=120)
            raise
        finally:
            if stop is not None:
                stop()
        log.seek(0)
        tail = log.read()[-3000:]
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Watched(t0, tz, round(ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime, 2),
                   round(time.time() - t0, 2), mem, tail)


def time_zero_of(run_dir: Path | None) -> float | None:
    """A run folder's time zero (wall), None until its manifest has it."""
    if run_dir is None:
        return None
    try:
        return json.loads((run_dir / "manifest.json").read_text()).get("time_zero_wall")
    except (OSError, ValueError):  # not written yet
        return None


def measure(argv: list[str], name: str, timeout_s: float = 900.0) -> dict[str, Any]:
    """One run as a user starts it (`python -m testbed run ...`): command -> time zero from
    the command's own start, memory sampled 2 s after time zero, CPU of every process of the
    run (they are all reaped by the time the command returns), then its metrics."""
    w = watch_run([sys.executable, "-m", "testbed", "run", *argv],
                  lambda t0: time_zero_of(_run_dir_after(name, t0)), timeout_s)
    t0, tail = w.t0, w.tail
    run_dir = _run_dir_after(name, t0)
    out: dict[str, Any] = {"cpu_s": w.cpu_s, **w.mem}
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return {**out, "status": "failed", "error": tail}
    man = json.loads((run_dir / "manifest.json").read_text())
    m = json.loads((run_dir / "metrics.json").read_text())
    out.update(status=m.get("status"), error=man.get("error"), run_dir=str(run_dir),
               timings_s=m.get("timings_s", {}), ns3_realtime=m.get("ns3_realtime", {}),
               mobility=m.get("mobility"), flows=m.get("flows"))
    if man.get("time_zero_wall"):
        out["command_to_first_packet_s"] = round(man["time_zero_wall"] - t0, 2)
    out["probe_loss"] = _probe_loss(m, run_dir)
    return out


def _probe_loss(m: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Loss of the link probes on links that were up for the whole run (idle probes: a link
    that went down, an access link not in use, loses its probes by design)."""
    down: set[str] = set()
    states = run_dir / "mobility" / "link-state.csv"
    if states.exists():
        import csv

        with open(states) as f:
            for row in csv.DictReader(f):
                if row["up"] == "0":
                    down.add(row["link"])
    sent = lost = links = 0
    worst = 0.0
    for name, link in m.get("links", {}).items():
        if name in down:
            continue
        for peer, v in link["measured"].items():
            if peer == "throughput" or not v.get("sent"):
                continue
            links += 1
            sent += v["sent"]
            lost += v["sent"] - v.get("replies", 0)
            worst = max(worst, v.get("loss_pct") or 0.0)
    return {"links": links, "sent": sent, "lost": lost,
            "loss_pct": round(100.0 * lost / sent, 4) if sent else None,
            "worst_link_loss_pct": worst}


def ours(n: int, duration_s: float = 10.0) -> dict[str, Any]:
    data = scenario(n, duration_s)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        path = Path(tmp) / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        out = measure(["--file", str(path)], data["name"])
    out.update(nodes=len(data["nodes"]), links=len(data["links"]),
               taps=sum(len(x["endpoints"]) for x in data["links"]))
    if out.get("mem_available_drop_mb") is not None:
        out["mem_per_node_mb"] = round(out["mem_available_drop_mb"] / n, 2)
    return out


def slice_run() -> dict[str, Any]:
    """starlink-slice against the issue's targets."""
    from testbed import scenario as scenarios
    from testbed.mobility.world import World

    path = ROOT / "topologies" / "starlink-slice.yaml"
    world = World.build(scenarios.load(path), str(path))
    out = measure(["starlink-slice"], "starlink-slice")
    n, links = len(world.sc.nodes), len(world.sc.links)
    out.update(nodes=n, links=links, taps=sum(len(x.endpoints) for x in world.sc.links))
    if out.get("mem_available_drop_mb") is not None:
        out["mem_per_node_mb"] = round(out["mem_available_drop_mb"] / n, 2)
    t = out.get("timings_s", {})
    mob = out.get("mobility") or {}
    lag = (out.get("ns3_realtime") or {}).get("run_window", {})
    out["targets"] = {
        "namespaces >= 1000": (n, n >= 1000),
        "links >= 2000": (links, links >= 2000),
        "up <= 120 s": (out.get("command_to_first_packet_s"),
                        (out.get("command_to_first_packet_s") or 1e9) <= 120),
        "late batches (> 20 ms) <= 1 %": (mob.get("late_fraction"),
                                          (mob.get("late_fraction") or 1.0) <= 0.01),
        "ns-3 lag p99 <= 5 ms": (lag.get("tick_p99_at_most_ms"),
                                 (lag.get("tick_p99_at_most_ms") or 1e9) <= 5.0),
        "idle probe loss 0 %": (out["probe_loss"].get("loss_pct"),
                                out["probe_loss"].get("loss_pct") == 0.0),
        "teardown <= 30 s": (t.get("teardown_s"), (t.get("teardown_s") or 1e9) <= 30.0),
    }
    return out


PHASES = ["plan_s", "namespaces_and_veths_s", "ns3_ready_s", "ns3_tap_attach_s",
          "configure_s", "build_s", "health_s", "teardown_s"]


def ratios(mine: dict[str, Any], ref: dict[str, Any]) -> dict[str, float | None]:
    """ours / Mininet for what both measure."""
    def r(a: Any, b: Any) -> float | None:
        return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) \
            and b > 0 else None
    ph = ref.get("phases_s", {})
    t = mine.get("timings_s", {})
    return {"command_to_first_packet": r(mine.get("command_to_first_packet_s"),
                                         ref.get("command_to_first_packet_s")),
            "teardown": r(t.get("teardown_s"), ph.get("teardown")),
            "cpu": r(mine.get("cpu_s"), (ref.get("cpu_s") or {}).get("total")),
            "memory": r(mine.get("mem_available_drop_mb"), ref.get("mem_available_drop_mb"))}


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    mine = [r for r in doc["ours"] if r.get("command_to_first_packet_s")]
    ref = [r for r in doc.get("mininet", []) if r.get("command_to_first_packet_s")]
    a.plot([r["nodes"] for r in mine], [r["command_to_first_packet_s"] for r in mine], "o-",
           label="ours: command -> first packet (ns-3 links)")
    a.plot([r["nodes"] for r in mine], [r["timings_s"].get("teardown_s") for r in mine], "o--",
           label="ours: teardown")
    if ref:
        a.plot([r["n_hosts"] for r in ref], [r["command_to_first_packet_s"] for r in ref], "s-",
               label="Mininet + userspace OVS: command -> first packet (no link emulation)")
        a.plot([r["n_hosts"] for r in ref], [r["phases_s"].get("teardown") for r in ref], "s--",
               label="Mininet: teardown")
    a.set_xscale("log")
    a.set_xlabel("nodes")
    a.set_ylabel("seconds")
    a.set_title("Same topologies, this 2-core machine")
    a.legend(fontsize=7)
    names = ["plan_s", "namespaces_and_veths_s", "engine_attach_wait_s", "configure_s",
             "health_s"]
    bottom = [0.0] * len(mine)
    for k in names:
        vals = [r["timings_s"].get(k) or 0.0 for r in mine]
        b.bar([str(r["nodes"]) for r in mine], vals, bottom=bottom, label=k.removesuffix("_s"))
        bottom = [x + y for x, y in zip(bottom, vals, strict=True)]
    b.set_xlabel("nodes")
    b.set_ylabel("seconds")
    b.set_title("Ours: bring-up by phase")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(console: Console, sizes: list[int] | None = None) -> dict[str, Any]:
    from testbed.bench import mininet_ref

    sizes = sizes or SIZES
    doc: dict[str, Any] = {"cpus": os.cpu_count(), "sizes": sizes, "ours": [], "mininet": []}
    for n in sizes:
        console.print(f"[bold]ours[/] {n} nodes ...")
        doc["ours"].append(ours(n))
    if os.geteuid() == 0 and Path(mininet_ref.SYSTEM_PYTHON).exists():
        console.print("[bold]Mininet[/] on the same topologies ...")
        try:
            doc["mininet"] = mininet_ref.sweep(sizes, topo="plan", echo=console.print)["runs"]
        except Exception as exc:  # noqa: BLE001 - the curve stands without the reference
            doc["mininet_error"] = f"{type(exc).__name__}: {exc}"
    by_n = {r.get("n_hosts"): r for r in doc["mininet"]}
    doc["ratios_ours_to_mininet"] = {n: ratios(r, by_n[n]) for n, r in zip(
        sizes, doc["ours"], strict=True) if n in by_n}
    console.print("[bold]starlink-slice[/] ...")
    doc["starlink_slice"] = slice_run()
    out_dir = RESULTS / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(doc, out_dir / "scale.png")
    doc["plot"] = str(out_dir / "scale.png")
    _print(console, doc)
    return doc


def _print(console: Console, doc: dict[str, Any]) -> None:
    t = Table(title="Scale curve (seconds; ratio = ours / Mininet on the same topology)")
    for c in ("nodes", "taps", "plan", "netns", "ns-3 ready", "configure", "health",
              "cmd->1st pkt", "Mininet", "ratio", "teardown", "Mininet", "CPU s", "MB/node"):
        t.add_column(c, justify="right")
    by_n = {r.get("n_hosts"): r for r in doc["mininet"]}
    for r in doc["ours"]:
        tm, ref = r.get("timings_s", {}), by_n.get(r["nodes"], {})
        rat = doc["ratios_ours_to_mininet"].get(r["nodes"], {})
        t.add_row(*[str(x) for x in (
            r["nodes"], r["taps"], tm.get("plan_s"), tm.get("namespaces_and_veths_s"),
            tm.get("ns3_ready_s"), tm.get("configure_s"), tm.get("health_s"),
            r.get("command_to_first_packet_s"), ref.get("command_to_first_packet_s"),
            rat.get("command_to_first_packet"), tm.get("teardown_s"),
            (ref.get("phases_s") or {}).get("teardown"), r.get("cpu_s"),
            r.get("mem_per_node_mb"))])
    console.print(t)
    s = Table(title="starlink-slice: the issue's targets")
    for c in ("target", "measured", "met"):
        s.add_column(c)
    for k, (v, ok) in doc["starlink_slice"]["targets"].items():
        s.add_row(k, str(v), "yes" if ok else "[red]no[/]")
    console.print(s)


def main(argv: list[str] | None = None) -> int:
    """`python -m testbed.bench.scale [--sizes 25,50] [--slice-only]`: parts of the bench."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--slice-only", action="store_true")
    args = ap.parse_args(argv)
    console = Console()
    if args.slice_only:
        doc = {"starlink_slice": slice_run()}
        console.print_json(json.dumps(doc["starlink_slice"]["targets"]))
    else:
        doc = {"ours": [ours(int(n)) for n in args.sizes.split(",")]}
        console.print_json(json.dumps([{k: r.get(k) for k in (
            "nodes", "command_to_first_packet_s", "cpu_s", "mem_per_node_mb", "timings_s")}
            for r in doc["ours"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
