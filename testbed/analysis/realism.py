"""How real is it?  A run's ping and iperf3 results as the statistics WetLinks reports, beside
the published figures and beside the same scenario without the access model.

Pure statistics (`percentiles`, `cdf`, `autocorrelation`, `dominant_period`,
`loss_by_slot_phase`) are separate from the file reading (`read_ping`, `read_iperf3`,
`vantage_stats`) and from the eval (`main`: runs both variants of
topologies/starlink-access.yaml, writes results/realism/*.json and plots), so the unit tests
check the numbers on synthetic series.

Every reference value carries its source; values no accessible text gives are not invented
(`REFERENCES`, docs/realism.md).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "topologies" / "starlink-access.yaml"
OUT = ROOT / "results" / "realism"
CALIBRATION_SITE = "osnabrueck"  # fitted on; the other vantage point validates
WETLINKS_EVERY_S = 120.0  # WetLinks' spacing of iperf3 runs
VALIDATION_SITE = "enschede"
# the scenario's user-side rates are 1/20 of Starlink's (this host's ns-3 cannot carry 350
# Mbit/s in real time; topologies/starlink-access.yaml): measured throughput is multiplied back
THROUGHPUT_SCALE = 20.0

# ---- published values -----------------------------------------------------------------------
# statistic -> {value, unit, kind, source}.  value None: not published / not pinned.
# WetLinks (Laniewski et al., arXiv 2402.16448) as read from the vector PDFs its authors
# released with the dataset (github.com/sys-uos/WetLinks, Plots/, drawn by
# Plotting_Scripts/latency_analysis.py and throughput_analysis.py): matplotlib box plots
# (notch=True) of per-measurement values.  Read from the plotted coordinates: median = notch
# centre, Q1/Q3 = box edges, whiskers = 1.5 IQR extents, n from the notch half-width
# (1.57 IQR / sqrt(n), matplotlib's formula), p99 from the individually plotted fliers.
# The statistics are per measurement: RTT = `ping_avg`, the mean of one measurement's 250
# pings at 0.1 s (Fig. 7a, log axis; n ~ 68,594 Osnabrück / 48,359 Enschede); throughput =
# the mean of one 15-s iperf3 run (Fig. 4a download, 4b upload; n ~ 60,702 / 37,312 runs).
_WL = "WetLinks (arXiv 2402.16448) Fig. {fig}, read from the released vector PDF " \
      "(box plot coordinates: {how})"
_BOX = "median = notch centre, Q1/Q3 = box edges"


def _wl(value: float | None, unit: str, fig: str, how: str = _BOX,
        kind: str = "published (figure)") -> dict[str, Any]:
    return {"value": value, "unit": unit, "kind": kind, "source": _WL.format(fig=fig, how=how)}


REFERENCES: dict[str, dict[str, Any]] = {
    # RTT: distribution of per-measurement means (250 pings at 0.1 s) - Fig. 7a
    "osnabrueck.rtt_ms_window_p50": _wl(60.97, "ms", "7a"),
    "osnabrueck.rtt_ms_window_p25": _wl(56.11, "ms", "7a"),
    "osnabrueck.rtt_ms_window_p75": _wl(65.97, "ms", "7a"),
    "osnabrueck.rtt_ms_window_p95": dict(_wl(
        None, "ms", "7a", "bounded only: between Q3 65.97 and the upper whisker 80.75",
        kind="bounded, not pinned"), bounds=[65.97, 80.75]),
    "osnabrueck.rtt_ms_window_p99": _wl(
        83.17, "ms", "7a", "from the plotted fliers, n ~ 68,594 from the notch"),
    "enschede.rtt_ms_window_p50": _wl(62.88, "ms", "7a"),
    "enschede.rtt_ms_window_p25": _wl(58.93, "ms", "7a"),
    "enschede.rtt_ms_window_p75": _wl(67.20, "ms", "7a"),
    "enschede.rtt_ms_window_p95": dict(_wl(
        None, "ms", "7a", "bounded only: between Q3 67.20 and the upper whisker 79.58",
        kind="bounded, not pinned"), bounds=[67.20, 79.58]),
    "enschede.rtt_ms_window_p99": _wl(
        83.84, "ms", "7a", "from the plotted fliers, n ~ 48,359 from the notch"),
    # throughput: distribution of per-run means (15-s UDP iperf3) - Fig. 4a / 4b
    "osnabrueck.download_mbps_run_p50": _wl(215.32, "Mbit/s", "4a"),
    "osnabrueck.download_mbps_run_p25": _wl(167.17, "Mbit/s", "4a"),
    "osnabrueck.download_mbps_run_p75": _wl(256.90, "Mbit/s", "4a"),
    "enschede.download_mbps_run_p50": _wl(240.17, "Mbit/s", "4a"),
    "enschede.download_mbps_run_p25": _wl(198.47, "Mbit/s", "4a"),
    "enschede.download_mbps_run_p75": _wl(278.33, "Mbit/s", "4a"),
    # upload: the access model's cell uplink (cell_uplink_mbps) was fitted on Osnabrück's
    # median; Enschede's is validation
    "osnabrueck.upload_mbps_run_p50": _wl(14.88, "Mbit/s", "4b"),
    "osnabrueck.upload_mbps_run_p25": _wl(11.58, "Mbit/s", "4b"),
    "osnabrueck.upload_mbps_run_p75": _wl(18.95, "Mbit/s", "4b"),
    "enschede.upload_mbps_run_p50": _wl(16.18, "Mbit/s", "4b"),
    "enschede.upload_mbps_run_p25": _wl(12.96, "Mbit/s", "4b"),
    "enschede.upload_mbps_run_p75": _wl(20.03, "Mbit/s", "4b"),
    # secondary: per-second samples, what the cell-capacity parameters were fitted on before
    # the figures were read (kept because `per_second_throughput`'s fit still uses them)
    "osnabrueck.download_mbps_per_s_p50": {
        "value": 214.4, "unit": "Mbit/s", "kind": "secondary: third-party computation",
        "source": "WetLinks release (iperf_cleaned_seconds_Osnabruck.csv, 1,019,109 1-Hz "
                  "samples) as summarised by a public analysis (median 214.4, p05 71.5, p95 "
                  "335.6); not a figure of the paper"},
    "osnabrueck.download_mbps_per_s_p5": {
        "value": 71.5, "unit": "Mbit/s", "kind": "secondary: third-party computation",
        "source": "as above (per-second samples)"},
    "osnabrueck.download_mbps_per_s_p95": {
        "value": 335.6, "unit": "Mbit/s", "kind": "secondary: third-party computation",
        "source": "as above (per-second samples)"},
    "osnabrueck.boundary_dip_ratio": {
        "value": round(189.0 / 217.5, 3), "unit": "ratio",
        "kind": "secondary: third-party computation",
        "source": "same analysis: median throughput 189.0 Mbit/s in the second of the slot "
                  "boundary vs 215-220 (mid 217.5) inside the slot"},
    "period_s": {
        "value": 15.0, "unit": "s", "kind": "published",
        "source": "Tanveer et al., arXiv 2307.00402 (abstract: global controller); Mohan et "
                  "al., arXiv 2310.09242 §6.2 (15-s reconfiguration intervals, time-aligned "
                  "across sites)"},
    "boundary_offset_s": {
        "value": 12.0, "unit": "s past the minute (mod 15)", "kind": "published (secondary)",
        "source": "12/27/42/57 s past the minute, attributed to 2307.00402 by secondary "
                  "sources; a third-party analysis of WetLinks' 1-Hz throughput recovers 10.8 s"},
}
# WetLinks' RTT statistic: one measurement = 250 pings at 0.1 s
RTT_WINDOW_S = 25.0


# ---- statistics -------------------------------------------------------------------------------
def percentiles(xs: Sequence[float], qs: Sequence[float] = (5, 25, 50, 75, 95, 99)
                ) -> dict[str, float]:
    """{"p5": ..., "p50": ...} with numpy's linear interpolation (what WetLinks' scripts use)."""
    a = np.asarray(xs, dtype=float)
    if not len(a):
        return {}
    return {f"p{q:g}": round(float(np.percentile(a, q)), 3) for q in qs}


def window_means(t: Sequence[float], y: Sequence[float], window_s: float = RTT_WINDOW_S,
                 max_gap_s: float = 1.0) -> list[float]:
    """WetLinks' per-measurement RTT: the mean of each complete `window_s` window of samples
    (250 pings at 0.1 s = 25 s).  The series is first cut where it has a gap longer than
    `max_gap_s` (the loaded periods taken out), then each stretch is cut into consecutive
    windows from its first sample; a stretch's incomplete last window is dropped, so a
    measurement never spans a gap.  Lost pings are simply absent (ping_avg is over the
    answered ones)."""
    tt, yy = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    if not len(tt):
        return []
    out: list[float] = []
    for seg in np.split(np.arange(len(tt)), np.where(np.diff(tt) > max_gap_s)[0] + 1):
        ts, ys = tt[seg], yy[seg]
        k = np.floor((ts - ts[0]) / window_s)
        for w in range(int((ts[-1] - ts[0]) // window_s)):
            sel = k == w
            if sel.any():
                out.append(float(ys[sel].mean()))
    return out


def cdf(xs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical CDF (i/n, i = 1..n)."""
    a = np.sort(np.asarray(xs, dtype=float))
    return a, np.arange(1, len(a) + 1) / max(len(a), 1)


