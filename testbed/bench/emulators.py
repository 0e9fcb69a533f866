"""Emulators (issue 29): our bring-up time, CPU, memory and constellation-update delay on the
setting of arXiv 2604.04498 ("An experimental evaluation of satellite constellation
emulators", 2026), beside what that paper publishes for StarryNet, OpenSN and Celestial.

The scenario is topologies/emulator-eval.yaml (10 adjacent planes of a 53-deg 72x22 shell,
all 220 satellites instantiated, +Grid ISLs, WetLinks' two sites and a gateway, ping at 0.1 s,
15-s iperf3 runs).  Each run is started as a user starts it (`python -m testbed run
emulator-eval`), `SAGIN_BENCH_RUNS` times (default 3), and measured from outside:

* bring-up: command -> time zero (first packet may flow), with the run's own phases
  (plan, namespaces, ns-3 start, tap attach, addresses/routes, health check), and the
  CPU-seconds the run's processes spent before time zero;
* CPU: total CPU-seconds of every process of the run (getrusage of reaped children), and in
  the steady state (time zero + 5 s .. end - 5 s) the CPU of the run's process tree
  (/proc/<pid>/stat of every descendant, reaped children included) and of the whole machine
  (/proc/stat), as % of the machine and in cores;
* memory: drop of MemAvailable 2 s after time zero (kernel included: namespaces, ns-3
  taps) and the PSS of the run's process tree in the steady state;
* constellation-update delay: every 10 Hz mobility tick sends one batch of link changes to
  the link engine, stamped with its due time and sent `LEAD_S` ahead; ns-3 logs, per batch,
  when it received and applied it (logs/link-changes.jsonl).  Lateness = applied - due (what
  the emulated network sees); work per update = the driver's compute time (geometry,
  handovers, the batch) + delivery (send -> received by the engine); changes per update.

Why per core: the paper's machine and ours differ (this one: `nproc` cores).  CPU is put in
hardware-independent units: cores used (utilisation % x cores / 100) and CPU-seconds per
satellite per emulated second; bring-up as seconds and as core-seconds of capacity
(seconds x cores, an upper bound of the work a parallel bring-up could have used).  Latencies
(update delay) are not normalised.  Where the paper gives no value, or gives it only in a
figure we could not read, the cell says so (`PUBLISHED` below, docs/emulator-eval.md).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.mobility.driver import LEAD_S
from testbed.run.results import RESULTS

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "emulator-eval"
SATELLITES = 220  # 10 planes x 22, every one a node (include: all)
STEADY_MARGIN_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAPER = "arXiv 2604.04498"
NOT_ACCESSIBLE = ("not in the text accessible to us (only the abstract and a third-party "
                  "summary could be retrieved)")


@dataclass(frozen=True)
class Published:
    """One figure of the paper: the value (None where we have none), its unit, and where it
    is (section/table/figure) or why it is missing."""

    value: float | None
    unit: str
    source: str


@dataclass(frozen=True)
class Emulator:
    name: str
    how: str  # what it virtualises and how it sets links (from the emulators' own docs)
    metrics: dict[str, Published] = field(default_factory=dict)


def _missing(unit: str) -> Published:
    return Published(None, unit, f"{PAPER}: {NOT_ACCESSIBLE}")


METRICS = {  # key: (label, unit)
    "bring_up_s": ("bring-up (command -> ready)", "s"),
    "cpu_util_pct": ("CPU utilisation, steady state", "% of machine"),
    "memory_mb": ("memory, steady state", "MB"),
    "update_delay_ms": ("constellation-update delay", "ms"),
}

# The paper's figures per emulator.  None of them could be read (docs/emulator-eval.md: the
# stored copy of the paper holds its opening only); the qualitative finding that *was*
# retrievable - "StarryNet-dev ... achieved the fastest bring-up times and lowest CPU
# utilisation among the three" (third-party summary, arxivlens) - is in the doc, not here.
PUBLISHED: list[Emulator] = [
    Emulator("StarryNet", "Docker containers, links as veth + tc netem",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
    Emulator("StarryNet-dev", "StarryNet with a custom container runtime and Netlink APIs",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
    Emulator("OpenSN", "Docker containers, etcd key-value store, eBPF-assisted links",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
    Emulator("Celestial", "Firecracker microVMs, links by tc/eBPF",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
]
PAPER_HARDWARE: dict[str, Any] = {"cpu": None, "cores": None, "ram_gb": None,
                                  "source": f"{PAPER}: {NOT_ACCESSIBLE}"}


# ------------------------------------------------------------------ normalisation (pure)


def cores_used(util_pct_of_machine: float, cores: int) -> float:
    """Utilisation of a whole machine (100 % = every core busy) in cores: 50 % of 2 cores
    and 6.25 % of 16 cores are both one core's work."""
    if cores <= 0:
        raise ValueError(f"cores must be positive, got {cores}")
    return util_pct_of_machine / 100.0 * cores


