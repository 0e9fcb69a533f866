"""metrics.json: per link configured vs measured (RTT, loss, throughput), per flow results,
the link engines' real-time lag, and the run's phase timings.  Written atomically whenever
called, so an interrupted run keeps what it measured."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from testbed.net.network import Network
from testbed.run.probes import Probes, expected_rtt_ms, summarise
from testbed.run.traffic import Flows
from testbed.scenario.model import Medium


def link_metrics(net: Network, probes: Probes | None,
                 counters: dict[str, dict[str, int]] | None, duration_s: float) -> dict[str, Any]:
    by_link: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for (lname, peer), rec in (probes.samples() if probes else {}).items():
        by_link.setdefault(lname, []).append((peer, rec))
    out: dict[str, Any] = {}
    for link in net.sc.links:
        seg = net.plan.segment_of(link.name)
        configured = {"medium": link.carried_by.value, "delay_ms": link.delay_ms,
                      "rate_mbps": link.rate_mbps, "loss_pct": link.loss_pct,
                      "rtt_ms": _r(expected_rtt_ms(net, link.name))}
        measured: dict[str, Any] = {}
        for peer, rec in by_link.get(link.name, []):
            sent = rec["max_seq"] + 1
            measured[peer] = {"rtt_ms": summarise(rec["rtt"]), "replies": len(rec["rtt"]),
                              "sent": sent,
                              "loss_pct": round(100.0 * (sent - len(rec["rtt"])) / sent, 2)
                              if sent else None}
        if counters is not None:
            tput = {}
            for m in seg.members:
                if m.link != link.name:
                    continue
                c = counters.get(f"{m.node}/{m.ifname}")
                if c:
                    tput[m.node] = {"tx_mbps_avg": round(c["tx_bytes"] * 8 / duration_s / 1e6, 3),
                                    "rx_mbps_avg": round(c["rx_bytes"] * 8 / duration_s / 1e6, 3)}
            measured["throughput"] = tput
        entry: dict[str, Any] = {"configured": configured, "measured": measured}
        rtt_meds = [v["rtt_ms"]["median"] for k, v in measured.items()
                    if k != "throughput" and v.get("rtt_ms")]
        if configured["rtt_ms"] and rtt_meds:
            med = statistics.median(rtt_meds)
            entry["rtt_error_ms"] = round(med - configured["rtt_ms"], 3)
        out[link.name] = entry
    return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def lag_summary(log_dir: Path, window: tuple[float, float] | None = None) -> dict[str, Any]:
    """Real-time lag of every ns-3 process (ns3-lag.jsonl, ns3-2-lag.jsonl, ...) together;
    with `window` (wall-clock start, end: the experiment from time zero), also over the
    seconds inside it alone, with tick percentiles from the per-second histograms."""
    rows = []
    for log in sorted(log_dir.glob("ns3*-lag.jsonl")):
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        rows += lines[1:]  # second 0 includes the tap attach freeze, reported separately
    if not rows:
        return {}
    out = _lag_rows(rows)
    if window is not None:
        inside = [r for r in rows if window[0] < r["wall"] <= window[1] + 1.0]
        if inside:
            out["run_window"] = _lag_rows(inside)
    return out


def _lag_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lags = [r["max_lag_ms"] for r in rows]
    late = sum(r["late_ticks"] for r in rows)
    ticks = sum(r["ticks"] for r in rows)
    out: dict[str, Any] = {
        "seconds": len(rows), "max_lag_ms": round(max(lags), 3),
        "p99_of_per_second_max_ms": round(sorted(lags)[int(0.99 * (len(lags) - 1))], 3),
        "ticks_late_over_2ms_pct": round(100.0 * late / ticks, 3) if ticks else None}
    if ticks and all("over_ms" in r for r in rows):
        over = {b: sum(r["over_ms"][b] for r in rows) for b in rows[0]["over_ms"]}
        out["ticks_over_ms_pct"] = {b: round(100.0 * n / ticks, 3) for b, n in over.items()}
        # the tick lag's p99 lies at or below the first threshold that 1 % or fewer exceed
        out["tick_p99_at_most_ms"] = next(
            (float(b) for b, n in over.items() if n <= 0.01 * ticks), None)
    return out


def collect(net: Network, flows: Flows | None, probes: Probes | None,
            counters: dict[str, dict[str, int]] | None, duration_s: float,
            timings: dict[str, float], log_dir: Path,
            t_zero_wall: float | None = None) -> dict[str, Any]:
    window = (t_zero_wall, t_zero_wall + duration_s) if t_zero_wall else None
    return {
        "links": link_metrics(net, probes, counters, max(duration_s, 1e-3)),
        "flows": flows.results() if flows else {},
        "ns3_realtime": lag_summary(log_dir, window),
        "timings_s": timings,
        "engines": net.engine_names(),
        # real radios: which station associated with which access point, and each roam
        # with its measured handover time (the frames are in analysis/wlan.json)
        **({"wifi_radios": net.engines[Medium.WIFI].stats()}
           if Medium.WIFI in net.engines and net.engines[Medium.WIFI].name == "hwsim" else {}),
    }
