"""Autopilot parameters: PX4's names and defaults for what the simulation implements, with
PX4's bytewise encoding of integer parameters in PARAM_VALUE (MAVSDK and QGroundControl
read AUTOPILOT_VERSION's PARAM_ENCODE_BYTEWISE capability and decode them that way)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

REAL32 = 9  # MAV_PARAM_TYPE_REAL32
INT32 = 6  # MAV_PARAM_TYPE_INT32


@dataclass
class Param:
    value: float
    type: int


# name -> (default, type); units in comments, defaults as in PX4 v1.14 unless noted
PX4_DEFAULTS: dict[str, tuple[float, int]] = {
    "MIS_TAKEOFF_ALT": (2.5, REAL32),  # m above home
    "MPC_XY_VEL_MAX": (12.0, REAL32),  # m/s
    "MPC_XY_CRUISE": (5.0, REAL32),  # m/s, missions and repositions
    "MPC_Z_VEL_MAX_UP": (3.0, REAL32),
    "MPC_Z_VEL_MAX_DN": (1.5, REAL32),
    "MPC_ACC_HOR": (3.0, REAL32),
    "MPC_LAND_SPEED": (0.7, REAL32),
    "MPC_TKO_SPEED": (1.5, REAL32),
    "NAV_ACC_RAD": (2.0, REAL32),  # m, waypoint acceptance
    "RTL_RETURN_ALT": (30.0, REAL32),  # m above home (PX4: 60)
    "COM_DISARM_LAND": (2.0, REAL32),  # s on the ground before auto-disarm
    "COM_OF_LOSS_T": (1.0, REAL32),  # s without offboard setpoints -> hold
    "COM_DL_LOSS_T": (10, INT32),  # s without a GCS heartbeat -> data-link-loss action
    "NAV_DLL_ACT": (2, INT32),  # 0 off, 1 hold, 2 RTL, 3 land (PX4 default: 0)
    "BAT_LOW_THR": (0.15, REAL32),
    "BAT_CRIT_THR": (0.07, REAL32),
    "BAT_EMERGEN_THR": (0.05, REAL32),
    "COM_LOW_BAT_ACT": (3, INT32),  # 3: RTL at critical, land at emergency
    "GF_ACTION": (3, INT32),  # 1 warning, 2 hold, 3 RTL, 4 terminate->land here
    "GF_MAX_HOR_DIST": (0.0, REAL32),  # m from home, 0 = off
    "GF_MAX_VER_DIST": (0.0, REAL32),  # m above home, 0 = off
    "SIM_WIND_N": (0.0, REAL32),  # m/s (testbed: wind in the simulation)
    "SIM_WIND_E": (0.0, REAL32),
    "SIM_COMPUTE_W": (0.0, REAL32),  # W drawn by the payload computer (testbed)
    "SYS_AUTOSTART": (10016, INT32),  # the SITL quadrotor airframe
}


def encode(p: Param) -> float:
    """The float that goes in PARAM_VALUE.param_value."""
    if p.type == INT32:
        return float(struct.unpack("<f", struct.pack("<i", int(p.value)))[0])
    return float(p.value)


def decode(raw: float, type_: int) -> float:
    if type_ == INT32:
        return float(struct.unpack("<i", struct.pack("<f", raw))[0])
    return float(raw)


class ParamTable:
    def __init__(self, defaults: dict[str, tuple[float, int]],
                 overrides: dict[str, float] | None = None) -> None:
        self.items: dict[str, Param] = {k: Param(v, t) for k, (v, t) in defaults.items()}
        for k, v in (overrides or {}).items():
            if k not in self.items:
                raise KeyError(f"unknown parameter {k}")
            self.items[k].value = v
        self.names = list(self.items)

    def __getitem__(self, name: str) -> float:
        return self.items[name].value

    def get(self, name: str, default: float) -> float:
        p = self.items.get(name)
        return p.value if p is not None else default
