"""The trusted multi-LLM consensus workload (WBFT, arXiv 2505.05103 / 2505.03196) as the
testbed sees it.

Registered as the entry point ``consensus`` (pyproject.toml), the way docs/architecture.md
says a workload registers: it adds `make bench BENCH=consensus`, `make eval-consensus`, and
the console headline and report section of a `trusted-llm` run, read from
results/<run>/consensus/summary.json.
"""

from __future__ import annotations

from pathlib import Path

from controllers.view_series import ViewData, csv_rows, jsonl_records, number, series
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
    view="controllers.consensus.workload:view_series",
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


def _reply_times(folder: Path) -> dict[tuple[int, int], list[float]]:
    """(protocol epoch, query seq) -> the wall times the nodes sent their REPLY to the client,
    sorted: from the nodes' message logs, for decisions.csv files written before it had a
    time column."""
    out: dict[tuple[int, int], list[float]] = {}
    for log in sorted(folder.glob("*.jsonl")):
        for r in jsonl_records(log):
            if r.get("kind") == "REPLY" and r.get("dir") == "tx":
                t, p, seq = number(r.get("t")), number(r.get("p")), number(r.get("seq"))
                if t is not None and p is not None and seq is not None:
                    out.setdefault((int(p), int(seq)), []).append(t)
    for times in out.values():
        times.sort()
    return out


def view_series(run_dir: Path, t_zero_wall: float) -> ViewData | None:
    """The live view's consensus series: questions decided so far (all protocols, one after
    another) and each decision's latency (query sent -> answer accepted) per protocol, at the
    moment the client accepted it.

    The client appends each decision to decisions.csv with its wall time `t`.  Older files
    have no such column: a decision's time is then when the reply that completed it left its
    node (the `replies`-th REPLY of that query, from the nodes' logs; protocols are numbered
    in the order they ran, as the client numbers their epochs) - later by the reply's trip."""
    folder = run_dir / "consensus"
    rows = csv_rows(folder / "decisions.csv")
    if not rows:
        return None
    replies: dict[tuple[int, int], list[float]] | None = None
    epochs: dict[str, int] = {}
    timed: list[tuple[float, str, float | None]] = []  # (wall time, protocol, latency)
    for r in rows:
        protocol = r.get("protocol", "")
        epochs.setdefault(protocol, len(epochs) + 1)
        if not r.get("accepted"):
            continue  # no answer accepted: nothing was decided
        t = number(r.get("t"))
        if t is None:
            if replies is None:
                replies = _reply_times(folder)
            seq, n = number(r.get("seq")), number(r.get("replies"))
            got = replies.get((epochs[protocol], int(seq or 0)), [])
            if not got:
                continue
            t = got[min(len(got), max(1, int(n or 1))) - 1]
        timed.append((t, protocol, number(r.get("latency_s"))))
    timed.sort(key=lambda x: x[0])
    declared = [series("consensus.decided", "questions decided", "decisions", "consensus")]
    declared += [series(f"consensus.latency_s.{p}", f"decision latency ({p})", "s", "consensus")
                 for p in epochs]
    points = []
    for i, (t, protocol, latency) in enumerate(timed, 1):
        values = {"consensus.decided": float(i)}
        if latency is not None:
            values[f"consensus.latency_s.{protocol}"] = latency
        points.append((round(t - t_zero_wall, 3), values))
    return declared, points
