"""The elastic edge-training workload (Chaos, arXiv 2505.12815) as the testbed sees it.

Registered as the entry point ``training`` (pyproject.toml): it checks a scenario's training
plan before anything starts (unknown method, a node that does not exist, more leaves than
nodes), adds `make bench BENCH=training` and `make eval-training`, and the console headline and
report section of an `edge-training` run, read from results/<run>/training/summary.json (made
from the nodes' logs when the run ends).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.workloads import Bench, Eval, ReportPart, Workload, fresh_output

WORKLOAD = Workload(
    name="training",
    about="elastic edge training: Chaos multi-neighbour replication vs single-source, "
          "checkpoint-restart and TorchElastic under joins, leaves, crashes and link cuts",
    check="controllers.training.config:check_scenario",
    benches=(Bench("training", "controllers.training.bench:run_bench",
                   "scale-out delay vs state size (1/10/100 MB) and neighbours (1-4) on\n"
                   "10-50 Mbit/s ns-3 links: Chaos vs single-source vs checkpoint vs\n"
                   "TorchElastic; event handling (control path); the scheduler's balance"),),
    evals=(Eval("training", "controllers.training.evaluate:main",
                "edge-training's churn timeline once per method, side by side",
                {"METHODS": "--methods", "DURATION": "--duration", "SCENARIO": "--scenario"}),),
    headline="controllers.training.workload:headline",
    report="controllers.training.workload:report",
)


def summary_of(run_dir: Path) -> dict[str, Any] | None:
    """The run's training summary, made now if the nodes' records are newer than it."""
    from controllers.training.summary import summarize

    return fresh_output(run_dir, "training", summarize)


def headline(run_dir: Path) -> list[str]:
    s = summary_of(run_dir)
    if not s:
        return []
    so = s.get("scale_out_delay_s_median")
    tta = s.get("time_to_accuracy_s")
    hand = ", ".join(f"{k} {v:.1f} ms" for k, v in s.get("handling_ms_median", {}).items()
                     if v is not None)
    return [f"training ({s['method']}): {s['steps']} steps, accuracy {s['final_accuracy']}, "
            f"target {s['target_accuracy']} at {tta if tta is not None else '-'} s; "
            f"scale-out {so if so is not None else '-'} s (median); idle "
            f"{s['idle_s_total']} node-s; handling: {hand or '-'}"]


def report(run_dir: Path, t0: float) -> ReportPart | None:
    s = summary_of(run_dir)
    if not s:
        return None
    from testbed.analysis import report as html

    rows = [{"node": n, **{k: v for k, v in d.items() if not isinstance(v, list)}}
            for n, d in s["nodes"].items()]
    cols = sorted({c for r in rows for c in r}, key=lambda c: (c != "node", c))
    sections = [("Elastic training: nodes", html.table_html(rows, cols))]
    if s["timeline"]:
        tcols = sorted({c for r in s["timeline"] for c in r})
        sections.append(("Elastic training: events", html.table_html(s["timeline"], tcols)))
    png = run_dir / "training" / "cluster.png"
    files = {}
    if png.is_file():
        files["training-cluster.png"] = png.read_bytes()
        sections.append(("The training cluster over time",
                         html.img_html(files["training-cluster.png"], "training cluster")))
    return ReportPart(sections=sections, files=files,
                      numbers={"training_final_accuracy": s["final_accuracy"],
                               "training_scale_out_s": s["scale_out_delay_s_median"],
                               "training_idle_s": s["idle_s_total"]})
