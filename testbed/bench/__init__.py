"""Benchmarks (`make bench`): each writes results/bench/<name>.json and prints a table.

    fidelity   measured vs configured RTT (5/25/125/270 ms one way) and TCP goodput
               (1/10/50 Mbit/s) on ns-3 point-to-point links, side by side, as ratios
    scale      a generated 100-node SAGIN (20 UAVs, 50 users, 20 satellites, 10 edge):
               command -> first packet time, ns-3 real-time lag over 60 s with ping on every
               link, probe loss
    lifecycle  quickstart: command -> time zero, and teardown time
    mobility   leo-handover: measured RTT vs geometric prediction, outage per handover,
               route install time; a 100-satellite shell with 200 ISLs updated at 10 Hz:
               late updates, CPU, diff vs full route install
    drones     COMMAND_LONG -> ACK round trip over emulated links vs their ping RTT; 100
               simulated vehicles at 20 Hz telemetry on one core (late ticks, CPU, memory)
    offload    offloading simulator steps/s, controller decision time, payload-agent round
               trip and throughput, MUECRS/CMADDPG vs the best baseline (ratios)
    analysis   packets/s and peak memory of the packet-trace analyzer on a generated capture
               (~1 GB by default), side by side with tshark -z conv,ip (defaults and with
               heuristic dissectors off)
    cpn        CPN mapping time per request (ABS and baselines, 3 presets) and, on a real
               OVS backbone under os-ken, request -> first packet at the chosen instance and
               outage after a trunk cut, both from captures
    profiles   device profiles: a node's cgroup CPU quota vs the profile's modelled speed
               (SHA-256 kernel, time ratio vs unlimited, median of 3; target within 10 %)
    llm        SmolLM2-135M split over 1-5 payload-agent nodes at RTT 1/10/50 ms:
               ms/token of even pipeline vs tensor parallel (homogeneous), and single /
               even / proportional / Halda / tensor on heterogeneous devices (Halda vs even)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from testbed.results import RESULTS, write_json

BENCH_DIR = RESULTS / "bench"


def main(which: list[str], console: Console) -> int:
    from testbed.bench import (
        analysis,
        cpn,
        drones,
        fidelity,
        lifecycle,
        llm,
        mobility,
        offload,
        profiles,
        scale,
    )

    table: dict[str, Callable[[Console], dict[str, Any]]] = {
        "fidelity": fidelity.run, "scale": scale.run, "lifecycle": lifecycle.run,
        "mobility": mobility.run, "drones": drones.run, "offload": offload.run, "cpn": cpn.run,
        "profiles": profiles.run, "analysis": analysis.run, "llm": llm.run}
    names = which or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        console.print(f"unknown benchmark(s) {unknown}; available: {', '.join(table)}")
        return 2
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        console.rule(f"bench: {name}")
        t0 = time.monotonic()
        try:
            result = table[name](console)
        except Exception as exc:  # noqa: BLE001 - one benchmark failing must not hide others
            result = {"error": f"{type(exc).__name__}: {exc}"}
            failed += 1
            console.print(f"[red]{name} failed: {exc}[/]")
        result["bench"] = name
        result["wall_s"] = round(time.monotonic() - t0, 1)
        result["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(BENCH_DIR / f"{name}.json", result)
        console.print(f"-> {BENCH_DIR / f'{name}.json'}")
    return 1 if failed else 0
