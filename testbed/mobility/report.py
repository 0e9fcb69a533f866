"""After a moving run: measured RTT against the geometric prediction, outage at every
handover, and the plot of both with the handovers marked (mobility/rtt.png).

Measured RTTs come from the ping flows' own output (`ping -D`: receive time and RTT, so the
send time is known); the prediction is mobility/predicted.csv, interpolated at each send
time.  Outage of a handover: the longest run of consecutive unanswered pings sent within
[-0.5 s, +1.5 s] of it, times the ping interval (0 when every ping was answered); counted for
the flows whose path went through the terminal that handed over.
"""

from __future__ import annotations

import bisect
import csv
import json
import re
import statistics
from pathlib import Path
from typing import Any

from testbed.scenario.model import FlowKind, Scenario

_REPLY = re.compile(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+).*time=([\d.]+) ms")


def ping_replies(path: Path) -> list[tuple[float, int, float]]:
    """(wall receive time, icmp_seq, rtt ms) of every reply."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _REPLY.match(line)
        if m:
            out.append((float(m.group(1)), int(m.group(2)), float(m.group(3))))
    return out


def read_predicted(path: Path, on_path: dict[str, set[str]] | None = None
                   ) -> dict[str, tuple[list[float], list[float | None]]]:
    """flow -> (times, predicted RTT); fills `on_path` with every node a flow's path
    crossed, when given."""
    out: dict[str, tuple[list[float], list[float | None]]] = {}
    if not path.exists():
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            ts, vals = out.setdefault(row["flow"], ([], []))
            ts.append(float(row["t_s"]))
            vals.append(float(row["rtt_ms"]) if row["rtt_ms"] else None)
            if on_path is not None and row["path"]:
                on_path.setdefault(row["flow"], set()).update(row["path"].split(">"))
    return out


def _at(ts: list[float], vals: list[float | None], t: float) -> float | None:
    """Linear interpolation between ticks; None across a tick with no path."""
    i = bisect.bisect_left(ts, t)
    if i == 0 or i >= len(ts):
        return None
    a, b = vals[i - 1], vals[i]
    if a is None or b is None:
        return None
    f = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
    return a + f * (b - a)


def outage_s(sent: dict[int, float], answered: set[int], t: float, interval: float) -> float:
    """Longest run of unanswered pings sent within [t - 0.5, t + 1.5], in seconds."""
    worst = run = 0
    for seq in sorted(sent):
        if not t - 0.5 <= sent[seq] <= t + 1.5:
            continue
        run = run + 1 if seq not in answered else 0
        worst = max(worst, run)
    return worst * interval


def analyse(run_dir: Path, sc: Scenario, handovers: list[dict[str, Any]]) -> dict[str, Any]:
    man = json.loads((run_dir / "manifest.json").read_text())
    t0_wall = man.get("time_zero_wall")
    if t0_wall is None:
        return {}
    crossed: dict[str, set[str]] = {}
    predicted = read_predicted(run_dir / "mobility" / "predicted.csv", crossed)
    real = [h for h in handovers if h.get("reason") != "initial"]
    result: dict[str, Any] = {"flows": {}}
    series: dict[str, dict[str, list[float]]] = {}
    all_errors: list[float] = []
    outages: list[float] = []
    for flow in sc.traffic:
        path = run_dir / "flows" / f"{flow.name}.ping.txt"
        if flow.kind is not FlowKind.PING or not path.exists():
            continue
        replies = ping_replies(path)
        if not replies:
            continue
        sends = [(rx - t0_wall - rtt / 1000.0, seq, rtt) for rx, seq, rtt in replies]
        ts, vals = predicted.get(flow.name, ([], []))
        errs, mt, mv, pv = [], [], [], []
        for t, _, rtt in sends:
            p = _at(ts, vals, t)
            mt.append(t)
            mv.append(rtt)
            pv.append(p if p is not None else float("nan"))
            if p is not None:
                errs.append(abs(rtt - p))
        first_seq = min(s for _, s, _ in sends)
        first_t = min(t for t, s, _ in sends if s == first_seq)
        last_seq = max(s for _, s, _ in sends)
        sent = {s: first_t + (s - first_seq) * flow.interval_s
                for s in range(first_seq, last_seq + 1)}
        answered = {s for _, s, _ in sends}
        # the handovers of terminals this flow's path went through
        mine = [h for h in real if h["terminal"] in crossed.get(flow.name, set())
                | {flow.src, flow.dst}]
        flow_out = [outage_s(sent, answered, h["t_s"], flow.interval_s) for h in mine]
        outages += flow_out
        all_errors += errs
        errs.sort()
        result["flows"][flow.name] = {
            "replies": len(sends), "compared": len(errs),
            "median_abs_error_ms": round(statistics.median(errs), 4) if errs else None,
            "p95_abs_error_ms": round(errs[int(0.95 * (len(errs) - 1))], 4) if errs else None,
            "outage_s_per_handover": [round(x, 3) for x in flow_out]}
        series[flow.name] = {"t": mt, "measured": mv, "predicted": pv,
                             "handovers": [h["t_s"] for h in mine]}
    all_errors.sort()
    installs = [h["route_install_ms"] for h in real if "route_install_ms" in h]
    converge = [h["route_convergence_ms"] for h in real if "route_convergence_ms" in h]
    result.update(
        handovers=len(real),
        median_abs_rtt_error_ms=round(statistics.median(all_errors), 4) if all_errors else None,
        max_outage_s=round(max(outages), 3) if outages else None,
        median_outage_s=round(statistics.median(outages), 3) if outages else None,
        route_install_ms_max=max(installs) if installs else None,
        route_install_ms_median=statistics.median(installs) if installs else None,
        route_convergence_ms_max=max(converge) if converge else None,
        route_convergence_ms_median=statistics.median(converge) if converge else None)
    if series:
        try:
            plot(run_dir / "mobility" / "rtt.png", series, sc.name)
            result["plot"] = "mobility/rtt.png"
        except Exception as exc:  # noqa: BLE001 - a plot must never lose the numbers
            result["plot_error"] = f"{type(exc).__name__}: {exc}"
    return result


def plot(path: Path, series: dict[str, dict[str, list[float]]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(10, 3.2 * len(series)), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], series.items(), strict=True):
        ax.plot(s["t"], s["measured"], ".", ms=2.5, label="measured (ping)")
        ax.plot(s["t"], s["predicted"], "-", lw=1.0, label="predicted from geometry")
        for i, t in enumerate(s["handovers"]):
            ax.axvline(t, color="grey", ls=":", lw=0.8,
                       label="handover on the path" if i == 0 else None)
        ax.set_ylabel("RTT (ms)")
        ax.set_title(f"{title}: {name}")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time since time zero (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
