"""Mobility benchmark: does the emulated network follow the geometry, and at what cost?

1. handover  leo-handover with ping only (20 per second, no cross traffic), 120 s at
             mobility time scale 5 (~8 handovers): median |measured RTT - geometric
             prediction| and the measured/predicted ratio, outage per handover, route
             install time per handover.
2. update    a Walker 10x10 shell at 550 km with every satellite and all 200
             inter-satellite links emulated (100 namespaces, 400 ns-3 taps), driven at
             10 Hz for 60 s: fraction of link-update batches applied more than 20 ms after
             their deadline, lateness percentiles, CPU of the update loop and of ns-3; then
             one inter-plane link is cut and the reroute time measured, side by side with
             a full reinstall of every route (the baseline the diff install avoids).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.net.plan import compute_routes
from testbed.run.harness import emulated
from testbed.run.runner import Run, RunOptions
from testbed.scenario import load, parse, resolve

UPDATE_SECONDS = 60.0


def _proc_cpu_s(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handover(console: Console) -> dict[str, Any]:
    path = resolve("leo-handover")
    sc = load(path)
    sc = sc.model_copy(update={"traffic": [f for f in sc.traffic if f.kind.value == "ping"],
                               "capture": sc.capture.model_copy(update={"enabled": False})})
    res = Run(sc, str(path), RunOptions(console=console)).execute()
    mob = res.metrics.get("mobility", {})
    flow = mob.get("flows", {}).get("ping-cloud", {})
    out = {"run_dir": str(res.run_dir), "status": res.status,
           "handovers": mob.get("handovers"),
           "median_abs_rtt_error_ms": mob.get("median_abs_rtt_error_ms"),
           "p95_abs_rtt_error_ms": flow.get("p95_abs_error_ms"),
           "outage_s_per_handover": flow.get("outage_s_per_handover"),
           "max_outage_s": mob.get("max_outage_s"),
           "route_install_ms_median": mob.get("route_install_ms_median"),
           "route_install_ms_max": mob.get("route_install_ms_max"),
           "route_convergence_ms_median": mob.get("route_convergence_ms_median"),
           "route_convergence_ms_max": mob.get("route_convergence_ms_max"),
           "delay_compensation_ms": res.metrics.get("timings_s", {}).get(
               "delay_compensation_ms"),
           "update_late_fraction": mob.get("late_fraction"),
           "ns3_max_lag_ms": res.metrics.get("ns3_realtime", {}).get("max_lag_ms")}
    ratio = _ratio(res.run_dir)
    out["measured_over_predicted_rtt_median"] = ratio
    console.print(f"leo-handover: {out['handovers']} handovers, median |RTT - geometry| "
                  f"{out['median_abs_rtt_error_ms']} ms (measured/predicted {ratio}), max "
                  f"outage {out['max_outage_s']} s, route convergence max "
                  f"{out['route_convergence_ms_max']} ms")
    return out


def _ratio(run_dir: Path) -> float | None:
    import json

    from testbed.mobility.report import _at, ping_replies, read_predicted

    man = json.loads((run_dir / "manifest.json").read_text())
    t0 = man.get("time_zero_wall")
    pred = read_predicted(run_dir / "mobility" / "predicted.csv").get("ping-cloud")
    ping = run_dir / "flows" / "ping-cloud.ping.txt"
    if t0 is None or pred is None or not ping.exists():
        return None
    ratios = []
    for rx, _, rtt in ping_replies(ping):
        p = _at(*pred, rx - t0 - rtt / 1000.0)
        if p:
            ratios.append(rtt / p)
    return round(statistics.median(ratios), 4) if ratios else None


def shell_scenario() -> dict[str, Any]:
    return {
        "name": "bench-shell", "duration_s": UPDATE_SECONDS + 30,
        "description": "Walker 10x10 at 550 km, every satellite and ISL emulated",
        # a ground station under the shell: the scenario's one declared host
        "nodes": {"anchor": {"kind": "ground_station",
                             "location": {"lat_deg": 30.0, "lon_deg": 0.0}}},
        "access": [{"name": "gsl", "terminals": ["anchor"], "candidates": "constellation",
                    "min_elevation_deg": 25}],
        "mobility": {"rate_hz": 10, "time_scale": 10, "epoch": "2026-11-26T12:00:00Z"},
        "constellation": {"walker": {"planes": 10, "per_plane": 10, "altitude_km": 550,
                                     "inclination_deg": 53, "phasing": 1},
                          "include": "all", "isl": {"rate_mbps": 100}},
        "probes": {"link_rtt": False}, "capture": {"enabled": False},
    }


def drive(em: Any, seconds: float) -> dict[str, Any]:
    """Run an emulation's mobility driver for `seconds` of real time: its tick statistics,
    with ns-3's CPU share, lag and the bring-up time beside them."""
    shards = em.net.shards
    pids = [e.proc.popen.pid for e in shards if e.proc is not None]
    cpu_ns3 = sum(_proc_cpu_s(pid) for pid in pids)
    t0 = time.monotonic()
    em.driver.start(t0)
    time.sleep(seconds)
    em.driver.stop_event.set()
    assert em.driver.thread is not None
    em.driver.thread.join(timeout=5)
    wall = time.monotonic() - t0
    cpu_ns3 = sum(_proc_cpu_s(pid) for pid in pids) - cpu_ns3
    return {**em.driver.summary(), "ns3_cpu_fraction_of_core": round(cpu_ns3 / wall, 4),
            "bring_up_s": em.net.timings.get("ready_s"), "ns3_processes": len(shards),
            "ns3_max_lag_ms": max(e.stats().get("max_lag_ms") or 0.0 for e in shards)}