def cpu_s_per_sat_per_s(cpu_s: float, satellites: int, seconds: float) -> float:
    """CPU-seconds per emulated satellite per emulated second: the cost of keeping one
    satellite alive, whatever the machine's size."""
    if satellites <= 0 or seconds <= 0:
        raise ValueError("satellites and seconds must be positive")
    return cpu_s / (satellites * seconds)


def per_core(metric: str, value: float | None, cores: int | None) -> float | None:
    """A metric in hardware-independent units: utilisation -> cores used, bring-up ->
    core-seconds of capacity (seconds x cores); memory and latencies are kept as they are."""
    if value is None or cores is None:
        return None
    if metric == "cpu_util_pct":
        return round(cores_used(value, cores), 3)
    if metric == "bring_up_s":
        return round(value * cores, 2)
    return value


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None where either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 3)


def compare(ours: dict[str, float | None], our_cores: int,
            emulators: list[Emulator] | None = None,
            their_cores: int | None = None) -> dict[str, dict[str, Any]]:
    """Per emulator and metric: their value, ours, the raw ratio and the per-core ratio
    (both sides in the units of `per_core`; None where the paper's hardware is unknown)."""
    their_cores = their_cores if their_cores is not None else PAPER_HARDWARE["cores"]
    out: dict[str, dict[str, Any]] = {}
    for emu in emulators if emulators is not None else PUBLISHED:
        rows: dict[str, Any] = {}
        for key, pub in emu.metrics.items():
            mine = ours.get(key)
            rows[key] = {
                "theirs": pub.value, "unit": pub.unit, "source": pub.source, "ours": mine,
                "ratio_ours_to_theirs": ratio(mine, pub.value),
                "ours_per_core": per_core(key, mine, our_cores),
                "theirs_per_core": per_core(key, pub.value, their_cores),
                "ratio_per_core": ratio(per_core(key, mine, our_cores),
                                        per_core(key, pub.value, their_cores)),
            }
        out[emu.name] = rows
    return out


def percentile(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]) of xs, None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def lead_s(rate_hz: float) -> float:
    """How far ahead of its due time the driver sends a tick's batch (driver._loop)."""
    return min(LEAD_S, 0.4 / rate_hz)


def update_delays(records: list[dict[str, Any]], rate_hz: float = 10.0) -> dict[str, Any]:
    """Per-batch timing from the engine's link-changes log.  Batches without a due time
    (`at`) are the bring-up's initial state, counted apart.  Lateness = applied - due;
    delivery = received - (due - lead), the time from the driver's send to the engine."""
    lead = lead_s(rate_hz)
    late, delivery, changes, initial = [], [], [], []
    for r in records:
        op = r.get("op", {})
        n = len(op.get("ops", [])) if op.get("op") == "batch" else 1
        at = op.get("at")
        if at is None:
            initial.append(n)
            continue
        late.append((r["wall"] - at) * 1e3)
        delivery.append((r["received"] - (at - lead)) * 1e3)
        changes.append(n)

    def r3(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "batches": len(late), "initial_batches": len(initial),
        "initial_changes": sum(initial),
        "lateness_ms_p50": r3(percentile(late, 0.5)), "lateness_ms_p99": r3(percentile(late, 0.99)),
        "lateness_ms_max": r3(max(late)) if late else None,
        "late_over_20ms": sum(1 for x in late if x > 20.0),
        "delivery_ms_p50": r3(percentile(delivery, 0.5)),
        "delivery_ms_p99": r3(percentile(delivery, 0.99)),
        "changes_per_update_mean": r3(statistics.fmean(changes)) if changes else None,
        "changes_per_update_p50": percentile(changes, 0.5),
        "changes_per_update_max": max(changes) if changes else None,
        "changes_total": sum(changes),
    }


