"""`make bench BENCH=iov`: road mobility at scale, DRDST against the best baseline, and the
simulator against the emulation.  Parts (IOV_BENCH_PARTS, default "1,2,3"):

1. mobility  200 SUMO vehicles and one RSU at the centre of the 1 km grid, every vehicle's
             V2I link emulated (200 namespaces, 200 ns-3 point-to-point links) and driven at
             10 Hz for 60 s by the real mobility driver: SUMO step + link states + handover
             decisions + the batch applied to ns-3; fraction of ticks > 20 ms late, tick
             compute time, CPU of the loop (SUMO included) and of ns-3.
2. methods   100 vehicles, 60 s drive, the same seeds for every method in the simulator:
             DRDST vs each baseline on commit latency, TPS, success rate and max per-node
             traffic, with DRDST's margin over the best baseline on each.
3. gap       iov-drdst live for 60 s (36 chain nodes through ns-3), then the simulator over
             the drive that run recorded, same method, settings and seed: commit latency,
             success and TPS side by side (the sim-to-emulation gap).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

MOBILITY_SECONDS = 60.0
VEHICLES = 200


def mobility_scenario(n: int = VEHICLES) -> dict[str, Any]:
    vehicles = [f"v{i:03d}" for i in range(n)]
    return {
        "name": "bench-roads", "duration_s": MOBILITY_SECONDS + 30,
        "description": f"{n} SUMO vehicles, one RSU, every V2I link emulated",
        "nodes": {"rsu1": {"kind": "rsu", "position": [500, 500, 10]},
                  **{v: {"kind": "vehicle", "drive": {"depart_s": round(i * 0.05, 2)}}
                     for i, v in enumerate(vehicles)}},
        "roads": {"net": "roads/grid5x5.net.xml"},
        "access": [{"name": "v2i", "terminals": vehicles, "candidates": ["rsu1"],
                    "policy": "strongest-signal", "max_range_km": 1.0,
                    "channel": {"model": "v2x", "environment": "urban",
                                "rate": {"method": "mcs", "table": "802.11p",
                                         "efficiency": 0.6}}}],
        "mobility": {"rate_hz": 10, "reroute_interval_s": 5},
        "probes": {"link_rtt": False}, "capture": {"enabled": False},
    }


def mobility(console: Console) -> dict[str, Any]:
    from testbed.bench.mobility import drive
    from testbed.run.harness import emulated
    from testbed.scenario import parse

    sc = parse(mobility_scenario(), "bench-roads (generated)")
    out: dict[str, Any] = {"vehicles": VEHICLES}
    with emulated(sc, mobility=True, source=str(Path("topologies") / "x.yaml")) as em:
        assert em.driver is not None and em.world is not None
        console.print(f"{VEHICLES} vehicles up in {em.net.timings.get('ready_s')} s; driving "
                      f"{MOBILITY_SECONDS:g} s at 10 Hz")
        out.update(drive(em, MOBILITY_SECONDS))
        roads = em.world.roads
        out["sumo_steps"] = getattr(roads, "steps", None)
    out.pop("routes", None)
    console.print(f"roads: {VEHICLES} vehicles, {out['dynamic_links']} links at 10 Hz: "
                  f"{out['late_fraction']} of ticks > 20 ms late, tick compute p50 "
                  f"{out['compute_ms_p50']} ms p99 {out['compute_ms_p99']} ms, loop CPU "
                  f"{out['cpu_fraction_of_core']} core, ns-3 {out['ns3_cpu_fraction_of_core']}")
    return out


def methods(console: Console, seeds: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    from controllers.iov.evaluate import DEFAULT_METHODS, METRICS, one_run

    rows = [one_run((m, 100, 0.5, s, 60.0)) for s in seeds for m in DEFAULT_METHODS]
    by: dict[str, dict[str, float]] = {}
    for m in DEFAULT_METHODS:
        mine = [r for r in rows if r["method"] == m]
        by[m] = {k: round(sum(r[k] for r in mine) / len(mine), 3) for k, _, _ in METRICS
                 if all(r.get(k) is not None for r in mine)}
        by[m]["sim_wall_s"] = round(sum(r["wall_s"] for r in mine) / len(mine), 1)
    margins = {}
    for key, label, higher in METRICS:
        others = {m: v[key] for m, v in by.items() if m != "drdst" and key in v}
        if key not in by["drdst"] or not others:
            continue
        best = (max if higher else min)(others, key=lambda m: others[m])
        ours = by["drdst"][key]
        margins[key] = {"best_baseline": best, "baseline": others[best], "drdst": ours,
                        "ratio": round(ours / others[best], 3) if others[best] else None,
                        "drdst_ahead": ours >= others[best] if higher else ours <= others[best]}
        console.print(f"{label}: DRDST {ours} vs best baseline {best} {others[best]} "
                      f"({'ahead' if margins[key]['drdst_ahead'] else 'behind'})")
    return {"vehicles": 100, "seeds": list(seeds), "methods": by, "margins": margins}


def gap(console: Console) -> dict[str, Any]:
    from controllers.iov.chain import METHODS
    from controllers.iov.config import load_experiment
    from controllers.iov.sim import simulate
    from controllers.iov.traces import from_run
    from controllers.iov.workload import summary_of
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import load, resolve

    path = resolve("iov-drdst")
    sc = load(path, cut_to_s=60.0)
    res = Run(sc, str(path), RunOptions(console=console)).execute()
    live = summary_of(res.run_dir) or {}
    exp = load_experiment("topologies/iov-drdst.chain.yaml")
    drive = from_run(res.run_dir)
    sim = simulate(METHODS[exp.method], drive, exp.chain, 60.0, seed=exp.chain.seed).metrics
    keys = ("latency_ms_median", "latency_ms_p95", "cross_latency_ms_median", "success_rate",
            "tps", "max_node_traffic_kBps")
    out = {"run": str(res.run_dir), "status": res.status,
           "live": {k: live.get(k) for k in keys}, "sim": {k: sim.get(k) for k in keys}}
    out["live_over_sim"] = {k: round(out["live"][k] / out["sim"][k], 3)
                            for k in keys if out["live"][k] and out["sim"][k]}
    console.print(f"live vs sim: {out['live_over_sim']}")
    return out


def run_bench(console: Console) -> dict[str, Any]:
    parts = os.environ.get("IOV_BENCH_PARTS", "1,2,3").split(",")
    out: dict[str, Any] = {}
    if "1" in parts:
        console.print("[bold]road mobility: 200 SUMO vehicles at 10 Hz[/]")
        out["mobility"] = mobility(console)
    if "2" in parts:
        console.print("[bold]DRDST vs baselines, 100 vehicles (simulator)[/]")
        out["methods"] = methods(console)
    if "3" in parts:
        console.print("[bold]live vs simulated (iov-drdst, 60 s)[/]")
        out["gap"] = gap(console)
    return out
