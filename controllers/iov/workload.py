"""The Internet-of-Vehicles chain workload (DRDST, arXiv 2412.04742) as the testbed sees it.

Registered as the entry point ``iov`` (pyproject.toml): it checks a scenario's chain
experiment before anything starts (unknown method, more shards than nodes or RSUs), adds
`make bench BENCH=iov` and `make eval-iov`, and the console headline and report section of an
`iov-drdst` run, read from results/<run>/chain/summary.json (made from the nodes' records when
the run ends).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers.view_series import ViewData, jsonl_records, number, series
from testbed.workloads import Bench, Eval, ReportPart, Workload, fresh_output

WORKLOAD = Workload(
    name="iov",
    about="Internet of Vehicles: DRDST sharded DAG chain vs sharding, broadcast and "
          "consensus baselines, on SUMO-driven vehicles and RSUs",
    check="controllers.iov.config:check_scenario",
    benches=(Bench("iov", "controllers.iov.bench:run_bench",
                   "SUMO step + link update for 200 vehicles at 10 Hz (late ticks, CPU);\n"
                   "DRDST vs the best baseline at 100 vehicles (latency, TPS, success,\n"
                   "max node traffic); live vs simulated commit latency, same seed"),),
    evals=(Eval("iov", "controllers.iov.evaluate:main",
                "every method vs vehicle count and transaction rate over SUMO drives; the "
                "broadcast structures; the paper's claims",
                {"SEEDS": "--seeds", "VEHICLES": "--vehicles", "RATES": "--rates",
                 "METHODS": "--methods", "DURATION": "--duration"}),),
    headline="controllers.iov.workload:headline",
    report="controllers.iov.workload:report",
    view="controllers.iov.workload:view_series",
)


def summary_of(run_dir: Path) -> dict[str, Any] | None:
    """The run's chain summary, made now if the nodes' records are newer than it."""
    from controllers.iov.summary import summarize

    return fresh_output(run_dir, "chain", summarize)


def headline(run_dir: Path) -> list[str]:
    s = summary_of(run_dir)
    if not s:
        return []
    return [f"chain ({s['method']}, {s['nodes']} nodes, {s['epochs']} epochs): "
            f"{s['committed']}/{s['submitted']} committed, success {s['success_rate']}, "
            f"latency median {s['latency_ms_median']} ms (cross-shard "
            f"{s['cross_latency_ms_median']}), {s['tps']} tx/s, max node load "
            f"{s['max_node_traffic_kBps']} kB/s"]


def report(run_dir: Path, t0: float) -> ReportPart | None:
    s = summary_of(run_dir)
    if not s:
        return None
    from testbed.analysis import report as html

    keys = ["method", "nodes", "submitted", "committed", "success_rate", "tps",
            "latency_ms_median", "latency_ms_p95", "cross_latency_ms_median",
            "max_node_traffic_kBps", "epochs"]
    sections = [("IoV chain", html.table_html([{k: s.get(k) for k in keys}], keys))]
    if s.get("shards_over_time"):
        rows = s["shards_over_time"]
        sections.append(("IoV chain: epochs", html.table_html(rows, list(rows[0]))))
    files = {}
    png = run_dir / "chain" / "chain.png"
    if png.is_file():
        files["chain.png"] = png.read_bytes()
        sections.append(("IoV chain: latency, rounds, traffic",
                         html.img_html(files["chain.png"], "chain")))
    return ReportPart(sections=sections, files=files,
                      numbers={"chain_latency_ms": s.get("latency_ms_median"),
                               "chain_success": s.get("success_rate"),
                               "chain_tps": s.get("tps")})


VIEW_SERIES = [series("iov.committed", "transactions committed", "tx", "iov"),
               series("iov.failed", "transactions failed (timed out)", "tx", "iov"),
               series("iov.latency_ms", "commit latency", "ms", "iov")]


def view_series(run_dir: Path, t_zero_wall: float) -> ViewData | None:
    """The live view's chain series, from the nodes' records (chain/<node>.jsonl, appended as
    they go; transactions.csv is made from them at the end): transactions committed and
    failed so far, and each commit's latency (submit -> commit, at the submitter).

    The records' `t_ms` are already milliseconds after the run's time zero (the timeline
    hands every node $SAGIN_T_ZERO), so `t_zero_wall` is not needed here."""
    folder = run_dir / "chain"
    if not folder.is_dir():
        return None
    events: list[tuple[float, str, float | None]] = []  # (ms after zero, ev, latency)
    for log in sorted(folder.glob("*.jsonl")):
        for r in jsonl_records(log):
            ev, t = r.get("ev"), number(r.get("t_ms"))
            if ev in ("commit", "failed") and t is not None:
                events.append((t, str(ev), number(r.get("latency_ms"))))
    if not events:
        return None
    events.sort(key=lambda e: e[0])
    points = []
    committed = failed = 0
    for t, ev, latency in events:
        values: dict[str, float] = {}
        if ev == "commit":
            committed += 1
            values["iov.committed"] = float(committed)
            if latency is not None:
                values["iov.latency_ms"] = latency
        else:
            failed += 1
            values["iov.failed"] = float(failed)
        points.append((round(t / 1000.0, 3), values))
    return VIEW_SERIES, points
