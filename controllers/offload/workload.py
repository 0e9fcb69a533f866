"""The task-offloading workload (MUECRS, CMADDPG and baselines) as the testbed sees it.

Registered as the entry point ``offload`` (pyproject.toml); the core finds it through
testbed.workloads and never imports this package.  What it adds: `make bench BENCH=offload`,
`make eval-offload`, a console headline and a report section for runs of its live scenarios
(sagin-offload, sagin-offload-cmaddpg), read from the files the live controller writes in
results/<run>/offload/.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from controllers.view_series import ViewData, csv_rows, jsonl_records, number, series, truth
from testbed.workloads import Bench, Eval, ReportPart, Workload, log_records, run_output

TASK_CAP = 500
TASK_FIELDS = ("t_recv", "t_queued", "t_start", "t_done")

WORKLOAD = Workload(
    name="offload",
    about="task offloading in a SAGIN: MUECRS, CMADDPG and baselines, simulated and live",
    benches=(Bench("offload", "controllers.offload.bench:run",
                   "offloading simulator steps/s, controller decision time, payload-agent round\n"
                   "trip and throughput, MUECRS/CMADDPG vs the best baseline (ratios)"),),
    evals=(Eval("offload", "controllers.offload.evaluate:main",
                "every controller side by side on both presets, the papers' claims, plots",
                {"SEEDS": "--seeds", "CONFIG": "--config", "POLICIES": "--policies",
                 "PRESET": "--preset"}),),
    headline="controllers.offload.workload:headline",
    report="controllers.offload.workload:report",
    view="controllers.offload.workload:view_series",
)


def headline(run_dir: Path) -> list[str]:
    s = run_output(run_dir, "offload")
    if s is None:
        return []
    m, sim = s.get("measured", {}), s.get("simulated") or {}
    line = (f"offload ({s.get('algo')}, {s.get('slots')} slots): {m.get('tasks')} tasks, "
            f"deadlines met {100 * m.get('deadline_ratio', 0):.1f} %, mean delay "
            f"{m.get('mean_delay_s', 0):.3f} s, profit {m.get('profit', 0):.1f}")
    if sim:
        line += (f" (simulated: deadlines {100 * sim.get('deadline_ratio', 0):.1f} %, delay "
                 f"{sim.get('mean_delay_s', 0):.3f} s)")
    gap = (s.get("delay_gap_s") or {}).get("median")
    if gap is not None:
        line += f"; measured - predicted delay, median {1000 * gap:.1f} ms"
    return [line]


def tasks(run_dir: Path) -> list[dict[str, Any]]:
    """Offloaded tasks with their receive/queue/start/done times (wall clock): from the live
    controller's tasks.csv, else from the payload agents' task logs."""
    rows: list[dict[str, Any]] = []
    path = run_dir / "offload" / "tasks.csv"
    if path.is_file():
        with path.open(newline="") as f:
            rows += list(csv.DictReader(f))
    else:
        for log, rec in log_records(run_dir, "*/*.log", TASK_FIELDS):
            rec.setdefault("node", log.parent.name)
            rows.append(rec)
    out = []
    for r in rows:
        try:
            t = {k: float(r[k]) for k in TASK_FIELDS}
        except (KeyError, TypeError, ValueError):
            continue
        out.append({"id": str(r.get("id", len(out))), "node": str(r.get("node", "")), **t})
    out.sort(key=lambda t: t["t_recv"])
    return out[:TASK_CAP]


def task_timeline(rows: list[dict[str, Any]], t0: float) -> bytes | None:
    if not rows:
        return None
    from testbed.analysis.plots import plt, to_png

    shown = rows[:200]
    fig, ax = plt.subplots(figsize=(9, max(3, len(shown) * 0.04 + 1)))
    for i, t in enumerate(shown):
        ax.barh(i, t["t_start"] - t["t_recv"], left=t["t_recv"] - t0, color="tab:orange",
                height=0.8, label="queued" if i == 0 else None)
        ax.barh(i, t["t_done"] - t["t_start"], left=t["t_start"] - t0, color="tab:blue",
                height=0.8, label="computing" if i == 0 else None)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("task")
    ax.set_title(f"Task timeline ({len(shown)} of {len(rows)} tasks)")
    ax.legend(fontsize=7)
    return to_png(fig)


def report(run_dir: Path, t0: float) -> ReportPart | None:
    rows = tasks(run_dir)
    s = run_output(run_dir, "offload")
    if not rows and s is None:
        return None
    from testbed.analysis import report as html

    sections = []
    if s is not None:
        sim = s.get("simulated") or {}
        table = [{"": k, "measured": s["measured"].get(k), "simulated": sim.get(k)}
                 for k in ("tasks", "deadline_ratio", "mean_delay_s", "profit")]
        sections.append((f"Task offloading ({s.get('algo')})",
                         html.table_html(table, ["", "measured", "simulated"])))
    png = task_timeline(rows, t0)
    files = {"tasks.png": png} if png else {}
    if png:
        sections.append(("Task offloading timeline", html.img_html(png, "tasks")))
    return ReportPart(sections=sections, files=files, numbers={"tasks": len(rows)})


VIEW_SERIES = [series("offload.delay_s", "task delay", "s", "offload"),
               series("offload.deadline_hit_pct", "deadlines met (so far)", "%", "offload"),
               series("offload.tasks_done", "tasks served", "tasks", "offload")]


def view_series(run_dir: Path, t_zero_wall: float) -> ViewData | None:
    """The live view's offload series: each served task's measured delay at the moment its
    result reached the user, the running share of tasks that met their deadline, and the
    tasks served so far.

    Read from tasks.csv once the controller has written it (the end of the run: it also holds
    the tasks lost on the way, counted as misses when their deadline passed), else from
    tasks.jsonl, which the controller appends to as each task's fate becomes known; the share
    counts tasks dropped by admission as misses at their decision, as the headline does."""
    folder = run_dir / "offload"
    rows: list[dict[str, object]] = list(csv_rows(folder / "tasks.csv"))
    if not rows:
        rows = list(jsonl_records(folder / "tasks.jsonl"))
    events: list[tuple[float, float | None, bool]] = []  # (wall time, delay if served, met)
    for r in rows:
        delay, t_result = number(r.get("measured_delay_s")), number(r.get("t_result"))
        t_decided, deadline = number(r.get("t_decided")), number(r.get("deadline_s"))
        if delay is not None and t_result is not None and truth(r.get("ok")):
            events.append((t_result, delay, truth(r.get("met"))))
        elif t_decided is not None:  # dropped at once, or lost: a miss when its time is up
            admitted = truth(r.get("admitted"))
            events.append((t_decided + ((deadline or 0.0) if admitted else 0.0), None, False))
    if not events:
        return None
    events.sort(key=lambda e: e[0])
    points = []
    met = served = 0
    for i, (t, delay, hit) in enumerate(events, 1):
        met += hit
        values = {"offload.deadline_hit_pct": round(100.0 * met / i, 2)}
        if delay is not None:
            served += 1
            values |= {"offload.delay_s": round(delay, 4), "offload.tasks_done": float(served)}
        points.append((round(t - t_zero_wall, 3), values))
    return VIEW_SERIES, points
