"""`make bench BENCH=training`: Chaos's claims measured side by side in one emulated network.

1. Scale-out delay vs state size (1, 10, 100 MB) at 4 neighbours, every method; and vs the
   number of neighbours (1-4) at 10 MB for chaos.  The joiner `j` has one ns-3 point-to-point
   link to each member n1..n4 (50, 40, 25, 10 Mbit/s, 1 ms) and one to the checkpoint store
   (50 Mbit/s); the members share a LAN and n1 has its own 50 Mbit/s link to the store.  The
   single-source baseline pulls from the best neighbour (n1, 50 Mbit/s): the strongest form of
   it.  Per run: the members start and train, then `j` starts; we read join request -> first
   step computed (and process start -> computing), bytes and seconds per neighbour, the plan's
   expected makespan, and the hash check.
2. The control path: scale-in (a member leaves, and joins again) and link disconnect/connect
   (the j-n2 link cut and restored), 5 and 10 times, with 5 chaos members: the coordinator's
   decision time and detection -> new view (or ring decision) in force.
3. Idle time and time-to-accuracy over the edge-training scenario's churn timeline (300 s),
   every method (the same runs as `make eval-training`).  Set TRAINING_BENCH_PARTS=1,2 to skip.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from testbed.run.harness import Emulation, emulated
from testbed.scenario import parse

RATES = {"n1": 50, "n2": 40, "n3": 25, "n4": 10}
SIZES_MB = [1, 10, 100]
NEIGHBOURS = [1, 2, 3, 4]
METHODS = ["chaos", "single", "checkpoint", "torchelastic"]
STORE = "store"
JOINER = "j"


def scenario() -> dict[str, Any]:
    nodes: dict[str, Any] = {JOINER: {"kind": "edge_server"}, STORE: {"kind": "edge_server"},
                             "sw": {"kind": "switch"}}
    links: list[dict[str, Any]] = []
    for n, r in RATES.items():
        nodes[n] = {"kind": "edge_server"}
        links.append({"name": f"j-{n}", "kind": "wired", "medium": "p2p",
                      "endpoints": [JOINER, n], "delay_ms": 1, "rate_mbps": r})
        links.append({"name": f"lan-{n}", "kind": "wired", "endpoints": [n, "sw"]})
    links.append({"name": "j-store", "kind": "wired", "medium": "p2p",
                  "endpoints": [JOINER, STORE], "delay_ms": 2, "rate_mbps": 50})
    links.append({"name": "n1-store", "kind": "wired", "medium": "p2p",
                  "endpoints": ["n1", STORE], "delay_ms": 2, "rate_mbps": 50})
    return {"name": "bench-training", "duration_s": 3600, "nodes": nodes, "links": links,
            "capture": {"enabled": False}}


class Rig:
    """Start and stop the training processes of one configuration in the emulation."""

    def __init__(self, emu: Emulation, console: Console) -> None:
        self.emu, self.con = emu, console
        self.k = 0

    def experiment(self, method: str, members: list[str], state_mb: float,
                   **extra: Any) -> tuple[Path, Path]:
        self.k += 1
        folder = self.emu.run_dir / f"cfg{self.k:02d}-{method}"
        folder.mkdir(parents=True)
        exp = {"method": method, "port": 7900 + 10 * self.k, "store": STORE,
               "hidden": [256, 128], "lr": 0.01, "state_mb": state_mb, "neighbours": 4,
               "checkpoint_every": 100, "nodes": [*members, JOINER], "initial": members,
               **extra}
        path = folder / "exp.yaml"
        path.write_text(yaml.safe_dump(exp))
        return path, folder

    def start(self, node: str, what: str, cfg: Path, folder: Path) -> None:
        env = f"SAGIN_RUN_DIR={folder} SAGIN_NODE={node} PYTHONPATH={Path.cwd()}"
        py = sys.executable
        cmd = (f"cd {Path.cwd()} && exec env {env} {py} -m controllers.training.live {what} "
               f"--config {cfg} > {folder}/{node}-{what}.log 2>&1")
        p = self.emu.popen(node, ["sh", "-c", cmd])
        # on the run's ledger, so that a killed bench leaves nothing (`make clean`)
        self.emu.ledger.add_process(p.pid, f"train-{node}-{what}",
                                    self.emu.net.plan.namespaces[node])

    def stop_all(self) -> None:
        import subprocess

        for ns in self.emu.net.plan.namespaces.values():
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
        time.sleep(1.0)


def records(folder: Path, node: str) -> list[dict[str, Any]]:
    p = folder / "training" / f"{node}.jsonl"
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def scale_out_once(rig: Rig, method: str, k: int, state_mb: float) -> dict[str, Any]:
    members = list(RATES)[:k]
    cfg, folder = rig.experiment(method, members, state_mb)
    row: dict[str, Any] = {"method": method, "neighbours": k, "state_mb": state_mb}
    try:
        if method in ("checkpoint", "torchelastic"):
            rig.start(STORE, "store", cfg, folder)
        for n in members:
            rig.start(n, "node", cfg, folder)

        def trained() -> bool:
            return all(sum(r["k"] == "step" for r in records(folder, n)) >= 25
                       for n in members)
        wait_for(trained, 240, f"{method}: the members to train 25 steps")
        t_start = time.time()
        rig.start(JOINER, "node", cfg, folder)

        def computing() -> bool:
            return any(r["k"] == "computing" and r.get("joined") for r in records(folder, JOINER))
        wait_for(computing, 600, f"{method}: the joiner computing")
        j = records(folder, JOINER)
        comp = next(r for r in j if r["k"] == "computing" and r.get("joined"))
        t_req = comp.get("t_request")
        row["join_to_computing_s"] = round(comp["t"] - t_req, 3) if t_req else None
        row["process_to_computing_s"] = round(comp["t"] - t_start, 3)
        plan = next((r for r in j if r["k"] == "plan"), None)
        row["plan_expected_s"] = plan["makespan_s"] if plan else None
        row["pulled"] = [{x: r.get(x) for x in ("source", "bytes", "seconds", "dev")}
                         for r in j if r["k"] == "pulled"]
        check = next((r for r in j if r["k"] == "state_check"), None)
        row["state_identical"] = check["identical"] if check else None
        idle = [r["s"] for n in members for r in records(folder, n)
                if r["k"] == "idle" and r["t"] >= t_start]
        row["members_idle_s"] = round(sum(idle), 3)
        row["status"] = "ok"
    except TimeoutError as exc:
        row["status"] = str(exc)
    finally:
        rig.stop_all()
    rig.con.print(f"  {method:12s} k={k} {state_mb:>5g} MB: join->computing "
                  f"{row.get('join_to_computing_s')} s, process->computing "
                  f"{row.get('process_to_computing_s')} s  [{row['status']}]")
    return row


def control_path(rig: Rig, leaves: int = 5, flaps: int = 10) -> dict[str, Any]:
    from testbed.run.timeline import set_link_state

    members = list(RATES)
    cfg, folder = rig.experiment("chaos", [*members, JOINER][:5], 1.0,
                                 nodes=[*members, JOINER], initial=[*members, JOINER])
    out: dict[str, Any] = {}
    try:
        for n in [*members, JOINER]:
            rig.start(n, "node", cfg, folder)
        wait_for(lambda: all(sum(r["k"] == "step" for r in records(folder, n)) >= 20
                             for n in [*members, JOINER]), 240, "5 members training")
        for _ in range(leaves):
            rig.start("n4", "leave", cfg, folder)
            wait_for(lambda: any(r["k"] == "exit" for r in records(folder, "n4")), 60,
                     "n4 to leave")
            time.sleep(1.0)
            (folder / "training" / "n4.jsonl").rename(
                folder / "training" / f"n4-{time.time():.0f}.jsonl.old")
            rig.start("n4", "node", cfg, folder)
            wait_for(lambda: any(r["k"] == "computing" for r in records(folder, "n4")), 120,
                     "n4 to join again")
            time.sleep(1.0)
        for _ in range(flaps):
            set_link_state(rig.emu.net, "j-n2", None, up=False)
            time.sleep(1.5)
            set_link_state(rig.emu.net, "j-n2", None, up=True)
            time.sleep(1.5)
        time.sleep(1.0)
    finally:
        rig.stop_all()
    changes = [r for n in [*members, JOINER] for r in records(folder, n) if r["k"] == "change"]
    links = [r for n in [*members, JOINER] for r in records(folder, n)
             if r["k"] == "link_handled"]

    def med(xs: list[float]) -> float | None:
        return round(statistics.median(xs), 4) if xs else None
    for reason in ("leave", "join", "relink"):
        cs = [c for c in changes if c["reason"] == reason]
        out[reason] = {"n": len(cs), "decide_ms_median": med([c["decide_ms"] for c in cs]),
                       "handling_ms_median": med([c["handling_ms"] for c in cs])}
    out["link"] = {"n": len(links), "decide_ms_median": med([x["decide_ms"] for x in links]),
                   "handled_ms_median": med([x["handled_ms"] for x in links]),
                   "relinks": sum(x["relink"] for x in links)}
    return out


def run_bench(console: Console) -> dict[str, Any]:
    parts = os.environ.get("TRAINING_BENCH_PARTS", "1,2,3").split(",")
    sc = parse(scenario(), "bench-training (generated)")
    out: dict[str, Any] = {"rates_mbps": RATES, "store_link_mbps": 50}
    with emulated(sc) as emu:
        rig = Rig(emu, console)
        if "1" in parts:
            console.print("[bold]scale-out delay vs state size (4 neighbours)[/]")
            rows = [scale_out_once(rig, m, 4, mb) for mb in SIZES_MB for m in METHODS]
            console.print("[bold]scale-out delay vs neighbours (10 MB, chaos)[/]")
            rows += [scale_out_once(rig, "chaos", k, 10) for k in NEIGHBOURS[:-1]]
            out["scale_out"] = rows
            out["ratios"] = ratios(rows)
        if "2" in parts:
            console.print("[bold]control path: scale-in and link events (chaos)[/]")
            out["control_path"] = control_path(rig)
    if "3" in parts:
        from controllers.training.evaluate import run_method

        console.print("[bold]churn timeline (edge-training, 300 s), every method[/]")
        runs = [run_method("edge-training", m, None, console) for m in METHODS]
        out["churn"] = [{k: r.get(k) for k in (
            "method", "status", "run_dir", "steps", "final_accuracy", "time_to_accuracy_s",
            "steps_to_accuracy", "idle_s_total", "scale_out_delay_s_median",
            "handling_ms_median", "link_decide_ms_median", "link_handled_ms_median")}
            | {"idle_by_node": {n: d.get("idle_s") for n, d in (r.get("nodes") or {}).items()}}
            for r in runs]
    return out


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Baseline / chaos scale-out delay at 4 neighbours, per state size."""
    out: dict[str, Any] = {}
    for mb in SIZES_MB:
        at = {r["method"]: r for r in rows if r["neighbours"] == 4 and r["state_mb"] == mb}
        c = (at.get("chaos") or {}).get("join_to_computing_s")
        if not c:
            continue
        out[f"{mb}MB"] = {
            m: {"join_to_computing": round(r["join_to_computing_s"] / c, 2)
                if r.get("join_to_computing_s") else None,
                "process_to_computing": round(r["process_to_computing_s"]
                                              / at["chaos"]["process_to_computing_s"], 2)
                if r.get("process_to_computing_s") else None}
            for m, r in at.items() if m != "chaos"}
    return out