# ------------------------------------------------------------------ measuring one run


def _mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


def _tree(root: int) -> list[int]:
    """root and every descendant, from the ppid field of /proc/<pid>/stat."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _tree_cpu_s(pids: list[int]) -> float:
    """utime + stime of live processes + cutime + cstime (their reaped children)."""
    ticks = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def _tree_pss_mb(pids: list[int]) -> float:
    kb = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return kb / 1024


class Sampler(threading.Thread):
    """Every 0.25 s: (wall, CPU-seconds of the run's process tree, machine busy/total
    jiffies); PSS of the tree once, in the middle of the run."""

    def __init__(self, pid: int, mid_wall: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.mid_wall = pid, mid_wall
        self.samples: list[tuple[float, float, int, int]] = []
        self.pss_mb: float | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            pids = _tree(self.pid)
            busy, total = _machine_jiffies()
            self.samples.append((time.time(), _tree_cpu_s(pids), busy, total))
            if self.pss_mb is None and time.time() >= self.mid_wall:
                self.pss_mb = round(_tree_pss_mb(pids), 1)
            self.stop_event.wait(0.25)


def _at(samples: list[tuple[float, float, int, int]], t: float) -> tuple[float, float, int, int]:
    """The last sample at or before wall time t (the first one if none is)."""
    best = samples[0]
    for s in samples:
        if s[0] <= t:
            best = s
    return best


def window_cpu(samples: list[tuple[float, float, int, int]], t0: float, t1: float,
               cores: int) -> dict[str, float | None]:
    """CPU of the run's tree and of the machine between wall times t0 and t1."""
    if not samples or t1 <= t0:
        return {"run_cores": None, "run_util_pct": None, "machine_util_pct": None}
    a, b = _at(samples, t0), _at(samples, t1)
    dt = b[0] - a[0]
    if dt <= 0:
        return {"run_cores": None, "run_util_pct": None, "machine_util_pct": None}
    run_cores = (b[1] - a[1]) / dt
    busy, total = b[2] - a[2], b[3] - a[3]
    return {"window_s": round(dt, 2), "run_cpu_s": round(b[1] - a[1], 2),
            "run_cores": round(run_cores, 3),
            "run_util_pct": round(100.0 * run_cores / cores, 2),
            "machine_util_pct": round(100.0 * busy / total, 2) if total else None}


