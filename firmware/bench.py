"""Drones benchmark: MAVLink over emulated links, and how many vehicles one core flies.

1. command   a vehicle (firmware.sitl) in a UAV's namespace, its ground station in another,
             joined by an ns-3 point-to-point link of 5 / 25 / 50 ms one way: median
             COMMAND_LONG -> COMMAND_ACK time (firmware.cmdping, 50 commands) side by side
             with the median ping RTT of the same link; target: ack <= RTT + 5 ms.
2. fleet     100 vehicles in one process at 20 Hz position/attitude telemetry (50 Hz
             physics) for 30 s: late physics ticks (> half a period), CPU of the process,
             and resident memory per vehicle (RSS of 100 vehicles minus RSS of 1, / 99).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.run.harness import emulated
from testbed.scenario import parse

DELAYS_MS = (5.0, 25.0, 50.0)
FLEET = 100
FLEET_SECONDS = 30.0


def link_scenario(delay_ms: float) -> dict[str, Any]:
    return {"name": "bench-mavlink", "duration_s": 60,
            "nodes": {"gs": {"kind": "ground_station"}, "uav": {"kind": "uav"}},
            "links": [{"name": "c2", "kind": "air-to-ground", "medium": "p2p",
                       "endpoints": ["gs", "uav"], "delay_ms": delay_ms, "rate_mbps": 10}],
            "capture": {"enabled": False}, "probes": {"link_rtt": False}}


def command(console: Console) -> list[dict[str, Any]]:
    out = []
    for delay in DELAYS_MS:
        with emulated(parse(link_scenario(delay), "bench-mavlink")) as em:
            gs_ip = em.ip("gs")
            sitl = em.popen("uav", [sys.executable, "-m", "firmware.sitl", "--count", "1",
                                    "--api-host", gs_ip, "--duration", "50"])
            try:
                res = em.run("gs", [sys.executable, "-m", "firmware.cmdping", "--listen",
                                    "14540", "--count", "50"], timeout=60)
                ack = json.loads(res.stdout.strip().splitlines()[-1])
                ping = em.run("gs", ["ping", "-n", "-c", "20", "-i", "0.1", em.ip("uav")])
                rtts = [float(x.split("time=")[1].split()[0]) for x in ping.stdout.splitlines()
                        if "time=" in x]
            finally:
                sitl.terminate()
                sitl.wait(timeout=10)
        rtt = statistics.median(rtts)
        row = {"one_way_ms": delay, "ping_rtt_ms": round(rtt, 3),
               "ack_ms_median": ack.get("median_ms"), "ack_ms_p95": ack.get("p95_ms"),
               "lost": ack.get("lost"),
               "ack_minus_rtt_ms": round(ack["median_ms"] - rtt, 3)
               if ack.get("median_ms") else None}
        row["pass"] = row["ack_minus_rtt_ms"] is not None and row["ack_minus_rtt_ms"] <= 5.0
        console.print(f"one way {delay:g} ms: ping RTT {row['ping_rtt_ms']} ms, command ack "
                      f"{row['ack_ms_median']} ms (+{row['ack_minus_rtt_ms']} ms)")
        out.append(row)
    return out


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fleet_run(count: int, seconds: float, port_base: int) -> tuple[dict[str, Any], int]:
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "firmware.sitl", "--count", str(count), "--duration",
             str(seconds), "--api-port", str(port_base), "--gcs-port", str(port_base - 1),
             "--stats", str(stats)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        time.sleep(min(10.0, seconds / 2))
        rss = _rss_kb(proc.pid)
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"firmware.sitl failed: {err[-500:]}")
        return json.loads(stats.read_text()), rss


def fleet(console: Console) -> dict[str, Any]:
    _, rss1 = _fleet_run(1, 15.0, 34540)
    many, rss = _fleet_run(FLEET, FLEET_SECONDS, 34540)
    out = {"vehicles": FLEET, "seconds": FLEET_SECONDS, "telemetry_hz": 20, "physics_hz": 50,
           **{k: many.get(k) for k in ("ticks", "late_ticks", "late_fraction",
                                        "lateness_ms_p99", "max_late_ms", "cpu_fraction",
                                        "messages_sent")},
           "messages_per_s": round(many["messages_sent"] / FLEET_SECONDS),
           "rss_mb": round(rss / 1024, 1), "rss_one_vehicle_mb": round(rss1 / 1024, 1),
           "memory_per_vehicle_kb": round((rss - rss1) / (FLEET - 1), 1)}
    console.print(f"{FLEET} vehicles at 20 Hz: {out['late_fraction']} of ticks late, CPU "
                  f"{out['cpu_fraction']} core, {out['memory_per_vehicle_kb']} kB per vehicle, "
                  f"{out['messages_per_s']} MAVLink messages/s")
    return out


def run(console: Console) -> dict[str, Any]:
    return {"command": command(console), "fleet": fleet(console)}
