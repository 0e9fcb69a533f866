"""`make eval-training`: the edge-training scenario's churn timeline once per method, on the
same network, seed and events, and the methods side by side.

    make eval-training [METHODS=chaos,single,checkpoint,torchelastic] [DURATION=300]
                       [SCENARIO=edge-training]

Each method is a full run of the scenario (its own results/<scenario>/<run>/ folder) with
`--method M` added to every training command of the timeline; the table compares what each
run's summary.json measured: steps done, final accuracy, time and steps to the target
accuracy, scale-out delay (join request -> computing), total idle node-seconds, and the
control path's handling time per event kind.  Written to results/training/eval/<stamp>/
(table.md, results.json, compare.png).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from controllers.training.config import LIVE, METHODS

COLUMNS = ["steps", "final acc", "t to target (s)", "steps to target", "scale-out s (med)",
           "idle node-s", "join ms", "leave ms", "crash ms", "link decide ms"]


def with_method(sc: Any, method: str) -> Any:
    """The scenario with `--method M` on every training command of its timeline."""
    timeline = []
    for ev in sc.timeline:
        cmd = ev.command
        if cmd and LIVE in cmd and "--method" not in cmd:
            cmd = f"{cmd} --method {shlex.quote(method)}"
        timeline.append(ev.model_copy(update={"command": cmd}))
    return sc.model_copy(update={"timeline": timeline})


def run_method(scenario: str, method: str, duration: float | None, console: Console
               ) -> dict[str, Any]:
    from controllers.training.workload import summary_of
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import load, resolve

    path = resolve(scenario)
    sc = with_method(load(path, cut_to_s=duration) if duration else load(path), method)
    res = Run(sc, f"{path} (--method {method})", RunOptions(console=console)).execute()
    s = summary_of(res.run_dir) or {}
    return {"method": method, "status": res.status, "run_dir": str(res.run_dir), **s}


def cells(s: dict[str, Any]) -> list[str]:
    def f(x: Any, nd: int = 2) -> str:
        return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)
    h = s.get("handling_ms_median", {})
    return [f(s.get("steps")), f(s.get("final_accuracy"), 3), f(s.get("time_to_accuracy_s"), 1),
            f(s.get("steps_to_accuracy")), f(s.get("scale_out_delay_s_median"), 3),
            f(s.get("idle_s_total"), 1), f(h.get("join"), 1), f(h.get("leave"), 1),
            f(h.get("crash"), 1), f(s.get("link_decide_ms_median"), 3)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make eval-training")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--duration", type=float, default=None,
                    help="cut the scenario to this many seconds (default: its own)")
    ap.add_argument("--scenario", default="edge-training")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"METHODS: {', '.join(bad)} unknown; use any of {', '.join(METHODS)}")
    con = Console()
    out = a.out or Path("results/training/eval") / time.strftime("%Y%m%d-%H%M%S")
    results = [run_method(a.scenario, m, a.duration, con) for m in methods]
    out.mkdir(parents=True, exist_ok=True)
    md = table(con, results)
    (out / "table.md").write_text(md)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, out / "compare.png")
    con.print(f"-> {out}/table.md, results.json, compare.png")
    return 0 if all(r["status"] == "done" for r in results) else 1


def table(con: Console, results: list[dict[str, Any]]) -> str:
    from controllers.report import results_table

    return results_table(con, "Elastic training under churn (same timeline, seed, network)",
                         COLUMNS, [(r["method"], cells(r)) for r in results])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against time for every method, and each method's idle node-seconds."""
    from testbed.analysis.plots import plt, to_png

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        acc = r.get("accuracy") or []
        a1.plot([x["t_s"] for x in acc], [x["acc"] for x in acc], label=r["method"])
    a1.set_xlabel("time from time zero (s)")
    a1.set_ylabel("held-out accuracy")
    a1.legend()
    a2.bar([r["method"] for r in results], [r.get("idle_s_total") or 0 for r in results])
    a2.set_ylabel("idle node-seconds (parked by events)")
    fig.tight_layout()
    path.write_bytes(to_png(fig))
