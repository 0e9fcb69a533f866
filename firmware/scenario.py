"""The drones' part of a scenario: the ``autopilot:`` section of a UAV node, and its checks.

Registered with the testbed as a node section (firmware/workload.py), so a scenario file
writes::

    uav1: {kind: uav, position: [-15, 0, 0.2],          # position = home
           autopilot: {controller: gs1, flavour: px4, params: {MPC_XY_CRUISE: 8}}}

and the runner starts the vehicle (firmware/autopilots.py) in the UAV's namespace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from testbed.scenario.errors import Problem, suggest
from testbed.scenario.model import Name, NodeKind, Scenario, Strict

MAX_VEHICLES = 255  # MAVLink system ids are 1..255


class Autopilot(Strict):
    """The UAV is flown by a simulated autopilot (firmware/) running in its namespace; its
    MAVLink API link goes to the controller node across the emulated network (PX4 SITL
    conventions: instance i sends to the controller's UDP 14540+i)."""

    reports_position: ClassVar[bool] = True  # the vehicle's telemetry moves the node

    flavour: Literal["px4", "arducopter", "px4-sitl"] = Field(
        default="px4", description="px4 / arducopter: the built-in vehicle (firmware/); "
        "px4-sitl: the real PX4 SITL binary under $SAGIN_PX4_DIR")
    controller: Name = Field(description="node running the flight controller code (MAVSDK)")
    sysid: int | None = Field(default=None, ge=1, le=255,
                              description="default: 1, 2, ... in the order of the nodes")
    telemetry_hz: float = Field(default=20.0, ge=1.0, le=100.0)
    params: dict[str, float] = Field(default_factory=dict)


def autopilot_of(sc: Scenario, name: str) -> Autopilot | None:
    section = sc.nodes[name].sections.get("autopilot")
    return section if isinstance(section, Autopilot) else None


def autopilots(sc: Scenario) -> dict[str, tuple[int, Autopilot]]:
    """UAV name -> (MAVLink system id, settings), ids assigned in node order."""
    given = {n: ap for n in sc.nodes if (ap := autopilot_of(sc, n)) is not None}
    taken = {ap.sysid for ap in given.values() if ap.sysid is not None}
    out: dict[str, tuple[int, Autopilot]] = {}
    next_id = 1
    for name, ap in given.items():
        sysid = ap.sysid
        if sysid is None:
            while next_id in taken:
                next_id += 1
            sysid = next_id
            taken.add(sysid)
        out[name] = (sysid, ap)
    return out


def check(sc: Scenario) -> list[Problem]:
    """Cross-references of every autopilot section (registered as the workload's check)."""
    from firmware.params import PX4_DEFAULTS

    problems: list[Problem] = []
    ids: dict[int, str] = {}
    hosts = sc.hosts()
    for name in sc.nodes:
        ap = autopilot_of(sc, name)
        if ap is None:
            continue
        path = f"nodes.{name}.autopilot"
        if sc.nodes[name].kind is not NodeKind.UAV:
            problems.append(Problem(path, "only a uav can have an autopilot",
                                    "set kind: uav or remove autopilot"))
        if ap.controller not in sc.nodes:
            problems.append(Problem(f"{path}.controller", f"unknown node '{ap.controller}'",
                                    suggest(ap.controller, hosts, "nodes")))
        elif ap.controller == name or sc.nodes[ap.controller].kind is NodeKind.SWITCH:
            problems.append(Problem(f"{path}.controller", f"'{ap.controller}' cannot control "
                                    f"'{name}'", "name another host, e.g. the ground station"))
        if ap.sysid is not None and ap.sysid in ids:
            problems.append(Problem(f"{path}.sysid", f"system id {ap.sysid} is already "
                                    f"'{ids[ap.sysid]}''s", "give each vehicle its own id"))
        if ap.sysid is not None:
            ids[ap.sysid] = name
        if ap.flavour == "px4":
            for k in ap.params:
                if k not in PX4_DEFAULTS:
                    problems.append(Problem(f"{path}.params.{k}", f"unknown parameter '{k}'",
                                            suggest(k, list(PX4_DEFAULTS), "parameters")))
    if len(autopilots(sc)) > MAX_VEHICLES:
        problems.append(Problem("nodes", "more than 255 vehicles: MAVLink system ids are 1..255",
                                "split the fleet over several scenarios"))
    return problems


def find_px4() -> Path | None:
    """The PX4 SITL binary under $SAGIN_PX4_DIR, or None."""
    root = os.environ.get("SAGIN_PX4_DIR")
    if not root:
        return None
    binary = Path(root) / "build" / "px4_sitl_default" / "bin" / "px4"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


PX4_MISSING = ("PX4 SITL not found: set SAGIN_PX4_DIR to a PX4-Autopilot checkout built with "
               "`make px4_sitl_default` (expects build/px4_sitl_default/bin/px4), or use "
               "flavour: px4 (the built-in PX4-behaving vehicle, nothing to install)")


def preflight(sc: Scenario) -> list[Problem]:
    """The real PX4 SITL binary must exist before anything is created."""
    return [Problem(f"nodes.{name}.autopilot.flavour", PX4_MISSING)
            for name, (_, ap) in autopilots(sc).items()
            if ap.flavour == "px4-sitl" and find_px4() is None]
