"""From the nodes' records to the numbers the paper argues with: commit latency, throughput,
consensus success rate and node traffic load - the same code for simulated and live runs.

A transaction counts once, at its submitter: committed (with its submit -> commit latency),
failed (the protocol gave up), or unresolved.  Unresolved transactions whose timeout had
passed by the end of the run count as failures (the node left its shard, or left the map,
and nobody will ever answer); younger ones are left out of the success rate.  Throughput is
committed transactions per second over the measured window.  A "round" is an epoch: its
success rate is over the transactions submitted in it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np


def summarize(records: Iterable[dict[str, Any]], traffic: dict[str, dict[str, int]],
              duration_s: float, timeout_ms: float, warmup_s: float = 0.0) -> dict[str, Any]:
    submits: dict[str, dict[str, Any]] = {}
    commits: dict[str, dict[str, Any]] = {}
    fails: set[str] = set()
    rounds: list[dict[str, Any]] = []
    for r in records:
        ev = r.get("ev")
        if ev == "submit":
            submits[r["tx"]] = r
        elif ev == "commit":
            commits.setdefault(r["tx"], r)
        elif ev == "failed":
            fails.add(r["tx"])
        elif ev == "round":
            rounds.append(r)
    end_ms = duration_s * 1000.0
    lat_all, lat_cross, lat_intra = [], [], []
    per_round: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # submitted, ok, failed
    decided = ok = 0
    for tx, s in submits.items():
        if s["t_ms"] < warmup_s * 1000:
            continue
        rnd = per_round[int(s.get("e", 0))]
        rnd[0] += 1
        if tx in commits:
            decided += 1
            ok += 1
            rnd[1] += 1
            lat = commits[tx]["t_ms"] - s["t_ms"]
            lat_all.append(lat)
            (lat_cross if len(s.get("shards", [])) > 1 else lat_intra).append(lat)
        elif tx in fails or s["t_ms"] + timeout_ms <= end_ms:
            decided += 1
            rnd[2] += 1
    window = max(duration_s - warmup_s, 1e-9)
    sent = {n: t.get("bytes_sent", 0) for n, t in traffic.items()}
    load = {n: t.get("bytes_sent", 0) + t.get("bytes_recv", 0) for n, t in traffic.items()}
    return {
        "submitted": sum(1 for s in submits.values() if s["t_ms"] >= warmup_s * 1000),
        "committed": ok,
        "success_rate": round(ok / decided, 4) if decided else None,
        "tps": round(ok / window, 3),
        "latency_ms_median": _pct(lat_all, 50), "latency_ms_p95": _pct(lat_all, 95),
        "latency_ms_mean": round(float(np.mean(lat_all)), 1) if lat_all else None,
        "intra_latency_ms_median": _pct(lat_intra, 50),
        "cross_latency_ms_median": _pct(lat_cross, 50),
        "max_node_traffic_kBps": round(max(load.values(), default=0) / window / 1e3, 2),
        "mean_node_traffic_kBps": round(float(np.mean(list(load.values()))) / window / 1e3, 2)
        if load else None,
        "max_node_sent_kB": round(max(sent.values(), default=0) / 1e3, 1),
        "epochs": len(rounds),
        "rounds": [{"e": e, "submitted": v[0], "committed": v[1], "failed": v[2]}
                   for e, v in sorted(per_round.items())],
    }


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None
