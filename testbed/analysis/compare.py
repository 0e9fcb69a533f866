"""Side-by-side comparison of analysed runs: one table per metric, overlaid plots.

Works from each run's analysis/ outputs (running the analysis first where missing), so
comparing many runs costs only the runs not analysed yet.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.analysis import plots, report

METRICS = ["captures", "packets", "bytes", "flows", "tcp_retransmissions", "rtt_median_ms",
           "rtt_p95_ms", "owd_median_ms", "owd_p95_ms", "owd_loss_pct", "mavlink_messages",
           "command_ack_median_ms"]
"""The core's metrics; workloads add theirs (analysis.json "workloads", from their report
hooks, e.g. the offloading workload's "tasks")."""


def _load(run: Path, console: Console) -> dict[str, Any]:
    js = run / "analysis" / "analysis.json"
    if not js.is_file():
        from testbed.analysis.run import analyze_run

        analyze_run(run, console=console)
    return json.loads(js.read_text())


def _median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    caps = doc["captures"]
    flows = [f for c in caps for f in c.get("flows", [])]
    rtt = [f["rtt"] for f in flows if f.get("rtt", {}).get("n")] + [
        f["echo"]["rtt"] for f in flows if f.get("echo", {}).get("rtt", {}).get("n")]
    dirs = [di for d in doc.get("delay", []) for di in d.get("directions", [])]
    matched = sum(d["matched"] for d in dirs)
    lost = sum(d["lost"] for d in dirs)
    acks = [c["mavlink"]["command_ack"] for c in caps
            if (c.get("mavlink") or {}).get("command_ack", {}).get("n")]
    return {
        "captures": len(caps), "packets": sum(c.get("packets", 0) for c in caps),
        "bytes": sum(c.get("bytes", 0) for c in caps), "flows": len(flows),
        "tcp_retransmissions": sum(f.get("retransmissions", 0) for f in flows),
        "rtt_median_ms": _median([r["median_ms"] for r in rtt]),
        "rtt_p95_ms": _median([r["p95_ms"] for r in rtt]),
        "owd_median_ms": _median([d["delay"].get("median_ms") for d in dirs]),
        "owd_p95_ms": _median([d["delay"].get("p95_ms") for d in dirs]),
        "owd_loss_pct": round(100 * lost / (matched + lost), 3) if matched + lost else None,
        "mavlink_messages": sum((c.get("mavlink") or {}).get("messages", 0) for c in caps),
        "command_ack_median_ms": _median([a["median_ms"] for a in acks]),
    } | {k: v for numbers in doc.get("workloads", {}).values() for k, v in numbers.items()}


def _total_throughput(run: Path, t0: float) -> dict[str, int]:
    """Bytes per time bin summed over all flows of the run's busiest capture."""
    per_cap: dict[str, dict[str, int]] = {}
    path = run / "analysis" / "throughput.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            bins = per_cap.setdefault(r["capture"], {})
            bins[r["t_s"]] = bins.get(r["t_s"], 0) + int(r["bytes"])
    if not per_cap:
        return {}
    busiest = max(per_cap.values(), key=lambda b: sum(b.values()))
    return {str(round(float(t) + t0)): v for t, v in busiest.items()}


def _rtt_points(run: Path, doc: dict[str, Any]) -> list[list[float]]:
    """[t, rtt_ms] of every RTT sample of a run: from rtt.csv (times since the run's time
    zero), or from analysis.json's series where an older analysis kept them there."""
    path = run / "analysis" / "rtt.csv"
    if path.is_file():
        with path.open(newline="") as f:
            return [[float(r["t_s"]), float(r["rtt_ms"])] for r in csv.DictReader(f)]
    return [p for c in doc["captures"] for s in c.get("rtt_series_ms", {}).values() for p in s]


def compare_runs(runs: list[Path], out: str | Path | None = None,
                 console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    docs = [_load(Path(r), console) for r in runs]
    names = [f"{Path(r).parent.name}/{Path(r).name}" for r in runs]
    sums = [summarize(d) for d in docs]
    out_dir = Path(out) if out else Path("results") / "compare" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for s in sums for k in s} - set(METRICS))
    rows = [{"metric": m} | {n: s.get(m) for n, s in zip(names, sums, strict=True)}
            for m in METRICS + extra]
    md = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    md += ["| " + " | ".join([r["metric"]] + [report._fmt(r[n]) for n in names]) + " |"
           for r in rows]
    (out_dir / "compare.md").write_text("\n".join(md) + "\n")
    report.write_json(out_dir / "compare.json", {"runs": names, "summary": sums})
    thr = [(n, _total_throughput(Path(r), 0.0)) for n, r in zip(names, runs, strict=True)]
    thr = [(n, {str(int(float(k) - min(map(float, b)))): v for k, v in b.items()})
           for n, b in thr if b]
    rtt = []
    for n, r, d in zip(names, runs, docs, strict=True):
        pts = _rtt_points(Path(r), d)
        if pts:
            start = min(p[0] for p in pts)
            rtt.append((n, sorted([[p[0] - start, p[1]] for p in pts])))
    figs = {"throughput.png": plots.throughput(thr, 1.0, 0.0,
                                               "Throughput of each run's busiest capture"),
            "rtt.png": plots.timeseries(rtt, 0.0, "RTT (ms)", "RTT over time")}
    for name, png in figs.items():
        if png:
            (out_dir / name).write_bytes(png)
    (out_dir / "compare.html").write_text(report.page("Run comparison", [
        ("Summary", report.table_html(rows, ["metric", *names])),
        ("Throughput", report.img_html(figs["throughput.png"], "throughput")),
        ("RTT", report.img_html(figs["rtt.png"], "rtt"))]))
    return out_dir