def update(console: Console) -> dict[str, Any]:
    sc = parse(shell_scenario(), "bench-shell")
    out: dict[str, Any] = {}
    with emulated(sc, mobility=True, source="") as em:
        assert em.driver is not None and em.world is not None
        console.print(f"shell up: {len(em.world.sat_names)} satellites, "
                      f"{len(em.world.dyn)} geometry-driven links, ready in "
                      f"{em.net.timings.get('ready_s')} s; driving {UPDATE_SECONDS:g} s at "
                      f"10 Hz")
        out.update(drive(em, UPDATE_SECONDS))
        out["satellites"] = len(em.world.sat_names)
        out["reroute"] = _reroute(em, console)
    console.print(f"update loop: {out['dynamic_links']} links at 10 Hz, "
                  f"{out['late_fraction']} of batches > 20 ms late (p99 lateness "
                  f"{out['lateness_ms_p99']} ms), loop CPU {out['cpu_fraction_of_core']} core, "
                  f"ns-3 CPU {out['ns3_cpu_fraction_of_core']} core")
    return out


def _reroute(em: Any, console: Console) -> dict[str, Any]:
    """Cut one inter-plane link: time the diff install; then the same change as a full
    reinstall of every route in every namespace (what a naive implementation does)."""
    net = em.net
    link = next(n for n, d in em.world.dyn.items() if d.role == "isl-inter")
    diffs, fulls = [], []
    for _ in range(5):
        for down in (True, False):
            (net.mobility_down.add if down else net.mobility_down.discard)(link)
            diffs.append(net.reroute().seconds * 1e3)
            tables = compute_routes(net.sc, net.plan, net.down_segments(),
                                    net.segment_cost or None)
            net.routes.installed = {n: [] for n in tables}  # forget: reinstall everything
            fulls.append(net.routes.install(tables).seconds * 1e3)
    res = {"link": link, "diff_install_ms_median": round(statistics.median(diffs), 2),
           "diff_install_ms_max": round(max(diffs), 2),
           "full_install_ms_median": round(statistics.median(fulls), 2),
           "full_over_diff": round(statistics.median(fulls) / statistics.median(diffs), 2)}
    console.print(f"reroute after an ISL cut: diff install {res['diff_install_ms_median']} ms "
                  f"(max {res['diff_install_ms_max']}), full reinstall "
                  f"{res['full_install_ms_median']} ms")
    return res


def run(console: Console) -> dict[str, Any]:
    return {"handover": handover(console), "update": update(console)}
