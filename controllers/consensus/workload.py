"""The trusted multi-LLM consensus workload (WBFT, arXiv 2505.05103 / 2505.03196) as the
testbed sees it.

Registered as the entry point ``consensus`` (pyproject.toml), the way docs/architecture.md
says a workload registers: it adds `make bench BENCH=consensus`, `make eval-consensus`, and
the console headline and report section of a `trusted-llm` run, read from
results/<run>/consensus/summary.json.
"""

from __future__ import annotations

from pathlib import Path

from testbed.workloads import Bench, Eval, ReportPart, Workload, run_output

WORKLOAD = Workload(
    name="consensus",
    about="trusted multi-LLM network: WBFT vs PBFT, HotStuff, Raft and majority voting",
    benches=(Bench("consensus", "controllers.consensus.bench:run_bench",
                   "WBFT vs PBFT and HotStuff in the simulator: latency and decisions/s vs n\n"
                   "and link profile, messages per decision, committee share, >= 10,000\n"
                   "decisions with Byzantine nodes (conflicts), accuracy vs majority/single"),),
    evals=(Eval("consensus", "controllers.consensus.evaluate:main",
                "every protocol vs size, Byzantine fraction and behaviour; the claims",
                {"SEEDS": "--seeds", "WORKERS": "--workers"}),),
    headline="controllers.consensus.workload:headline",
    report="controllers.consensus.workload:report",
)


def headline(run_dir: Path) -> list[str]:
    s = run_output(run_dir, "consensus")
    if s is None:
        return []
    parts = [f"{p}: {m['accuracy'] * 100:.0f} % right, {m['latency_ms_median']:.0f} ms"
             for p, m in s.get("protocols", {}).items() if m.get("decided")]
    return ["consensus (" + ", ".join(parts) + ")"] if parts else []


def report(run_dir: Path, t0: float) -> ReportPart | None:
    s = run_output(run_dir, "consensus")
    if s is None:
        return None
    from testbed.analysis import report as html

    rows = [{"protocol": p, **{k: v for k, v in m.items() if not isinstance(v, dict | list)}}
            for p, m in s.get("protocols", {}).items()]
    cols = list(rows[0]) if rows else ["protocol"]
    wbft = s.get("protocols", {}).get("wbft", {})
    return ReportPart(sections=[("Consensus among the LLM nodes", html.table_html(rows, cols))],
                      numbers={"wbft_accuracy": wbft.get("accuracy"),
                               "wbft_latency_ms": wbft.get("latency_ms_median")})