def autocorrelation(x: Sequence[float], max_lag: int,
                    valid: Sequence[bool] | None = None) -> np.ndarray:
    """Sample autocorrelation of a mean-removed series at lags 0..max_lag (acf[0] = 1).
    With `valid`, only pairs of valid points count (gaps neither help nor hurt a lag)."""
    a = np.asarray(x, dtype=float)
    ok = np.ones(len(a), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if not ok.any():
        return np.zeros(max_lag + 1)
    a = np.where(ok, a - a[ok].mean(), 0.0)
    var = float(np.dot(a, a)) / int(ok.sum())
    if var == 0:
        return np.zeros(max_lag + 1)
    out = []
    for k in range(max_lag + 1):
        pairs = ok[:len(a) - k] & ok[k:]
        n = int(pairs.sum())
        out.append(float(np.dot(a[:len(a) - k], a[k:])) / n / var if n else 0.0)
    return np.array(out)


def dominant_period(t: Sequence[float], y: Sequence[float], dt: float = 0.1,
                    lo_s: float = 5.0, hi_s: float = 25.0, max_gap_s: float = 0.5
                    ) -> tuple[float | None, float]:
    """The lag (s) in [lo_s, hi_s] where the autocorrelation of |dy/dt| peaks, y(t) resampled
    on a dt grid (linear interpolation over gaps); and the peak value.

    Why the change and not the level: a level redrawn independently every 15 s has an ACF
    that falls linearly to zero at 15 s (no peak), but its steps - and the spikes at each
    boundary - recur every 15 s, so the ACF of the step magnitude peaks there."""
    tt, yy = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    if len(tt) < 3 or tt[-1] - tt[0] < 2 * hi_s:
        return None, float("nan")
    grid = np.arange(tt[0], tt[-1], dt)
    series = np.abs(np.diff(np.interp(grid, tt, yy)))
    # a grid step is valid when a real sample lies within max_gap_s of both its ends
    near = np.abs(grid - tt[np.clip(np.searchsorted(tt, grid), 0, len(tt) - 1)])
    near = np.minimum(near, np.abs(grid - tt[np.clip(np.searchsorted(tt, grid) - 1, 0,
                                                     len(tt) - 1)]))
    valid = (near[:-1] <= max_gap_s) & (near[1:] <= max_gap_s)
    acf = autocorrelation(series, int(round(hi_s / dt)), valid)
    lo = int(round(lo_s / dt))
    k = lo + int(np.argmax(acf[lo:]))
    return round(k * dt, 2), round(float(acf[k]), 3)


def slot_phase(t_unix: np.ndarray | float, slot_s: float = 15.0, offset_s: float = 12.0
               ) -> np.ndarray:
    """Seconds since the last boundary (boundaries at offset_s + k * slot_s past the epoch
    minute: 12/27/42/57 for the defaults)."""
    return np.mod(np.asarray(t_unix, dtype=float) - offset_s, slot_s)


def loss_by_slot_phase(sent_t: Sequence[float], lost: Sequence[bool], slot_s: float = 15.0,
                       offset_s: float = 12.0, window_s: float = 0.5) -> dict[str, Any]:
    """Where in the slot the lost packets were sent: losses per 1-s phase bin, and the share
    of losses within `window_s` after a boundary against the share of packets sent there
    (concentration = ratio; 1.0 is uniform)."""
    ph = slot_phase(np.asarray(sent_t, dtype=float), slot_s, offset_s)
    lo = np.asarray(lost, dtype=bool)
    bins = np.floor(ph).astype(int)
    per_bin = [int(np.sum(lo & (bins == b))) for b in range(int(math.ceil(slot_s)))]
    near = ph < window_s
    n_lost = int(lo.sum())
    share_lost = float(np.sum(lo & near)) / n_lost if n_lost else float("nan")
    share_sent = float(np.mean(near)) if len(near) else float("nan")
    return {"lost": n_lost, "sent": int(len(lo)), "lost_by_phase_s": per_bin,
            "share_of_losses_near_boundary": round(share_lost, 3),
            "share_of_packets_near_boundary": round(share_sent, 3),
            "concentration": round(share_lost / share_sent, 2)
            if n_lost and share_sent > 0 else None}


# ---- reading a run --------------------------------------------------------------------------
_REPLY = re.compile(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+).*time=([\d.]+) ms")


@dataclass
class PingSeries:
    """One ping flow: reply times (unix s), RTTs (ms), and every sent packet's send time and
    whether it was answered."""

    t: np.ndarray
    rtt: np.ndarray
    sent_t: np.ndarray
    lost: np.ndarray


def read_ping(path: Path, interval_s: float) -> PingSeries:
    """A `ping -D` output: send times are reconstructed from the sequence numbers (seq n left
    at t0 + (n - 1) * interval, t0 from the answered packets)."""
    seqs, ts, rtts = [], [], []
    for line in path.read_text(errors="replace").splitlines():
        m = _REPLY.match(line)
        if m:
            ts.append(float(m.group(1)))
            seqs.append(int(m.group(2)))
            rtts.append(float(m.group(3)))
    if not seqs:
        z = np.zeros(0)
        return PingSeries(z, z, z, np.zeros(0, dtype=bool))
    s, t, r = np.array(seqs), np.array(ts), np.array(rtts)
    last = int(s.max())
    sent_seq = np.arange(1, last + 1)
    got = np.zeros(last, dtype=bool)
    got[s - 1] = True
    order = np.argsort(s)
    # a reply's send time is its arrival minus its RTT; a lost packet's is interpolated
    # between its answered neighbours (ping's real spacing drifts from the nominal interval,
    # so seq x interval would slide across the slot phase over minutes)
    sent_known = (t - r / 1e3)[order]
    sent = np.interp(sent_seq, s[order], sent_known)
    if len(s) == 1 or sent_seq[0] < s[order][0] or sent_seq[-1] > s[order][-1]:
        t0 = float(np.median(t - r / 1e3 - (s - 1) * interval_s))
        outside = (sent_seq < s[order][0]) | (sent_seq > s[order][-1])
        sent[outside] = t0 + (sent_seq[outside] - 1) * interval_s
    by_t = np.argsort(t)
    return PingSeries(t[by_t], r[by_t], sent, ~got)


def read_iperf3(path: Path) -> dict[str, Any] | None:
    """Mean receiver throughput of one iperf3 run (Mbit/s), its start (unix s) and its
    per-second series; None when the run produced no result."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    end = data.get("end") or {}
    s = end.get("sum_received") or end.get("sum") or {}
    if not s:
        return None
    start = data.get("start", {}).get("timestamp", {}).get("timesecs")
    per_s = [iv["sum"]["bits_per_second"] / 1e6 for iv in data.get("intervals", [])
             if "sum" in iv]
    return {"mbps": s.get("bits_per_second", 0.0) / 1e6, "start_unix": start,
            "lost_percent": s.get("lost_percent"), "per_s": per_s}


_SERVER_IV = re.compile(r"^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+\S+\s+\S+\s+([\d.]+) "
                        r"([KMG]?)bits/sec\s+[\d.]+ ms\s+\d+/\d+ \(.*\)\s*$")


def read_server_seconds(path: Path) -> list[float]:
    """Per-second receiver throughput (Mbit/s) from an iperf3 server's text log (for UDP the
    client's JSON intervals are what it *sent*; the receiver's are in the server's log).
    Whole seconds only: the short last interval and the summary line are left out."""
    if not path.is_file():
        return []
    unit = {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _SERVER_IV.match(line)
        if m and float(m.group(2)) - float(m.group(1)) >= 0.99:
            out.append(float(m.group(3)) * unit[m.group(4)])
    return out


def vantage_stats(run_dir: Path, site: str, sc: dict[str, Any], slot_s: float = 15.0,
                  offset_s: float = 12.0, scale: float = THROUGHPUT_SCALE) -> dict[str, Any]:
    """WetLinks' statistics for one vantage point of a run: RTT percentiles of the pings sent
    while no iperf3 run was on (WetLinks pings and runs iperf3 one after the other, and its two
    dishes did not share a network), WetLinks' per-measurement RTT statistic (the quartiles,
    p95 and p99 of 25-s window means, `window_means`, and how many windows there were), the
    15-s period, loss by slot phase, and the per-run mean throughput's quartiles (WetLinks'
    Fig. 4 statistic) and per-second percentiles, down and up (times `scale`)."""
    traffic = run_dir / "flows"
    flows = {f["name"]: f for f in sc.get("traffic", [])}
    # wall clock -> the scheduler's clock: mobility time 0 is the run's time zero and stands
    # for the scenario's epoch (time_scale 1), so phases come out as the scheduler's
    manifest = json.loads((run_dir / "manifest.json").read_text())
    epoch = sc.get("mobility", {}).get("epoch")
    shift = (_parse_epoch(epoch) - float(manifest["time_zero_wall"])) if epoch else 0.0
    ping_flow = flows[f"ping-{site}"]
    ps = read_ping(traffic / f"ping-{site}.ping.txt", ping_flow.get("interval_s", 0.2))
    out: dict[str, Any] = {"site": site}
    runs: dict[str, list[dict[str, Any]]] = {"download": [], "upload": []}
    busy: list[tuple[float, float]] = []
    for name, f in flows.items():
        if f.get("kind") != "udp":
            continue
        # any load, from the schedule (a run whose iperf3 failed still loaded the network):
        # WetLinks' dishes were alone on their networks
        t_start = float(manifest["time_zero_wall"]) + float(f.get("start_s", 0.0))
        busy.append((t_start - 1.0, t_start + float(f["duration_s"]) + 3.0))
        if site not in (f["src"], f["dst"]):
            continue
        r = read_iperf3(traffic / f"{name}.iperf3.json")
        if r is None:
            continue
        received = read_server_seconds(run_dir / "logs" / f["dst"] /
                                       f"iperf3-server-{name}.log")
        if received:
            r["per_s"] = received
        runs["download" if f["dst"] == site else "upload"].append(r)
    for d, rs in runs.items():
        vals = [r["mbps"] * scale for r in rs]
        per_s = [x * scale for r in rs for x in r["per_s"]]
        if d == "download":  # the second that holds a boundary against the others
            at, inside = [], []
            for r in rs:
                for i, x in enumerate(r["per_s"]):
                    if r["start_unix"] is None:
                        continue
                    a = float(slot_phase(r["start_unix"] + i + shift, slot_s, offset_s))
                    (at if a > slot_s - 1.0 else inside).append(x)
            out["boundary_dip_ratio"] = round(float(np.median(at) / np.median(inside)), 3) \
                if at and inside and np.median(inside) > 0 else None
        out[f"{d}_mbps_runs"] = [round(v, 2) for v in vals]
        out[f"{d}_mbps_median"] = round(float(np.median(vals)), 2) if vals else None
        # WetLinks' statistic (Fig. 4a/4b): the distribution of per-run means
        for q, v in percentiles(vals, (25, 50, 75)).items():
            out[f"{d}_mbps_run_{q}"] = v
        out[f"{d}_mbps_per_s"] = percentiles(per_s, (5, 50, 95)) if per_s else {}
    if len(ps.t):
        # idle by send time: a reply that arrives after the load ended, from a packet sent
        # during it (seconds late behind a full uplink queue), belongs to the load
        sent = ps.t - ps.rtt / 1e3
        idle = np.ones(len(ps.t), dtype=bool)
        for a, b in busy:
            idle &= ~((sent >= a) & (sent <= b))
        rtt = ps.rtt[idle] if idle.any() else ps.rtt
        pc = percentiles(rtt)
        out.update(rtt_ms_median=pc.get("p50"), rtt_ms_p95=pc.get("p95"), rtt_ms=pc,
                   rtt_samples=int(len(rtt)),
                   rtt_ms_quantiles=[round(float(x), 3) for x in
                                     np.percentile(rtt, np.arange(0, 101))])
        # WetLinks' statistic (Fig. 7a): the distribution of per-measurement mean RTTs,
        # 250 pings at 0.1 s = 25-s windows of idle pings
        means = window_means(ps.t[idle], ps.rtt[idle])
        out["rtt_windows"] = len(means)
        out["rtt_ms_window_means"] = [round(m, 3) for m in means]
        for q, v in percentiles(means, (25, 50, 75, 95, 99)).items():
            out[f"rtt_ms_window_{q}"] = v
        period, peak = dominant_period(ps.t[idle], ps.rtt[idle])  # load hides the period
        out.update(rtt_period_s=period, rtt_acf_peak=peak)
        # a step at each boundary: mean |change| across a boundary vs inside a slot
        ph = slot_phase(ps.t + shift, slot_s, offset_s)
        step = np.abs(np.diff(ps.rtt))
        crossed = ph[1:] < ph[:-1]
        out["rtt_step_ms_at_boundary"] = round(float(step[crossed].mean()), 3) \
            if crossed.any() else None
        out["rtt_step_ms_inside_slot"] = round(float(step[~crossed].mean()), 3) \
            if (~crossed).any() else None
    quiet = np.ones(len(ps.sent_t), dtype=bool)
    for a, b in busy:
        quiet &= ~((ps.sent_t >= a) & (ps.sent_t <= b))
    out["ping_loss"] = loss_by_slot_phase(ps.sent_t[quiet] + shift, ps.lost[quiet], slot_s,
                                          offset_s)
    out["ping_loss_pct"] = round(100.0 * float(ps.lost[quiet].mean()), 3) \
        if quiet.any() else None
    out["ping_loss_pct_under_load"] = round(100.0 * float(ps.lost[~quiet].mean()), 3) \
        if (~quiet).any() else None
    return out


def _parse_epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


# ---- the eval ---------------------------------------------------------------------------------
def _errors(ours: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """(ours - published) / published for every statistic that has a published value; for
    one the figure only bounds (p95), whether ours lies within the bounds."""
    out: dict[str, Any] = {}
    for key, ref in REFERENCES.items():
        if "." not in key or (ref["value"] is None and "bounds" not in ref):
            continue
        site, stat = key.split(".", 1)
        val = ours.get(site, {}).get(stat)
        if ref["value"] is None:
            lo, hi = ref["bounds"]
            out[key] = {"ours": val, "bounds": [lo, hi],
                        "within": lo <= val <= hi if isinstance(val, int | float) else None}
            continue
        if stat.startswith("download_mbps_per_s_p"):
            val = ours.get(site, {}).get("download_mbps_per_s", {}).get(
                "p" + stat.rsplit("_p", 1)[1])
        out[key] = {"ours": val, "published": ref["value"],
                    "rel_error": round((val - ref["value"]) / ref["value"], 3)
                    if isinstance(val, int | float) else None}
    return out


def _variant(static: bool, duration: float | None, every_s: float = WETLINKS_EVERY_S
             ) -> Path:
    """The scenario file of one variant (static: the access model removed)."""
    sc = yaml.safe_load(SCENARIO.read_text())
    if static:
        sc["name"] = "starlink-access-static"
        sc["description"] = "starlink-access without the access model: delay from geometry, " \
            "a fixed rate (what geometric emulators do)"
        for g in sc["access"]:
            g.pop("scheduler", None)
            if g["name"] == "user":  # geometric emulators: the terminal keeps its satellite
                g["hysteresis"] = 2
    if (duration and duration != sc["duration_s"]) or every_s != WETLINKS_EVERY_S:
        sc["duration_s"] = duration = duration or sc["duration_s"]
        sc["traffic"] = _cadence(sc["traffic"], duration, every_s)
    path = OUT / "scenarios" / f"{sc['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    return path


def _cadence(traffic: list[dict[str, Any]], duration: float,
             every_s: float = WETLINKS_EVERY_S) -> list[dict[str, Any]]:
    """The scenario's measurement cadence stretched to `duration`: pings over the whole run,
    a 15-s iperf3 run (down and up, both sites) every `every_s` from `every_s` on, as many
    as fit, so a longer eval samples more slots.  120 s is WetLinks' spacing; it leaves
    ~100-s idle stretches, i.e. 4 complete 25-s RTT windows per stretch (DURATION=610: 20
    windows and 4 iperf3 runs per site; 600 gives 19, its last stretch 1 s short).  60 s
    (EVERY=60) trades RTT windows for throughput runs: one window per ~42-s idle stretch,
    twice the runs per hour."""
    pings = [dict(f, duration_s=duration - f.get("start_s", 0) - 2) for f in traffic
             if f["kind"] == "ping"]
    first = {f["name"].rsplit("-", 1)[0]: f for f in traffic if f["kind"] == "udp"}
    runs = []
    k, t = 1, every_s
    while t + 15 + 3 <= duration:
        runs += [dict(f, name=f"{base}-{k}", start_s=t) for base, f in first.items()]
        k, t = k + 1, t + every_s
    return pings + runs


def run_variant(path: Path, duration: float | None) -> Path:
    """`python -m testbed run --file` one variant; its run folder."""
    argv = [sys.executable, "-m", "testbed", "run", "--file", str(path)]
    if duration:
        argv += ["--duration", f"{duration:g}"]
    name = yaml.safe_load(path.read_text())["name"]
    latest = ROOT / "results" / name / "latest"
    before = latest.resolve() if latest.exists() else None
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    run = latest.resolve() if latest.exists() else None
    if proc.returncode != 0 or run is None or run == before:
        raise RuntimeError(f"run of {path.name} failed (rc {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return run


def evaluate(run_dir: Path, scenario: Path) -> dict[str, Any]:
    """The statistics of one run, read against the scenario it ran (its resolved copy in the
    run folder: flows, schedule and clock as they were)."""
    resolved = run_dir / "scenario.resolved.yaml"
    sc = yaml.safe_load((resolved if resolved.is_file() else scenario).read_text())
    sched = next((g.get("scheduler") for g in sc["access"] if g.get("scheduler")), None) or {}
    slot_s, offset_s = sched.get("slot_s", 15.0), sched.get("offset_s", 12.0)
    sites = [CALIBRATION_SITE, VALIDATION_SITE]
    ours = {s: vantage_stats(run_dir, s, sc, slot_s, offset_s) for s in sites}
    return {"run": str(run_dir), "scenario": str(scenario), "sites": ours,
            "errors": _errors(ours)}


def model_per_run(slots: int = 4000, seed: int = 1) -> dict[str, Any]:
    """The access model's per-run download and upload distributions without emulation (the
    scenario's scheduler with WetLinks' 350 / 50 Mbit/s UDP targets, x the scale): an eval
    holds few runs per site, too few for quartiles, so this says what they are a sample of.  Both
    sites have the same parameters, so one distribution stands for both; its errors are
    against each site's Fig. 4a quartiles."""
    from testbed.channels.access import StarlinkAccessSpec, per_run_throughput

    sc = yaml.safe_load(SCENARIO.read_text())
    user = next(g for g in sc["access"] if g["name"] == "user")
    spec = StarlinkAccessSpec(**dict(
        user["scheduler"],
        cell_capacity_mbps=float(user["scheduler"]["cell_capacity_mbps"]) * THROUGHPUT_SCALE,
        cell_uplink_mbps=float(user["scheduler"]["cell_uplink_mbps"]) * THROUGHPUT_SCALE))
    out: dict[str, Any] = {"errors": {}}
    for d, offered in (("download", 350.0), ("upload", 50.0)):
        runs = per_run_throughput(spec, slots, seed, offered_mbps=offered,
                                  direction="down" if d == "download" else "up")
        pc = percentiles(runs, (25, 50, 75))
        out["runs"], out[f"{d}_mbps_run"] = int(len(runs)), pc
        for site in (CALIBRATION_SITE, VALIDATION_SITE):
            for q, v in pc.items():
                ref = REFERENCES[f"{site}.{d}_mbps_run_{q}"]["value"]
                out["errors"][f"{site}.{d}_mbps_run_{q}"] = {
                    "ours": v, "published": ref, "rel_error": round((v - ref) / ref, 3)}
    return out


