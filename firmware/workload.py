"""The drones workload (the built-in PX4/ArduCopter-flavoured autopilot, real PX4 SITL when
built) as the testbed sees it.

Registered as the entry point ``drones`` (pyproject.toml).  What it adds: the node section
``autopilot:`` (firmware/scenario.py: the UAV's position then comes from its telemetry), its
cross-reference checks and the PX4 SITL preflight, the run-time service that starts one
vehicle per such UAV in its namespace (firmware/autopilots.py), and `make bench
BENCH=drones`.  The flight-controller side (MAVSDK) is controllers/fleet.py and
controllers/fly.py, run by a scenario's timeline like any other command.
"""

from __future__ import annotations

from testbed.workloads import Bench, Workload

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
)