def measure(duration_s: float | None = None, timeout_s: float = 900.0) -> dict[str, Any]:
    """One run of the scenario as a user starts it, measured from outside (module doc)."""
    from testbed.scenario import load, resolve

    sc = load(resolve(SCENARIO))
    dur = float(duration_s or sc.duration_s)
    cores = os.cpu_count() or 1
    argv = [sys.executable, "-m", "testbed", "run", SCENARIO]
    if duration_s:
        argv += ["--duration", str(duration_s)]
    before = _run_dirs()
    avail0 = _mem_available_kb()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    mem: dict[str, Any] = {}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid, mid_wall=t0 + 1e9)
        sampler.start()
        tz: float | None = None
        deadline = t0 + timeout_s
        try:
            while proc.poll() is None:
                if time.time() > deadline:
                    proc.terminate()  # the run tears down on SIGTERM
                    proc.wait(timeout=120)
                    break
                if tz is None:
                    tz = _time_zero(before)
                    if tz is not None:
                        sampler.mid_wall = tz + dur / 2
                elif not mem and time.time() > tz + 2.0:
                    mem = {"mem_available_drop_mb": round(
                        (avail0 - _mem_available_kb()) / 1024, 1)}
                time.sleep(0.25)
        except BaseException:
            proc.terminate()
            proc.wait(timeout=120)
            raise
        finally:
            sampler.stop_event.set()
            sampler.join(timeout=5)
        log.seek(0)
        tail = log.read()[-3000:]
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, Any] = {
        "cpu_s_total": round(ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime, 2),
        "wall_s_total": round(time.time() - t0, 2), **mem}
    run_dir = _new_run_dir(before)
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return {**out, "status": "failed", "error": tail}
    man = json.loads((run_dir / "manifest.json").read_text())
    m = json.loads((run_dir / "metrics.json").read_text())
    tz = man.get("time_zero_wall") or tz
    out.update(status=m.get("status"), error=man.get("error"), run_dir=str(run_dir),
               timings_s=m.get("timings_s", {}))
    samples = sampler.samples
    if tz:
        out["command_to_time_zero_s"] = round(tz - t0, 3)
        out["bring_up_cpu_s"] = round(_at(samples, tz)[1], 2) if samples else None
        steady = window_cpu(samples, tz + STEADY_MARGIN_S, tz + dur - STEADY_MARGIN_S, cores)
        out["steady"] = steady
        if steady.get("run_cpu_s") is not None:
            out["steady"]["cpu_s_per_sat_per_s"] = round(cpu_s_per_sat_per_s(
                steady["run_cpu_s"], SATELLITES, steady["window_s"]), 6)
    out["pss_mb_steady"] = sampler.pss_mb
    mob = m.get("mobility") or {}
    out["mobility"] = {k: mob.get(k) for k in (
        "rate_hz", "dynamic_links", "ticks", "late_ticks_over_20ms", "lateness_ms_p50",
        "lateness_ms_p99", "compute_ms_p50", "compute_ms_p99", "changes_sent", "cpu_s",
        "handovers", "route_install_ms_median", "route_convergence_ms_median")}
    changes = run_dir / "logs" / "link-changes.jsonl"
    if changes.exists():
        recs = [json.loads(x) for x in changes.read_text().splitlines() if x.strip()]
        out["updates"] = update_delays(recs, float(mob.get("rate_hz") or 10.0))
    out["ns3_max_lag_ms"] = (m.get("ns3_realtime") or {}).get("max_lag_ms")
    out["flows"] = _flows(m.get("flows") or {})
    return out


def _time_zero(before: set[str]) -> float | None:
    d = _new_run_dir(before)
    if d is None:
        return None
    try:
        return json.loads((d / "manifest.json").read_text()).get("time_zero_wall")
    except (OSError, ValueError):  # not written yet
        return None


def _run_dirs() -> set[str]:
    base = RESULTS / SCENARIO
    return {d.name for d in base.iterdir() if d.is_dir() and not d.is_symlink()} \
        if base.is_dir() else set()


def _new_run_dir(before: set[str]) -> Path | None:
    """The run folder this measurement's run made: the one not there before it started (a
    previous run's folder, still `latest` when the next starts, must not be read)."""
    new = sorted(_run_dirs() - before)
    return RESULTS / SCENARIO / new[-1] if new else None


def _flows(flows: dict[str, Any]) -> dict[str, Any]:
    """The traffic's own result (scalars only), to show the network carried it."""
    return {name: {k: v for k, v in f.items() if not isinstance(v, list | dict)
                   and k not in ("src", "dst")} for name, f in flows.items()}


# ------------------------------------------------------------------ the bench


