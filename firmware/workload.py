"""The drones workload (the built-in PX4/ArduCopter-flavoured autopilot, real PX4 SITL when
built) as the testbed sees it.

Registered as the entry point ``drones`` (pyproject.toml).  What it adds: the node section
``autopilot:`` (firmware/scenario.py: the UAV's position then comes from its telemetry), its
cross-reference checks and the PX4 SITL preflight, the run-time service that starts one
vehicle per such UAV in its namespace (firmware/autopilots.py), and `make bench
BENCH=drones`, and the console headline of a run whose timeline flew the vehicles with
controllers/fly.py (read from the JSON line per vehicle it prints to its log).  The
flight-controller side (MAVSDK) is controllers/fleet.py and
controllers/fly.py, run by a scenario's timeline like any other command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.workloads import Bench, Workload, log_records

WORKLOAD = Workload(
    name="drones",
    about="UAVs flown by MAVLink autopilots (built-in PX4/ArduCopter flavours, PX4 SITL)",
    node_sections={"autopilot": "firmware.scenario:Autopilot"},
    check="firmware.scenario:check",
    preflight="firmware.scenario:preflight",
    service="firmware.autopilots:Autopilots.for_run",
    benches=(Bench("drones", "firmware.bench:run",
                   "COMMAND_LONG -> ACK round trip over emulated links vs their ping RTT; 100\n"
                   "simulated vehicles at 20 Hz telemetry on one core (late ticks, CPU, memory)"),),
    headline="firmware.workload:headline",
)


def flights(run_dir: Path) -> list[dict[str, Any]]:
    """What controllers/fly.py reported per vehicle (sysid, elapsed_s, battery_used_pct,
    legs_s), from the timeline commands' logs (results/<run>/logs/<node>/exec-*.log)."""
    return [rec for _, rec in log_records(run_dir, "*/exec-*.log", ("sysid", "elapsed_s"))]


def headline(run_dir: Path) -> list[str]:
    """One line for the vehicles flown in this run: mission time, battery and the square's
    legs; nothing when no vehicle reported (a run without drones, a flight that failed)."""
    parts = []
    for r in sorted(flights(run_dir), key=lambda r: r["sysid"]):
        part = f"vehicle {r['sysid']} {r['elapsed_s']:.1f} s"
        if r.get("battery_used_pct") is not None:
            part += f", battery {r['battery_used_pct']:.1f} %"
        legs = r.get("legs_s") or []
        if legs:
            part += f", legs {' / '.join(f'{x:.1f}' for x in legs)} s"
        parts.append(part)
    return ["drones: " + "; ".join(parts)] if parts else []
