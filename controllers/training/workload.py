"""The elastic edge-training workload (Chaos, arXiv 2505.12815) as the testbed sees it.

Registered as the entry point ``training`` (pyproject.toml): it checks a scenario's training
plan before anything starts (unknown method, a node that does not exist, more leaves than
nodes), adds `make bench BENCH=training` and `make eval-training`, and the console headline and
report section of an `edge-training` run, read from results/<run>/training/summary.json (made
from the nodes' logs when the run ends).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from controllers.view_series import ViewData, jsonl_records, number, series
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
    view="controllers.training.workload:view_series",
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


def _duration(run_dir: Path) -> float:
    """The scenario's duration_s from scenario.resolved.yaml (a top-level key the runner
    writes; read with a regular expression, not a YAML parse, as the view asks every second),
    or infinity."""
    try:
        text = (run_dir / "scenario.resolved.yaml").read_text(errors="replace")
    except OSError:
        return float("inf")
    m = re.search(r"^duration_s:\s*([0-9.eE+-]+)\s*$", text, re.M)
    return float(m.group(1)) if m else float("inf")


VIEW_SERIES = [series("training.step", "training step", "steps", "training"),
               series("training.loss", "training loss (a member's batch)", "", "training"),
               series("training.accuracy_pct", "held-out accuracy", "%", "training"),
               series("training.members", "cluster members", "nodes", "training")]


def view_series(run_dir: Path, t_zero_wall: float) -> ViewData | None:
    """The live view's training series, from the nodes' own records (training/<node>.jsonl,
    appended as they train; steps.csv and events.csv are made from them at the end): the
    cluster's step and that step's loss when its first member finished it (steps are
    synchronous, so one point a step rather than one per member), held-out accuracy at each
    evaluation, and the cluster's size at its first view and every committed change.  Like
    the summary, nothing after the scenario's end: the teardown's kills read as crashes."""
    folder = run_dir / "training"
    if not folder.is_dir():
        return None
    end = t_zero_wall + _duration(run_dir)
    steps: dict[int, tuple[float, float | None]] = {}  # step -> (first finish, its loss)
    accuracy: dict[int, tuple[float, float]] = {}  # step -> (first evaluation, accuracy)
    members: list[tuple[float, float]] = []
    for log in sorted(folder.glob("*.jsonl")):
        for r in jsonl_records(log):
            k, t = r.get("k"), number(r.get("t"))
            step = number(r.get("step"))
            if t is None or t > end:
                continue
            if k == "step" and step is not None:
                if int(step) not in steps or t < steps[int(step)][0]:
                    steps[int(step)] = (t, number(r.get("loss")))
            elif k == "accuracy" and step is not None and number(r.get("acc")) is not None:
                if int(step) not in accuracy or t < accuracy[int(step)][0]:
                    accuracy[int(step)] = (t, 100.0 * (number(r.get("acc")) or 0.0))
            elif k == "change" and isinstance(r.get("m"), list):
                members.append((number(r.get("t_commit")) or t, float(len(r["m"]))))
            elif k == "view" and r.get("reason") == "bootstrap" and isinstance(r.get("m"), list):
                members.append((t, float(len(r["m"]))))
    points: list[tuple[float, dict[str, float]]] = []
    for step, (t, loss) in steps.items():
        values = {"training.step": float(step)}
        if loss is not None:
            values["training.loss"] = loss
        points.append((t, values))
    points += [(t, {"training.accuracy_pct": round(acc, 3)}) for t, acc in accuracy.values()]
    # every member logs the bootstrap view: one point for the same size within a second
    last: tuple[float, float] | None = None
    for t, n in sorted(members):
        if last is None or n != last[1] or t - last[0] > 1.0:
            points.append((t, {"training.members": n}))
        last = (t, n)
    if not points:
        return None
    points.sort(key=lambda p: p[0])
    return VIEW_SERIES, [(round(t - t_zero_wall, 3), v) for t, v in points]