def summarise(runs: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """Medians over the successful runs, in the metric keys of `METRICS` plus detail."""
    ok = [r for r in runs if r.get("status") == "done"]

    def med(get: Any, digits: int = 3) -> float | None:
        vals = [v for v in (get(r) for r in ok) if isinstance(v, int | float)]
        return round(statistics.median(vals), digits) if vals else None

    s: dict[str, Any] = {
        "runs_ok": len(ok), "runs": len(runs),
        "bring_up_s": med(lambda r: r.get("command_to_time_zero_s")),
        "bring_up_cpu_s": med(lambda r: r.get("bring_up_cpu_s")),
        "cpu_util_pct": med(lambda r: (r.get("steady") or {}).get("run_util_pct")),
        "run_cores": med(lambda r: (r.get("steady") or {}).get("run_cores")),
        "machine_util_pct": med(lambda r: (r.get("steady") or {}).get("machine_util_pct")),
        "cpu_s_per_sat_per_s": med(lambda r: (r.get("steady") or {}).get(
            "cpu_s_per_sat_per_s"), 6),
        "cpu_s_total": med(lambda r: r.get("cpu_s_total")),
        "memory_mb": med(lambda r: r.get("pss_mb_steady")),
        "mem_available_drop_mb": med(lambda r: r.get("mem_available_drop_mb")),
        "update_lateness_ms_p50": med(lambda r: (r.get("updates") or {}).get(
            "lateness_ms_p50")),
        "update_lateness_ms_p99": med(lambda r: (r.get("updates") or {}).get(
            "lateness_ms_p99")),
        "update_compute_ms_p50": med(lambda r: (r.get("mobility") or {}).get(
            "compute_ms_p50")),
        "update_delivery_ms_p50": med(lambda r: (r.get("updates") or {}).get(
            "delivery_ms_p50")),
        "changes_per_update_mean": med(lambda r: (r.get("updates") or {}).get(
            "changes_per_update_mean")),
        "changes_per_update_max": med(lambda r: (r.get("updates") or {}).get(
            "changes_per_update_max")),
        "teardown_s": med(lambda r: (r.get("timings_s") or {}).get("teardown_s")),
    }
    for ph in ("plan_s", "namespaces_and_veths_s", "ns3_ready_s", "ns3_tap_attach_s",
               "configure_s", "build_s", "health_s"):
        s[f"phase_{ph}"] = med(lambda r, ph=ph: (r.get("timings_s") or {}).get(ph))
    # the update delay comparable to an emulator's "time to apply a topology update": the
    # work of one update (compute + delivery) plus how late it landed (medians)
    parts = [s["update_compute_ms_p50"], s["update_delivery_ms_p50"],
             s["update_lateness_ms_p50"]]
    s["update_delay_ms"] = round(sum(max(0.0, p) for p in parts if p is not None), 3) \
        if any(p is not None for p in parts) else None
    s["cores"] = cores
    return s


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def run(console: Console, runs: int | None = None,
        duration_s: float | None = None) -> dict[str, Any]:
    n = runs or int(os.environ.get("SAGIN_BENCH_RUNS", "3"))
    host = machine()
    doc: dict[str, Any] = {"scenario": SCENARIO, "paper": PAPER, "machine": host,
                           "paper_machine": PAPER_HARDWARE, "runs": []}
    for i in range(n):
        console.print(f"[bold]{SCENARIO}[/] run {i + 1}/{n} ...")
        doc["runs"].append(measure(duration_s))
        r = doc["runs"][-1]
        console.print(f"  status {r.get('status')}, command -> time zero "
                      f"{r.get('command_to_time_zero_s')} s, steady "
                      f"{(r.get('steady') or {}).get('run_cores')} cores")
    cores = host["cores"] or 1
    doc["ours"] = summarise(doc["runs"], cores)
    doc["comparison"] = compare(doc["ours"], cores)
    doc["normalisation"] = (
        "CPU: utilisation % of the machine x cores / 100 = cores used, and CPU-seconds per "
        "satellite per emulated second (run's process tree, steady state); bring-up: seconds "
        "and seconds x cores (core-seconds of capacity); memory and update delay as measured. "
        "Per-core ratios need the paper's core count, which was not accessible: "
        "they are null.")
    out_dir = RESULTS / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    _print(console, doc)
    return doc


def _fmt(x: Any) -> str:
    return "-" if x is None else str(x)


def _print(console: Console, doc: dict[str, Any]) -> None:
    o = doc["ours"]
    t = Table(title=f"{SCENARIO}: ours (median of {o['runs_ok']}/{o['runs']} runs, "
                    f"{doc['machine']['cores']} cores, {doc['machine']['cpu']})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
        ("command -> time zero (s)", o["bring_up_s"]),
        ("  plan / netns+veths / ns-3 ready (s)",
         f"{_fmt(o['phase_plan_s'])} / {_fmt(o['phase_namespaces_and_veths_s'])} / "
         f"{_fmt(o['phase_ns3_ready_s'])}"),
        ("  tap attach / configure / health (s)",
         f"{_fmt(o['phase_ns3_tap_attach_s'])} / {_fmt(o['phase_configure_s'])} / "
         f"{_fmt(o['phase_health_s'])}"),
        ("bring-up CPU (CPU-s)", o["bring_up_cpu_s"]),
        ("bring-up x cores (core-s)", per_core("bring_up_s", o["bring_up_s"], o["cores"])),
        ("steady CPU of the run (% of machine)", o["cpu_util_pct"]),
        ("steady CPU of the run (cores)", o["run_cores"]),
        ("steady CPU of the machine, all users (%)", o["machine_util_pct"]),
        ("CPU-s per satellite per emulated s", o["cpu_s_per_sat_per_s"]),
        ("total CPU of the run (CPU-s)", o["cpu_s_total"]),
        ("PSS of the run's processes (MB)", o["memory_mb"]),
        ("MemAvailable drop at time zero (MB)", o["mem_available_drop_mb"]),
        ("update: compute p50 (ms)", o["update_compute_ms_p50"]),
        ("update: delivery to ns-3 p50 (ms)", o["update_delivery_ms_p50"]),
        ("update: lateness vs due p50 / p99 (ms)",
         f"{_fmt(o['update_lateness_ms_p50'])} / {_fmt(o['update_lateness_ms_p99'])}"),
        ("update delay (compute+delivery+lateness, ms)", o["update_delay_ms"]),
        ("link changes per update mean / max",
         f"{_fmt(o['changes_per_update_mean'])} / {_fmt(o['changes_per_update_max'])}"),
        ("teardown (s)", o["teardown_s"]),
    ]
    for k, v in rows:
        t.add_row(k, _fmt(v))
    console.print(t)
    c = Table(title=f"beside {PAPER}: their value (ours / theirs)")
    c.add_column("metric")
    c.add_column("ours", justify="right")
    c.add_column("ours per core", justify="right")
    for emu in PUBLISHED:
        c.add_column(emu.name, justify="right")
    for key, (label, unit) in METRICS.items():
        row = [f"{label} ({unit})", _fmt(o.get(key)), _fmt(per_core(key, o.get(key),
                                                                    o["cores"]))]
        for emu in PUBLISHED:
            cell = doc["comparison"][emu.name][key]
            row.append("n/a" if cell["theirs"] is None else
                       f"{cell['theirs']} ({_fmt(cell['ratio_ours_to_theirs'])}x)")
        c.add_row(*row)
    console.print(c)
    console.print("per core: utilisation -> cores used (% x cores / 100), bring-up -> "
                  "core-seconds (s x cores); memory and delay as measured")
    console.print(f"n/a: {NOT_ACCESSIBLE}; docs/emulator-eval.md")


def main(argv: list[str] | None = None) -> int:
    """`python -m testbed.bench.emulators [--runs 1] [--duration 30]`: a quick look."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--duration", type=float, default=None)
    args = ap.parse_args(argv)
    doc = run(Console(), runs=args.runs, duration_s=args.duration)
    print(json.dumps(doc["ours"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
