"""`make eval-iov`: DRDST against its baselines in the simulator over SUMO drives.

    make eval-iov [SEEDS=3] [VEHICLES=50,100,200] [RATES=0.25,0.5,1] [METHODS=...] [DURATION=60]

For every vehicle count and seed one SUMO drive is made (cached under results/iov/traces/),
and every method runs over that same drive and seed (controllers.iov.sim), so the methods
differ only by their algorithms.  Three tables, mean +- 95 % CI over seeds:

1. methods vs vehicle count: commit latency, TPS, success rate, max node traffic;
2. methods vs transaction rate (at the middle vehicle count);
3. broadcast structures inside GSA's shards of the same drives: the S-MLBT tree vs a plain
   minimum spanning tree vs flat (the root sends to all) vs push gossip (fanout 3) -
   completion time of one broadcast, messages, and the most messages any one node sends.

and the paper's claims, checked in words against table 1 (DRDST vs the best baseline).
Everything lands in results/iov/eval/<stamp>/ (table.md, results.json, compare.png).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from controllers.iov.chain import METHODS, ChainConfig

OUT = Path("results/iov")
DEFAULT_METHODS = ("drdst", "objective-dag", "random-dag", "static-dag", "gsa-pbft",
                   "static-pbft")
METRICS = (("latency_ms_median", "latency ms", False), ("tps", "TPS", True),
           ("success_rate", "success", True), ("max_node_traffic_kBps", "max node kB/s", False))


def eval_config(rate: float, seed: int) -> ChainConfig:
    """The simulator's protocol settings: those of topologies/iov-drdst.chain.yaml, except
    the shard count, which follows the RSUs of the drive."""
    return ChainConfig(epoch_s=20, first_epoch_s=5, beacon_s=2, tick_ms=100, tx_rate=rate,
                       cross_fraction=0.2, tx_timeout_ms=10_000, shards=None,
                       ga_population=30, ga_generations=60, seed=seed)


def _drive(n: int, duration: float, seed: int) -> Any:
    from controllers.iov.traces import city_drive

    return city_drive(n, duration, seed, cache_dir=OUT / "traces")


def one_run(job: tuple[str, int, float, int, float]) -> dict[str, Any]:
    """One method on one cached drive (runs in a worker process)."""
    from controllers.iov.sim import simulate

    method, n, rate, seed, duration = job
    drive = _drive(n, duration, seed)
    res = simulate(METHODS[method], drive, eval_config(rate, seed), duration, seed=seed)
    return {"method": method, "vehicles": n, "rate": rate, "seed": seed,
            "wall_s": res.wall_s, "messages": res.messages,
            **{k: v for k, v in res.metrics.items() if k != "rounds"}}


def broadcast_rows(n: int, seed: int, duration: float) -> list[dict[str, Any]]:
    """The broadcast structures inside GSA's shards of one drive, at three instants."""
    from controllers.iov import broadcast, sharding
    from controllers.iov.netmodel import RadioNet

    drive = _drive(n, duration, seed)
    net = RadioNet(drive, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for t in (duration * 0.3, duration * 0.6, duration * 0.9):
        present = [v for v in drive.vehicles if drive.present(v, t)] + sorted(drive.rsus)
        infos = [sharding.NodeInfo(v, "rsu" if v in drive.rsus else "vehicle",
                                   drive.position(v, t) or (0.0, 0.0), drive.velocity(v, t),
                                   0.8) for v in present]

        def lat(a: str, b: str, t: float = t) -> float:
            return min(net.latency_ms(a, b, t), 1000.0)

        k = max(1, min(len(drive.rsus), len(present) // 9))
        res = sharding.gsa(sharding.ShardingProblem(infos, k, lat), rng, population=30,
                           generations=60)
        for members in res.shards():
            if len(members) < 3:
                continue
            root = members[0]
            trees = {"s-mlbt": broadcast.build_tree(root, members, lat),
                     "mst": broadcast.mst_tree(root, members, lat),
                     "flat": broadcast.flat(root, members, lat)}
            for name, tree in trees.items():
                rows.append({"structure": name, "vehicles": n, "seed": seed,
                             "completion_ms": broadcast.max_latency(tree, root, lat),
                             "messages": len(members) - 1, "reached": 1.0,
                             "max_sends": max(len(c) for c in tree.values())})
            g = broadcast.simulate_gossip(root, members, lat, rng, fanout=3)
            got = [v for v in g.arrivals.values() if np.isfinite(v)]
            rows.append({"structure": "gossip", "vehicles": n, "seed": seed,
                         "completion_ms": max(got), "messages": g.messages,
                         "max_sends": 3, "reached": g.reached / len(members)})
    return rows


def _ci(rows: list[dict[str, Any]], key: str) -> str:
    from controllers.report import mean_ci

    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "-"
    m = mean_ci(vals)
    return f"{m['mean']:.3g} ± {m['ci95']:.2g}"


def claims(rows: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """The paper's four claims, checked against the best baseline at each vehicle count."""
    lines = []
    for n in sorted({r["vehicles"] for r in rows}):
        at = [r for r in rows if r["vehicles"] == n and r["rate"] == rows[0]["rate"]]

        def mean(m: str, key: str, at: list[dict[str, Any]] = at) -> float | None:
            v = [r[key] for r in at if r["method"] == m and r.get(key) is not None]
            return float(np.mean(v)) if v else None

        ours = {k: mean("drdst", k) for k, _, _ in METRICS}
        verdicts = []
        for key, label, higher in METRICS:
            others = [(m, mean(m, key)) for m in methods if m != "drdst"]
            others = [(m, v) for m, v in others if v is not None]
            if ours[key] is None or not others:
                continue
            best_m, best = (max if higher else min)(others, key=lambda x: x[1])
            ahead = ours[key] >= best if higher else ours[key] <= best
            ratio = ours[key] / best if best else float("inf")
            verdicts.append(f"{label} {'ahead' if ahead else 'behind'} ({ours[key]:.3g} vs "
                            f"{best_m} {best:.3g}, x{ratio:.2f})")
        lines.append(f"{n} vehicles: DRDST " + "; ".join(verdicts))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make eval-iov")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--vehicles", default="50,100,200")
    ap.add_argument("--rates", default="0.25,0.5,1")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"METHODS: {', '.join(bad)} unknown; use any of {', '.join(METHODS)}")
    if "drdst" not in methods:
        methods.insert(0, "drdst")
    sizes = [int(x) for x in a.vehicles.split(",")]
    rates = [float(x) for x in a.rates.split(",")]
    seeds = list(range(1, a.seeds + 1))
    from rich.console import Console

    from controllers.report import results_table

    con = Console()
    out = a.out or OUT / "eval" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    for n in sizes:  # SUMO once per drive, in this process (libsumo: one at a time)
        for s in seeds:
            _drive(n, a.duration, s)
    mid = sizes[len(sizes) // 2]
    base_rate = 0.5 if 0.5 in rates else rates[0]
    jobs = [(m, n, base_rate, s, a.duration) for n in sizes for s in seeds for m in methods]
    jobs += [(m, mid, r, s, a.duration) for r in rates if r != base_rate for s in seeds
             for m in methods]
    con.print(f"{len(jobs)} simulations on {a.workers} workers ...")
    with ProcessPoolExecutor(a.workers) as pool:
        rows = list(pool.map(one_run, jobs))
    bcast = [r for n in sizes for s in seeds for r in broadcast_rows(n, s, a.duration)]
    md = [f"# IoV chain evaluation ({len(seeds)} seeds, {a.duration:g} s drives, "
          "mean ± 95 % CI)\n"]
    cols = [label for _, label, _ in METRICS]
    for n in sizes:
        at = [r for r in rows if r["vehicles"] == n and r["rate"] == base_rate]
        md.append(results_table(con, f"{n} vehicles, {base_rate:g} tx/s per node", cols,
                                [(m, [_ci([r for r in at if r["method"] == m], k)
                                      for k, _, _ in METRICS]) for m in methods]))
    for r_ in (rates if len(rates) > 1 else []):
        at = [r for r in rows if r["vehicles"] == mid and r["rate"] == r_]
        md.append(results_table(con, f"{mid} vehicles, {r_:g} tx/s per node", cols,
                                [(m, [_ci([r for r in at if r["method"] == m], k)
                                      for k, _, _ in METRICS]) for m in methods]))
    bcols = ["completion ms (reached)", "messages", "max sends by one node", "reached"]
    for n in sizes:
        at = [r for r in bcast if r["vehicles"] == n]
        md.append(results_table(con, f"broadcast in GSA's shards, {n} vehicles", bcols,
                                [(s, [_ci([r for r in at if r["structure"] == s], k)
                                      for k in ("completion_ms", "messages", "max_sends",
                                                "reached")])
                                 for s in ("s-mlbt", "mst", "flat", "gossip")]))
    said = claims(rows, methods)
    for line in said:
        con.print(line)
    md.append("## The paper's claims\n\n" + "\n".join(f"- {x}" for x in said) + "\n")
    (out / "table.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps({"runs": rows, "broadcast": bcast,
                                                  "claims": said}, indent=1, default=str))
    plot(rows, sizes, methods, base_rate, out / "compare.png")
    con.print(f"-> {out}/table.md, results.json, compare.png")
    return 0


def plot(rows: list[dict[str, Any]], sizes: list[int], methods: list[str], rate: float,
         path: Path) -> None:
    from testbed.analysis.plots import plt, to_png

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (key, label, _) in zip(axes, METRICS, strict=True):
        for m in methods:
            ys = [np.mean([r[key] for r in rows if r["method"] == m and r["vehicles"] == n
                           and r["rate"] == rate and r.get(key) is not None] or [np.nan])
                  for n in sizes]
            ax.plot(sizes, ys, marker="o", label=m)
        ax.set(xlabel="vehicles", title=label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.write_bytes(to_png(fig))


if __name__ == "__main__":
    raise SystemExit(main())
