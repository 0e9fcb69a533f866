"""The edge-LLM workload (prima.cpp / Halda layer assignment, TPI-LLM tensor parallelism) as
the testbed sees it.

Registered as the entry point ``llm`` (pyproject.toml).  What it adds: `make bench
BENCH=llm`, and for an `edge-llm` run the ms/token of every method on the console and the
method table in the report, read from results/<run>/llm/summary.json.
"""

from __future__ import annotations

from pathlib import Path

from controllers.view_series import ViewData, csv_rows, number, series, truth
from testbed.workloads import Bench, ReportPart, Workload, run_output

WORKLOAD = Workload(
    name="llm",
    about="SmolLM2-135M split over edge devices: Halda ILP, baselines, tensor parallelism",
    benches=(Bench("llm", "controllers.llm.bench:run",
                   "SmolLM2-135M split over 1-5 payload-agent nodes at RTT 1/10/50 ms:\n"
                   "ms/token of even pipeline vs tensor parallel (homogeneous), and single /\n"
                   "even / proportional / Halda / tensor on heterogeneous devices "
                   "(Halda vs even)"),
             Bench("llm-paper", "controllers.llm.paper:run",
                   "TPI-LLM in its own regime: 4 devices x 32 MiB for layers, all streaming\n"
                   "from an emulated disk; TTFT and ms/token of TPI (TP + memory window) vs\n"
                   "no-prefetch, Accelerate-/Transformers-style offload, Halda; the claims")),
    headline="controllers.llm.workload:headline",
    report="controllers.llm.workload:report",
    view="controllers.llm.workload:view_series",
)


def headline(run_dir: Path) -> list[str]:
    s = run_output(run_dir, "llm")
    if s is None:
        return []
    cells = []
    for r in s.get("methods", []):
        mpt = r.get("ms_per_token")
        if r.get("feasible", True) and isinstance(mpt, int | float):
            same = "" if r.get("tokens_equal") else " (tokens differ!)"
            cells.append(f"{r['method']} {mpt:.1f}{same}")
        else:
            cells.append(f"{r['method']} " + ("infeasible" if not r.get("feasible", True)
                                               else "failed"))
    lines = ["llm ms/token: " + ", ".join(cells)] if cells else []
    fo = s.get("failover") or {}
    if fo.get("replanned"):
        lines.append(f"llm failover: {', '.join(fo.get('dead', []))} died; re-planned and "
                     f"served again after {fo.get('failure_to_served_s')} s at "
                     f"{fo['replanned'].get('ms_per_token') or 0:.1f} ms/token")
    return lines


def report(run_dir: Path, t0: float) -> ReportPart | None:
    table = run_dir / "llm" / "table.md"
    s = run_output(run_dir, "llm")
    if s is None or not table.is_file():
        return None
    import html

    halda = next((r.get("ms_per_token") for r in s.get("methods", [])
                  if r.get("method") == "halda"), None)
    return ReportPart(sections=[("Edge LLM: every method on the same prompts",
                                 f"<pre>{html.escape(table.read_text())}</pre>")],
                      numbers={"llm_halda_ms_per_token": halda})


def view_series(run_dir: Path, t_zero_wall: float) -> ViewData | None:
    """The live view's edge-LLM series: each served prompt's ms/token, one series per method
    (the methods run one after another, so the page shows them side by side in time), and
    its time to first token, at the moment the generation finished.

    From generations.csv, which the orchestrator rewrites after each method with each
    generation's wall-clock finish `t_done`.  Files from before that column have no time for
    any generation (nothing else the workload writes is timestamped): None, rather than
    invented times."""
    points = []
    methods: list[str] = []
    for r in csv_rows(run_dir / "llm" / "generations.csv"):
        t, method = number(r.get("t_done")), r.get("method", "")
        if t is None or not method or not truth(r.get("ok")):
            continue
        if method not in methods:
            methods.append(method)
        values = {}
        mpt, ttft = number(r.get("ms_per_token")), number(r.get("ttft_ms"))
        if mpt is not None:
            values[f"llm.ms_per_token.{method}"] = mpt
        if ttft is not None:
            values["llm.ttft_ms"] = ttft
        if values:
            points.append((round(t - t_zero_wall, 3), values))
    if not points:
        return None
    declared = [series(f"llm.ms_per_token.{m}", f"ms/token ({m})", "ms", "llm") for m in methods]
    declared.append(series("llm.ttft_ms", "time to first token", "ms", "llm"))
    points.sort(key=lambda p: p[0])
    return declared, points