def plots(results: dict[str, dict[str, Any]], out: Path) -> list[str]:
    """RTT CDF per vantage point (both variants) and the RTT series of the first 60 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, site in zip(axes, [CALIBRATION_SITE, VALIDATION_SITE], strict=True):
        for variant, res in results.items():
            q = res["sites"][site].get("rtt_ms_quantiles")
            if q:  # the idle pings' distribution, by percentile
                ax.plot(q, np.arange(0, 101) / 100.0, label=variant)
        ax.set_title(f"RTT CDF (idle pings), {site}" + (
            " (calibration)" if site == CALIBRATION_SITE else " (validation)"))
        ax.set_xscale("log")
        ax.set_xlabel("RTT (ms)")
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rtt_cdf.png", dpi=110)
    files.append(str(out / "rtt_cdf.png"))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for variant, res in results.items():
        run = Path(res["run"])
        ps = read_ping(run / "flows" / f"ping-{CALIBRATION_SITE}.ping.txt", 0.1)
        if len(ps.t):
            keep = ps.t < ps.t[0] + 60
            ax.plot(ps.t[keep] - ps.t[0], ps.rtt[keep], lw=0.8, label=variant)
            lost = ps.sent_t[ps.lost & (ps.sent_t < ps.t[0] + 60)] - ps.t[0]
            ax.plot(lost, np.zeros(len(lost)), "x", ms=4, label=f"{variant}: lost")
    ax.set_xlabel("s")
    ax.set_ylabel("RTT (ms)")
    ax.set_title(f"RTT series, {CALIBRATION_SITE} (first 60 s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rtt_series.png", dpi=110)
    files.append(str(out / "rtt_series.png"))
    plt.close(fig)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make eval-realism", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per variant (default: the scenario's 240, ~5 RTT windows; "
                    "610 gives 20 windows and 4 iperf3 runs per site)")
    ap.add_argument("--every", type=float, default=WETLINKS_EVERY_S,
                    help="seconds between iperf3 runs (WetLinks: 120; 60 doubles the runs "
                    "and keeps one RTT window per idle stretch)")
    ap.add_argument("--only", choices=["access", "static"], default=None)
    ap.add_argument("--runs", nargs=2, metavar=("ACCESS_RUN", "STATIC_RUN"), default=None,
                    help="evaluate finished runs instead of running")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    variants = ["access", "static"] if args.only is None else [args.only]
    for i, v in enumerate(variants):
        path = _variant(v == "static", args.duration, args.every)
        if args.runs:
            run = Path(args.runs[i])
        else:
            t0 = time.monotonic()
            print(f"running {path.name} ...", flush=True)
            run = run_variant(path, args.duration)
            print(f"  {run} ({time.monotonic() - t0:.0f} s)", flush=True)
        results[v] = evaluate(run, path)
        (OUT / f"{v}.json").write_text(json.dumps(results[v], indent=2))
    summary = {"references": REFERENCES, "calibrated_on": CALIBRATION_SITE,
               "validated_on": VALIDATION_SITE,
               "variants": {v: {"errors": r["errors"], "sites": {
                   s: {k: x for k, x in st.items() if not isinstance(x, dict | list)}
                   for s, st in r["sites"].items()}} for v, r in results.items()}}
    summary["model_monte_carlo"] = model_per_run()
    summary["plots"] = plots(results, OUT)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    _print(summary)
    return 0


def _print(summary: dict[str, Any]) -> None:
    keys = ["rtt_windows", "rtt_ms_window_p25", "rtt_ms_window_p50", "rtt_ms_window_p75",
            "rtt_ms_window_p95", "rtt_ms_window_p99", "rtt_ms_median", "rtt_ms_p95",
            "rtt_period_s", "rtt_acf_peak", "rtt_step_ms_at_boundary",
            "rtt_step_ms_inside_slot", "ping_loss_pct", "download_mbps_run_p25",
            "download_mbps_run_p50", "download_mbps_run_p75", "upload_mbps_run_p25",
            "upload_mbps_run_p50", "upload_mbps_run_p75"]
    variants = summary["variants"]
    for site in (CALIBRATION_SITE, VALIDATION_SITE):
        print(f"\n{site} ({'calibration' if site == CALIBRATION_SITE else 'validation'})")
        print(f"  {'statistic':32s}" + "".join(f"{v:>14s}" for v in variants) +
              f"{'published':>12s}")
        for k in keys:
            ref = REFERENCES.get(f"{site}.{k}", {}).get("value")
            row = "".join(f"{variants[v]['sites'][site].get(k)!s:>14s}" for v in variants)
            print(f"  {k:32s}{row}{str(ref) if ref is not None else '-':>12s}")
    for v, r in variants.items():
        for key, e in r["errors"].items():
            if "bounds" in e:
                print(f"  {v:7s} {key}: ours {e['ours']} within {e['bounds']}: {e['within']}")
            else:
                print(f"  {v:7s} {key}: ours {e['ours']} vs {e['published']} -> "
                      f"error {e['rel_error']}")
    mc = summary.get("model_monte_carlo")
    if mc:
        print(f"\nmodel Monte Carlo ({mc['runs']} runs, no emulation), per-run quartiles: "
              f"download {mc['download_mbps_run']}, upload {mc['upload_mbps_run']}")
        for key, e in mc["errors"].items():
            print(f"  model   {key}: {e['ours']} vs {e['published']} -> error {e['rel_error']}")
    print(f"\nresults/realism/summary.json, plots: {', '.join(summary['plots'])}")


if __name__ == "__main__":
    raise SystemExit(main())
