"""ArduCopter 4.x as clients see it, on the shared multirotor simulation: the flavour that
DroneKit, MAVProxy and other ArduPilot tools fly (`python -m firmware.sitl --flavour arducopter`).

`ArduCopterVehicle` keeps `Vehicle`'s point-mass flight, energy model, battery and mission
execution, and changes what ArduPilot does differently where a client can see it:

Modelled
- HEARTBEAT: MAV_AUTOPILOT_ARDUPILOTMEGA, MAV_TYPE_QUADROTOR, custom_mode = the Copter mode
  number, base_mode as GCS_MAVLINK_Copter::base_mode() builds it (CUSTOM_MODE | STABILIZE |
  MANUAL_INPUT, + GUIDED while armed in a position-controlled mode, + SAFETY_ARMED); system
  status STANDBY / ACTIVE / CRITICAL (armed with a failsafe active).  Boots in STABILIZE.
- Modes, set by SET_MODE (acked, as ArduPilot does, with a COMMAND_ACK whose command is 11),
  DO_SET_MODE (param1 CUSTOM_MODE_ENABLED, param2 the mode number), NAV_LAND, NAV_RETURN_TO_LAUNCH,
  NAV_LOITER_UNLIM and MISSION_START.  Re-selecting the current mode changes nothing (the guided
  target survives).  GUIDED, LOITER, POSHOLD, BRAKE and the pilot modes hold position; AUTO runs
  the mission (item 0 is home; refused without items, or armed on the ground unless it starts
  with a takeoff: "Auto: Missing Takeoff Cmd"); RTL climbs to RTL_ALT (with RTL_CLIMB_MIN and
  RTL_CONE_SLOPE), returns at RTL_SPEED or WPNAV_SPEED, loiters RTL_LOIT_TIME, then lands or
  stops at RTL_ALT_FINAL; LAND descends at LAND_SPEED_HIGH (or WPNAV_SPEED_DN) above
  LAND_ALT_LOW and LAND_SPEED below; CIRCLE orbits a centre CIRCLE_RADIUS ahead at CIRCLE_RATE.
  Mission RTL/LAND items run inside AUTO, so the heartbeat keeps saying AUTO, as in ArduCopter.
- Arming (COMPONENT_ARM_DISARM, force value 2989) only in armable modes (not AUTO, RTL, LAND,
  BRAKE, CIRCLE: "Arm: Mode not armable"), pre-arm checks unless ARMING_CHECK=0 (battery
  failsafe, arming voltage/capacity, outside the fence); arming resets home to the current
  position unless DO_SET_HOME locked it.  Disarming from a GCS in flight needs force (21196).
- Takeoff: MAV_CMD_NAV_TAKEOFF param7 = metres above home, armed and landed, in GUIDED, LOITER
  or POSHOLD (ALT_HOLD with param3 != 0), climbing at WPNAV_SPEED_UP; refused (FAILED) otherwise.
  Until a takeoff the vehicle sits at ground idle whatever its targets, as with auto_armed.
- Guided control, only in GUIDED: DroneKit's `simple_goto` (MISSION_ITEM/MISSION_ITEM_INT with
  current=2, answered with MISSION_ACK; current=3 changes only the altitude),
  SET_POSITION_TARGET_LOCAL_NED (LOCAL_NED, LOCAL_OFFSET_NED, BODY_NED, BODY_OFFSET_NED; position
  and/or velocity, yaw), SET_POSITION_TARGET_GLOBAL_INT (AMSL, relative and terrain frames;
  terrain is flat at the origin), DO_REPOSITION as COMMAND_INT, CONDITION_YAW, DO_CHANGE_SPEED.
  A velocity target older than GUID_TIMEOUT is zeroed.
- Landing and disarm: the land detector trips ~1 s after touchdown; LAND (and RTL's final
  descent, and a mission LAND) disarm then; any other mode disarms after DISARM_DELAY s on the
  ground (0 = never), which also disarms a vehicle armed and left without a takeoff.  The mode
  is kept after disarming.
- Failsafes: GCS (FS_GCS_ENABLE after FS_GCS_TIMEOUT without a heartbeat from SYSID_MYGCS, only
  once a GCS was seen), battery (BATT_LOW_VOLT/BATT_LOW_MAH -> BATT_FS_LOW_ACT, BATT_CRT_* ->
  BATT_FS_CRT_ACT), fence (FENCE_ENABLE, FENCE_TYPE altitude/circle, FENCE_ALT_MAX, FENCE_RADIUS
  -> FENCE_ACTION); each action is a mode change, or a disarm when already landed.
- Parameters with ArduCopter's names, types and defaults (SITL's where SITL differs:
  FRAME_CLASS 1, BATT_MONITOR 4; BATT_CAPACITY is the simulated pack), integers carried as
  C-cast floats (ArduPilot's encoding: PARAM_FLOAT and PARAM_ENCODE_C_CAST are advertised, never
  PARAM_ENCODE_BYTEWISE), set values rounded and clamped to the parameter's type and echoed to
  all links with param_index 65535.  The ones the simulation uses drive its internal PX4-named
  settings (`params`): WPNAV_SPEED/_UP/_DN/_ACCEL/_RADIUS, RTL_*, LAND_*, DISARM_DELAY, ...
- Mission protocol the ArduPilot way: item 0 is home (uploads of it are ignored, downloads read
  the current home), uploads are driven with MISSION_REQUEST, MISSION_REQUEST is answered with
  MISSION_ITEM (and the "use MISSION_REQUEST_INT!" warning), MISSION_CURRENT's total excludes
  home.  DroneKit's `home_location` therefore appears after `commands.download()`.
- Telemetry: HEARTBEAT, SYS_STATUS, GPS_RAW_INT, GLOBAL_POSITION_INT (relative_alt above home),
  LOCAL_POSITION_NED, ATTITUDE, VFR_HUD, EKF_STATUS_REPORT (healthy, predicted position ok, not
  in constant-position mode, so DroneKit's `is_armable` and `ekf_ok` hold), EXTENDED_SYS_STATE,
  BATTERY_STATUS, MISSION_CURRENT, and HOME_POSITION when home changes or is asked for;
  REQUEST_DATA_STREAM sets the rate of ArduPilot's stream groups, SET_MESSAGE_INTERVAL single
  messages.

Not modelled
- RC input: no sticks, so STABILIZE, ACRO, ALT_HOLD and POSHOLD hold position as with centred
  sticks; RC failsafe (FS_THR_*) and the flight-mode switch (FLTMODE*) are parameters only.
- Modes other than those above (SMART_RTL, FLIP, AUTOTUNE, THROW, FOLLOW, ...) are refused
  ("Mode change to X failed: not simulated").
- Mission items beyond waypoint/takeoff/land/loiter-unlimited/RTL/change-speed (DO_JUMP, loiter
  time and turns, waypoint hold times, splines, conditions) are skipped; no fence or rally
  point lists (the fence is FENCE_RADIUS/FENCE_ALT_MAX only).
- S-curve paths, terrain, rangefinders, EKF/vibration/crash checks, the BATT_LOW_TIMER delay,
  motor spool-up, reboots (SYSID_THISMAV and other reboot-required settings only take effect on
  the next start; the fleet's system id wins at start), parameter storage beyond the process.
- Stream rates are per vehicle, not per link, and start at the testbed's rates rather than at
  ArduPilot's SRx_ defaults, so tools that never ask for streams still get telemetry.
- Serial/TCP 5760: `Fleet` serves this flavour on the PX4 SITL UDP ports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from enum import IntEnum
from typing import Any

import numpy as np
from pymavlink.dialects.v20 import ardupilotmega as mav

from firmware.dynamics import saturate, velocity_for
from firmware.mission import MissionServer, _as_int
from firmware.params import INT32, REAL32, ParamTable
from firmware.vehicle import (
    AUTO,
    IN_AIR,
    LAND,
    LANDING,
    LOITER,
    MISSION,
    ON_GROUND,
    RATES,
    RTL,
    TAKEOFF,
    TAKING_OFF,
    Home,
    Vehicle,
    VehicleConfig,
)

INT8, INT16 = 2, 4  # MAV_PARAM_TYPE_INT8 / INT16 (AP_Int8 / AP_Int16)
INT_RANGES = {INT8: (-128, 127), INT16: (-32768, 32767), INT32: (-2**31, 2**31 - 1)}


class Mode(IntEnum):
    """The ArduCopter modes simulated here (Copter's mode numbers)."""

    STABILIZE = 0
    ACRO = 1
    ALT_HOLD = 2
    AUTO = 3
    GUIDED = 4
    LOITER = 5
    RTL = 6
    CIRCLE = 7
    LAND = 9
    POSHOLD = 16
    BRAKE = 17


# every ArduCopter 4.x mode number, for names in messages (pymavlink's mode_mapping_acm)
COPTER_MODES = {0: "STABILIZE", 1: "ACRO", 2: "ALT_HOLD", 3: "AUTO", 4: "GUIDED", 5: "LOITER",
                6: "RTL", 7: "CIRCLE", 9: "LAND", 11: "DRIFT", 13: "SPORT", 14: "FLIP",
                15: "AUTOTUNE", 16: "POSHOLD", 17: "BRAKE", 18: "THROW", 19: "AVOID_ADSB",
                20: "GUIDED_NOGPS", 21: "SMART_RTL", 22: "FLOWHOLD", 23: "FOLLOW", 24: "ZIGZAG",
                25: "SYSTEMID", 26: "AUTOROTATE", 27: "AUTO_RTL", 28: "TURTLE"}
ARMABLE = {Mode.STABILIZE, Mode.ACRO, Mode.ALT_HOLD, Mode.GUIDED, Mode.LOITER, Mode.POSHOLD}
POSITION_MODES = {Mode.AUTO, Mode.GUIDED, Mode.LOITER, Mode.RTL, Mode.CIRCLE, Mode.LAND,
                  Mode.POSHOLD, Mode.BRAKE}
TAKEOFF_MODES = {Mode.GUIDED, Mode.LOITER, Mode.POSHOLD}  # + ALT_HOLD without navigation

FORCE_ARM, FORCE_DISARM = 2989, 21196  # ArduPilot's magic param2 values
LAND_DETECT_S = 1.0  # LAND_DETECTOR_TRIGGER_SEC
NOMINAL_CELL_V = 3.7
COPTER_VERSION = (4 << 24) | (5 << 16) | (7 << 8) | 255  # 4.5.7 official
CAPABILITIES = (mav.MAV_PROTOCOL_CAPABILITY_MISSION_FLOAT | mav.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
                | mav.MAV_PROTOCOL_CAPABILITY_MISSION_INT | mav.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
                | mav.MAV_PROTOCOL_CAPABILITY_PARAM_ENCODE_C_CAST
                | mav.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_LOCAL_NED
                | mav.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT
                | mav.MAV_PROTOCOL_CAPABILITY_MAVLINK2)
EKF_HEALTHY = (mav.EKF_ATTITUDE | mav.EKF_VELOCITY_HORIZ | mav.EKF_VELOCITY_VERT
               | mav.EKF_POS_HORIZ_REL | mav.EKF_POS_HORIZ_ABS | mav.EKF_POS_VERT_ABS
               | mav.EKF_PRED_POS_HORIZ_REL | mav.EKF_PRED_POS_HORIZ_ABS)

# ArduPilot's stream groups (REQUEST_DATA_STREAM), restricted to what is simulated
STREAMS = {
    mav.MAV_DATA_STREAM_EXTENDED_STATUS: ("SYS_STATUS", "GPS_RAW_INT", "MISSION_CURRENT",
                                          "EXTENDED_SYS_STATE"),
    mav.MAV_DATA_STREAM_POSITION: ("GLOBAL_POSITION_INT", "LOCAL_POSITION_NED"),
    mav.MAV_DATA_STREAM_EXTRA1: ("ATTITUDE",),
    mav.MAV_DATA_STREAM_EXTRA2: ("VFR_HUD",),
    mav.MAV_DATA_STREAM_EXTRA3: ("BATTERY_STATUS", "EKF_STATUS_REPORT"),
}
# ArduPilot sends HOME_POSITION when home changes or on request, not in a stream
AC_RATES = {**RATES, "HOME_POSITION": 0.0, "VFR_HUD": 4.0, "EKF_STATUS_REPORT": 1.0}

# name -> (default, MAV_PARAM_TYPE); ArduCopter 4.5 defaults, units as ArduPilot's
AC_DEFAULTS: dict[str, tuple[float, int]] = {
    "FORMAT_VERSION": (120, INT16),
    "SYSID_THISMAV": (1, INT16),  # the fleet's system id at start
    "SYSID_MYGCS": (255, INT16),  # only this GCS's heartbeats feed the GCS failsafe
    "INITIAL_MODE": (0, INT8),
    "FRAME_CLASS": (1, INT8),  # SITL quad (firmware default 0, undefined)
    "FRAME_TYPE": (1, INT8),  # X
    "ARMING_CHECK": (1, INT32),
    "ARMING_RUDDER": (2, INT8),
    "DISARM_DELAY": (10, INT8),  # s on the ground before auto-disarm, 0 = off
    "ANGLE_MAX": (3000, INT16),  # cdeg
    "PILOT_TKOFF_ALT": (0.0, REAL32),  # cm, stick takeoffs (no sticks here)
    "PILOT_THR_BHV": (0, INT16),
    "PILOT_SPEED_UP": (250, INT16),  # cm/s
    "PILOT_SPEED_DN": (0, INT16),
    "PILOT_ACCEL_Z": (250, INT16),
    "FLTMODE_CH": (5, INT8),
    "FLTMODE1": (0, INT8),
    "FLTMODE2": (0, INT8),
    "FLTMODE3": (0, INT8),
    "FLTMODE4": (0, INT8),
    "FLTMODE5": (0, INT8),
    "FLTMODE6": (0, INT8),
    "WPNAV_SPEED": (1000.0, REAL32),  # cm/s, AUTO and GUIDED horizontal speed
    "WPNAV_RADIUS": (200.0, REAL32),  # cm, waypoint acceptance
    "WPNAV_SPEED_UP": (250.0, REAL32),  # cm/s
    "WPNAV_SPEED_DN": (150.0, REAL32),  # cm/s
    "WPNAV_ACCEL": (250.0, REAL32),  # cm/s/s
    "WPNAV_ACCEL_Z": (100.0, REAL32),
    "WPNAV_RFND_USE": (1, INT8),
    "WP_YAW_BEHAVIOR": (2, INT8),
    "WP_NAVALT_MIN": (0.0, REAL32),
    "LOIT_SPEED": (1250.0, REAL32),
    "LOIT_ACC_MAX": (500.0, REAL32),
    "CIRCLE_RADIUS": (1000.0, REAL32),  # cm
    "CIRCLE_RATE": (20.0, REAL32),  # deg/s, positive clockwise
    "CIRCLE_OPTIONS": (1, INT16),
    "GUID_TIMEOUT": (3.0, REAL32),  # s before a stale velocity target is zeroed
    "GUID_OPTIONS": (0, INT32),
    "RTL_ALT": (1500, INT32),  # cm above home, 0 = return at the current altitude
    "RTL_ALT_FINAL": (0, INT16),  # cm, 0 = land
    "RTL_CLIMB_MIN": (0, INT16),  # cm
    "RTL_CONE_SLOPE": (3.0, REAL32),
    "RTL_SPEED": (0, INT16),  # cm/s, 0 = WPNAV_SPEED
    "RTL_LOIT_TIME": (5000, INT32),  # ms above home before descending
    "RTL_ALT_TYPE": (0, INT8),
    "LAND_SPEED": (50, INT16),  # cm/s below LAND_ALT_LOW
    "LAND_SPEED_HIGH": (0, INT16),  # cm/s above it, 0 = WPNAV_SPEED_DN
    "LAND_ALT_LOW": (1000, INT16),  # cm
    "LAND_REPOSITION": (1, INT8),
    "MIS_RESTART": (0, INT8),
    "MIS_OPTIONS": (0, INT16),
    "FS_GCS_ENABLE": (0, INT8),  # 1/2/3/6 RTL, 4/5 LAND, 7 BRAKE
    "FS_GCS_TIMEOUT": (5.0, REAL32),  # s
    "FS_THR_ENABLE": (1, INT8),
    "FS_THR_VALUE": (975, INT16),
    "FS_EKF_ACTION": (1, INT8),
    "FS_EKF_THRESH": (0.8, REAL32),
    "FS_CRASH_CHECK": (1, INT8),
    "BATT_MONITOR": (4, INT8),  # SITL: analog voltage and current
    "BATT_CAPACITY": (3300, INT32),  # mAh; set to the simulated pack at start
    "BATT_LOW_VOLT": (10.5, REAL32),
    "BATT_CRT_VOLT": (0.0, REAL32),
    "BATT_LOW_MAH": (0.0, REAL32),
    "BATT_CRT_MAH": (0.0, REAL32),
    "BATT_FS_LOW_ACT": (0, INT8),  # 1 land, 2/3 RTL, 4/5 land
    "BATT_FS_CRT_ACT": (0, INT8),
    "BATT_ARM_VOLT": (0.0, REAL32),
    "BATT_ARM_MAH": (0, INT32),
    "FENCE_ENABLE": (0, INT8),
    "FENCE_TYPE": (7, INT8),  # 1 max altitude, 2 circle, 4 polygon (none uploadable here)
    "FENCE_ACTION": (1, INT8),  # 0 report, 1/3 RTL, 2/5 land, 4 brake
    "FENCE_ALT_MAX": (100.0, REAL32),  # m above home
    "FENCE_RADIUS": (300.0, REAL32),  # m from home
    "FENCE_MARGIN": (2.0, REAL32),
    "MOT_SPIN_ARM": (0.1, REAL32),
    "MOT_SPIN_MIN": (0.15, REAL32),
    "MOT_SPIN_MAX": (0.95, REAL32),
    "MOT_THST_HOVER": (0.35, REAL32),
    "AHRS_EKF_TYPE": (3, INT8),
    "EK3_ENABLE": (1, INT8),
    "GPS_TYPE": (1, INT8),
    "COMPASS_USE": (1, INT8),
    "LOG_BITMASK": (176126, INT32),
    "SERIAL0_PROTOCOL": (2, INT8),
    "SIM_WIND_SPD": (0.0, REAL32),  # m/s (ArduPilot SITL)
    "SIM_WIND_DIR": (180.0, REAL32),  # deg the wind blows from
    "SIM_COMPUTE_W": (0.0, REAL32),  # W drawn by the payload computer (testbed)
}


def cast_param(value: float, type_: int) -> float | None:
    """The value a parameter of this type stores after PARAM_SET, None if rejected.

    AP_Param::set_float nudges by 0.01 toward the sign before the C cast, so 4.9999 stays 5;
    integers are clamped to their type, floats rounded to float32 as on the wire.
    """
    if not math.isfinite(value):
        return None
    if type_ == REAL32:
        return float(np.float32(value))
    lo, hi = INT_RANGES[type_]
    return float(math.trunc(max(lo, min(hi, value + math.copysign(0.01, value)))))


class ArduCopterVehicle(Vehicle):
    """An ArduCopter 4.x quadrotor; `params` stays the internal PX4-named settings that the shared
    flight code reads, `ap_params` is the table clients see."""

    def __init__(self, cfg: VehicleConfig, send: Callable[[Any, Any], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(replace(cfg, params={}), send, clock)
        self.cfg = cfg
        self.home_locked = False
        self.ap_params = ParamTable(AC_DEFAULTS)
        pack_mah = cfg.battery_wh / (self.battery.cells * NOMINAL_CELL_V) * 1000.0
        self.ap_params.items["BATT_CAPACITY"].value = float(round(pack_mah))
        for name, value in cfg.params.items():
            if name not in self.ap_params.items:
                raise KeyError(f"unknown parameter {name}")
            p = self.ap_params.items[name]
            cast = cast_param(float(value), p.type)
            if cast is None:
                raise ValueError(f"bad value for {name}: {value}")
            p.value = cast
        self.ap_params.items["SYSID_THISMAV"].value = float(cfg.sysid)
        self.ac_mode = Mode.STABILIZE
        self.mission = ArduMissionServer(self)
        self.guided_vel: np.ndarray | None = None
        self.guided_vel_t = -math.inf
        self.circle: tuple[np.ndarray, float, float, float] | None = None  # centre, angle, z, t
        self.rtl_alt: float | None = None  # m above home, fixed when RTL starts
        self.rtl_arrived: float | None = None
        self.gcs_seen = False
        self.fs_gcs = False
        self.fs_batt = 0  # 0 ok, 1 low, 2 critical
        self.fence_breached = False
        hz = cfg.telemetry_hz
        self.rates = {k: (v if v <= hz or k == "HEARTBEAT" else hz) for k, v in AC_RATES.items()}
        self.next_due = dict.fromkeys(self.rates, self.start)
        self._apply_params()

    # ---- geometry: the NED frame is anchored at the EKF origin (Vehicle), home is separate --
    @property
    def alt_above_home(self) -> float:
        return self.origin.alt - float(self.body.pos[2]) - self.home.alt

    @property
    def home_ned(self) -> np.ndarray:
        return self.global_to_ned(self.home.lat, self.home.lon, self.home.alt)

    @property
    def mode_name(self) -> str:
        return COPTER_MODES[int(self.ac_mode)]

    def _set_home(self, home: Home, lock: bool) -> None:
        self.home = home
        self.home_locked = self.home_locked or lock
        self.send(self.message("HOME_POSITION"), None)  # ArduPilot tells every GCS

    # ---- parameters ----------------------------------------------------------------------------
    def _apply_params(self) -> None:
        """Drive the internal PX4-named settings and limits from the ArduCopter parameters."""
        ap, internal = self.ap_params, self.params.items
        internal["MPC_XY_CRUISE"].value = ap["WPNAV_SPEED"] / 100.0
        internal["MPC_TKO_SPEED"].value = ap["WPNAV_SPEED_UP"] / 100.0
        internal["MPC_LAND_SPEED"].value = ap["LAND_SPEED"] / 100.0
        internal["NAV_ACC_RAD"].value = max(ap["WPNAV_RADIUS"], 5.0) / 100.0
        internal["RTL_RETURN_ALT"].value = ap["RTL_ALT"] / 100.0
        internal["COM_DISARM_LAND"].value = ap["DISARM_DELAY"]
        internal["SIM_COMPUTE_W"].value = ap["SIM_COMPUTE_W"]
        # SIM_WIND_DIR is where the wind comes from; the simulation wants where it blows to
        frm = math.radians(ap["SIM_WIND_DIR"])
        internal["SIM_WIND_N"].value = -ap["SIM_WIND_SPD"] * math.cos(frm)
        internal["SIM_WIND_E"].value = -ap["SIM_WIND_SPD"] * math.sin(frm)
        self.limits = replace(self.limits, xy_vel=20.0,  # WPNAV_SPEED's upper bound
                              z_vel_up=max(ap["WPNAV_SPEED_UP"], 10.0) / 100.0,
                              z_vel_down=max(ap["WPNAV_SPEED_DN"], 10.0) / 100.0,
                              acc_xy=max(ap["WPNAV_ACCEL"], 50.0) / 100.0)

    def _param_value(self, name: str, index: int, link: Any) -> None:
        p = self.ap_params.items[name]
        self.send(mav.MAVLink_param_value_message(
            name.encode(), float(p.value), p.type, len(self.ap_params.names), index), link)

    def _param(self, msg: Any, link: Any) -> None:
        kind, names = msg.get_type(), self.ap_params.names
        if kind == "PARAM_REQUEST_LIST":
            for i, name in enumerate(names):
                self._param_value(name, i, link)
        elif kind == "PARAM_REQUEST_READ":
            name = msg.param_id if msg.param_index < 0 else (
                names[msg.param_index] if msg.param_index < len(names) else "")
            if name in self.ap_params.items:
                self._param_value(name, names.index(name), link)
        elif kind == "PARAM_SET" and msg.param_id in self.ap_params.items:
            p = self.ap_params.items[msg.param_id]
            value = cast_param(msg.param_value, p.type)
            if value is None:
                return
            p.value = value
            self._apply_params()
            self._param_value(msg.param_id, 65535, None)  # index -1: AP_Param::notify, all links

    # ---- messages ----------------------------------------------------------------------------
    def handle(self, msg: Any, link: Any) -> None:
        kind = msg.get_type()
        if kind == "HEARTBEAT":
            if msg.type == mav.MAV_TYPE_GCS and \
                    msg.get_srcSystem() == int(self.ap_params["SYSID_MYGCS"]):
                self.gcs_last, self.gcs_seen = self.clock(), True
                if self.fs_gcs:
                    self.fs_gcs = False
                    self.status("GCS Failsafe Cleared", mav.MAV_SEVERITY_INFO)
            return
        if getattr(msg, "target_system", None) not in (None, 0, self.sysid):
            return
        if kind in ("COMMAND_LONG", "COMMAND_INT"):
            self._command(msg, link)
        elif kind == "SET_MODE":
            result = self._set_mode_common(msg.base_mode, msg.custom_mode)
            self.send(mav.MAVLink_command_ack_message(
                mav.MAVLINK_MSG_ID_SET_MODE, result, 0, 0, msg.get_srcSystem(),
                msg.get_srcComponent()), link)
        elif kind in ("MISSION_ITEM", "MISSION_ITEM_INT") and msg.current in (2, 3):
            self._guided_item(msg, link)
        elif kind == "SET_POSITION_TARGET_LOCAL_NED":
            self._target_local(msg)
        elif kind == "SET_POSITION_TARGET_GLOBAL_INT":
            self._target_global(msg)
        elif kind == "REQUEST_DATA_STREAM":
            self._data_stream(msg)
        elif kind.startswith("PARAM_"):
            self._param(msg, link)
        else:
            super().handle(msg, link)  # TIMESYNC and the mission protocol

    def _command(self, msg: Any, link: Any) -> None:
        c = msg.command
        p = [0.0 if math.isnan(x) else x for x in (msg.param1, msg.param2, msg.param3,
                                                    msg.param4)]
        is_int = msg.get_type() == "COMMAND_INT"
        p5, p6, p7 = (msg.x / 1e7, msg.y / 1e7, msg.z) if is_int else \
            (msg.param5, msg.param6, msg.param7)
        ok, failed = mav.MAV_RESULT_ACCEPTED, mav.MAV_RESULT_FAILED
        if c == mav.MAV_CMD_COMPONENT_ARM_DISARM:
            result = self._arm_disarm(p[0], p[1])
        elif c == mav.MAV_CMD_NAV_TAKEOFF:
            result = ok if self.user_takeoff(p7, must_navigate=p[2] == 0) else failed
        elif c == mav.MAV_CMD_NAV_LAND:
            result = ok if self.set_ac_mode(Mode.LAND) else failed
        elif c == mav.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            result = ok if self.set_ac_mode(Mode.RTL) else failed
        elif c == mav.MAV_CMD_NAV_LOITER_UNLIM:
            result = ok if self.set_ac_mode(Mode.LOITER) else failed
        elif c == mav.MAV_CMD_MISSION_START:
            result = ok if self.set_ac_mode(Mode.AUTO) else failed
        elif c == mav.MAV_CMD_DO_SET_MODE:
            result = self._set_mode_common(int(p[0]), int(p[1]))
        elif c == mav.MAV_CMD_DO_CHANGE_SPEED:
            if p[1] > 0:  # airspeed and groundspeed are both the horizontal speed on a copter
                self.speed = p[1]
            result = ok
        elif c == mav.MAV_CMD_CONDITION_YAW:
            result = self._condition_yaw(p)
        elif c == mav.MAV_CMD_DO_REPOSITION and is_int:
            result = self._reposition(msg, p)
        elif c == mav.MAV_CMD_DO_SET_HOME:
            result = self._do_set_home(p[0] > 0.5, p5, p6, p7, msg.frame if is_int else None)
        elif c in (mav.MAV_CMD_SET_MESSAGE_INTERVAL, mav.MAV_CMD_REQUEST_MESSAGE,
                   mav.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, mav.MAV_CMD_GET_HOME_POSITION):
            super()._command(msg, link)
            return
        else:
            result = mav.MAV_RESULT_UNSUPPORTED
        self._ack(msg, result, link)

    def _interval(self, msg_id: int, interval_us: float) -> bool:
        done = super()._interval(msg_id, interval_us)
        if done and interval_us == 0:  # back to this flavour's default rate
            name = mav.mavlink_map[msg_id].msgname
            self.rates[name] = AC_RATES.get(name, 0.0)
        return done

    def _data_stream(self, msg: Any) -> None:
        if msg.start_stop == 0:
            hz = 0.0
        elif msg.req_message_rate > 0:
            hz = float(min(msg.req_message_rate, 50))
        else:
            return  # ArduPilot ignores "start at rate 0"
        groups = STREAMS if msg.req_stream_id == mav.MAV_DATA_STREAM_ALL else \
            {msg.req_stream_id: STREAMS.get(msg.req_stream_id, ())}
        for names in groups.values():
            for name in names:
                self.rates[name] = hz
                self.next_due.setdefault(name, self.clock())

    # ---- modes ----------------------------------------------------------------------------------
    def _set_mode_common(self, base_mode: int, custom_mode: int) -> int:
        """GCS_MAVLINK::_set_mode_common: only custom modes are understood."""
        if base_mode & mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
            return mav.MAV_RESULT_ACCEPTED if self.set_ac_mode(custom_mode) else \
                mav.MAV_RESULT_FAILED
        return mav.MAV_RESULT_DENIED

    def set_ac_mode(self, number: int) -> bool:
        """Copter::set_mode from a GCS: False (with ArduCopter's message) if refused."""
        name = COPTER_MODES.get(number)
        if name is None:
            self.status(f"No such mode {number}")
            return False
        if number == self.ac_mode:
            return True
        try:
            mode = Mode(number)
        except ValueError:
            self.status(f"Mode change to {name} failed: not simulated")
            return False
        if mode == Mode.AUTO and not self._auto_ready():
            self.status("Mode change to AUTO failed: init failed")
            return False
        self.ac_mode = mode
        self.guided_vel, self.yaw_target, self.circle, self.speed = None, None, None, None
        internal = {Mode.AUTO: (AUTO, MISSION), Mode.RTL: (AUTO, RTL),
                    Mode.LAND: (AUTO, LAND)}.get(mode, (AUTO, LOITER))
        self.set_mode(*internal)
        if mode == Mode.CIRCLE:
            self._circle_start()
        return True

    def set_mode(self, main: int, sub: int = 0) -> bool:
        """The internal behaviour; also what mission items switch, keeping the Copter mode."""
        done = super().set_mode(main, sub)
        if done and (main, sub) == (AUTO, RTL):
            self.rtl_alt, self.rtl_arrived = None, None
        return done

    def _auto_ready(self) -> bool:
        items = self.mission.items
        if len(items) <= 1:
            return False
        if self.armed and self.landed == ON_GROUND:
            first_nav = next((it for it in items[max(1, self.mission.current):]
                              if it.command < mav.MAV_CMD_NAV_LAST), None)
            if first_nav is None or first_nav.command != mav.MAV_CMD_NAV_TAKEOFF:
                self.status("Auto: Missing Takeoff Cmd", mav.MAV_SEVERITY_CRITICAL)
                return False
        return True

    # ---- arming, takeoff, guided ------------------------------------------------------------
    def _arm_disarm(self, p1: float, p2: float) -> int:
        if p1 == 1:
            if self.armed:
                return mav.MAV_RESULT_ACCEPTED
            why = self._arm_blocker(checks=p2 != FORCE_ARM)
            if why:
                self.status(why, mav.MAV_SEVERITY_CRITICAL)
                return mav.MAV_RESULT_FAILED
            if not self.home_locked:
                self._set_home(Home(*self.ned_to_global(self.body.pos)), lock=False)
            self.arm(True, force=True)
            return mav.MAV_RESULT_ACCEPTED
        if p1 == 0:
            if not self.armed:
                return mav.MAV_RESULT_ACCEPTED
            if p2 != FORCE_DISARM and self.landed != ON_GROUND:
                return mav.MAV_RESULT_FAILED  # no GCS disarm in flight unless forced
            self.disarm()
            return mav.MAV_RESULT_ACCEPTED
        return mav.MAV_RESULT_UNSUPPORTED

    def _arm_blocker(self, checks: bool) -> str | None:
        if self.ac_mode not in ARMABLE:
            return "Arm: Mode not armable"
        if not checks or int(self.ap_params["ARMING_CHECK"]) == 0:
            return None
        p = self.ap_params
        if self.fs_batt or self._battery_level():
            return "PreArm: Battery 1 failsafe"
        if p["BATT_ARM_VOLT"] > 0 and self.battery.voltage < p["BATT_ARM_VOLT"]:
            return "PreArm: Battery 1 below minimum arming voltage"
        if p["BATT_ARM_MAH"] > 0 and self._mah_left() < p["BATT_ARM_MAH"]:
            return "PreArm: Battery 1 below minimum arming capacity"
        if self._fence_breach():
            return "PreArm: Vehicle outside Fence"
        return None

    def disarm(self) -> None:
        super().disarm()
        self.guided_vel, self.circle, self.yaw_target, self.rtl_arrived = None, None, None, None

    def user_takeoff(self, alt_rel: float, must_navigate: bool = True) -> bool:
        """Mode::do_user_takeoff: climb to alt_rel metres above home from the ground."""
        mode_ok = self.ac_mode in TAKEOFF_MODES or \
            (self.ac_mode == Mode.ALT_HOLD and not must_navigate)
        if not self.armed or self.landed != ON_GROUND or not mode_ok:
            return False
        if not math.isfinite(alt_rel) or alt_rel <= self.alt_above_home:
            return False  # can't take off downwards
        z = self.home_ned[2] - alt_rel
        self.target = np.array([self.body.pos[0], self.body.pos[1], z])
        self.guided_vel = None
        self.mode = (AUTO, TAKEOFF)
        self.landed = TAKING_OFF
        return True

    def guided_goto(self, ned: np.ndarray) -> None:
        """A new GUIDED position target, replacing any takeoff, velocity or earlier target."""
        self.target = np.array(ned, dtype=float)
        self.guided_vel, self.yaw_target = None, None
        self.mode = (AUTO, LOITER)

    def _guided_item(self, msg: Any, link: Any) -> None:
        it = _as_int(msg)
        accepted = True
        if msg.current == 3:  # altitude change only
            if self.target is not None:
                self.target[2] = self.mission._target(it)[2]
        elif self.ac_mode == Mode.GUIDED and it.command == mav.MAV_CMD_NAV_WAYPOINT:
            self.guided_goto(self.mission._target(it))
        else:
            accepted = False  # ModeAuto::do_guided: only in GUIDED
        self.send(mav.MAVLink_mission_ack_message(
            msg.get_srcSystem(), msg.get_srcComponent(),
            mav.MAV_MISSION_ACCEPTED if accepted else mav.MAV_MISSION_ERROR), link)

    def _guided_velocity(self, vel: np.ndarray) -> None:
        self.guided_vel = np.array(vel, dtype=float)
        self.guided_vel_t = self.clock()
        self.mode = (AUTO, LOITER)

    def _setpoint(self, tm: int, pos: np.ndarray | None, vel: np.ndarray, yaw: float) -> None:
        pos_ign, vel_ign = tm & 0b111 == 0b111, tm & 0b111000 == 0b111000
        acc_ign = tm & 0b111000000 == 0b111000000
        if pos is not None and not pos_ign and (not vel_ign or acc_ign):
            self.guided_goto(pos)  # position (a velocity feed-forward is not modelled)
        elif pos_ign and not vel_ign:
            self._guided_velocity(vel)
        elif pos_ign and vel_ign and not acc_ign:
            return  # acceleration targets are not modelled
        else:
            self.set_mode(AUTO, LOITER)  # invalid combination: ArduCopter re-inits GUIDED
            self.guided_vel = None
        self.yaw_target = None if tm & 1024 else yaw

    def _target_local(self, msg: Any) -> None:
        if self.ac_mode != Mode.GUIDED:
            return
        frame = msg.coordinate_frame
        if frame not in (mav.MAV_FRAME_LOCAL_NED, mav.MAV_FRAME_LOCAL_OFFSET_NED,
                         mav.MAV_FRAME_BODY_NED, mav.MAV_FRAME_BODY_OFFSET_NED):
            return
        pos = np.array([msg.x, msg.y, msg.z], dtype=float)
        vel = np.array([msg.vx, msg.vy, msg.vz], dtype=float)
        if frame in (mav.MAV_FRAME_BODY_NED, mav.MAV_FRAME_BODY_OFFSET_NED):
            c, s = math.cos(self.body.yaw), math.sin(self.body.yaw)
            pos[:2] = [c * pos[0] - s * pos[1], s * pos[0] + c * pos[1]]
            vel[:2] = [c * vel[0] - s * vel[1], s * vel[0] + c * vel[1]]
        if frame != mav.MAV_FRAME_LOCAL_NED:
            pos = pos + self.body.pos
        self._setpoint(msg.type_mask, pos, vel, msg.yaw)

    def _target_global(self, msg: Any) -> None:
        if self.ac_mode != Mode.GUIDED:
            return
        alt = self._frame_alt(msg.coordinate_frame, msg.alt)
        if alt is None:
            return
        pos = None
        if msg.type_mask & 0b111 != 0b111:
            if msg.lat_int == 0 and msg.lon_int == 0:
                return  # check_latlng fails: the whole message is dropped
            pos = self.global_to_ned(msg.lat_int / 1e7, msg.lon_int / 1e7, alt)
        self._setpoint(msg.type_mask, pos, np.array([msg.vx, msg.vy, msg.vz], dtype=float),
                       msg.yaw)

    def _frame_alt(self, frame: int, alt: float) -> float | None:
        """Metres AMSL for an altitude in a global frame (terrain is flat at the origin)."""
        if frame in (mav.MAV_FRAME_GLOBAL, mav.MAV_FRAME_GLOBAL_INT):
            return alt
        if frame in (mav.MAV_FRAME_GLOBAL_RELATIVE_ALT, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT):
            return self.home.alt + alt
        if frame in (mav.MAV_FRAME_GLOBAL_TERRAIN_ALT, mav.MAV_FRAME_GLOBAL_TERRAIN_ALT_INT):
            return self.origin.alt + alt
        return None

    def _reposition(self, msg: Any, p: list[float]) -> int:
        change_mode = int(p[1]) & mav.MAV_DO_REPOSITION_FLAGS_CHANGE_MODE
        if not change_mode and self.ac_mode != Mode.GUIDED:
            return mav.MAV_RESULT_DENIED
        alt = self._frame_alt(msg.frame, msg.z)
        if alt is None or (msg.x == 0 and msg.y == 0) or not math.isfinite(alt):
            return mav.MAV_RESULT_DENIED
        if self.ac_mode != Mode.GUIDED and not self.set_ac_mode(Mode.GUIDED):
            return mav.MAV_RESULT_FAILED
        self.guided_goto(self.global_to_ned(msg.x / 1e7, msg.y / 1e7, alt))
        return mav.MAV_RESULT_ACCEPTED

    def _condition_yaw(self, p: list[float]) -> int:
        angle, direction, relative = p[0], p[2], p[3]
        if not 0.0 <= angle <= 360.0 or relative not in (0.0, 1.0):
            return mav.MAV_RESULT_FAILED
        if relative:
            self.yaw_target = self.body.yaw + math.radians(angle) * (-1.0 if direction < 0
                                                                     else 1.0)
        else:
            self.yaw_target = math.radians(angle)
        return mav.MAV_RESULT_ACCEPTED

    def _do_set_home(self, use_current: bool, lat: float, lon: float, alt: float,
                     frame: int | None) -> int:
        if use_current:
            lat, lon, alt = self.ned_to_global(self.body.pos)
        elif frame is not None:
            amsl = self._frame_alt(frame, alt)
            if amsl is None:
                return mav.MAV_RESULT_FAILED
            alt = amsl
        if not all(math.isfinite(x) for x in (lat, lon, alt)) or abs(lat) > 90 or \
                abs(lon) > 180 or float(np.hypot(*self.global_to_ned(lat, lon, alt)[:2])) > 50e3:
            return mav.MAV_RESULT_FAILED  # invalid, or too far from the EKF origin
        self._set_home(Home(lat, lon, alt), lock=True)
        return mav.MAV_RESULT_ACCEPTED

    # ---- flight ---------------------------------------------------------------------------------
    def _cruise(self) -> float:
        return self.speed or self.ap_params["WPNAV_SPEED"] / 100.0

    def _land_speed(self) -> float:
        """Descent rate (m/s, down) of ArduCopter's land controller at this height."""
        p = self.ap_params
        high = p["LAND_SPEED_HIGH"] or p["WPNAV_SPEED_DN"]
        return (high if self.rel_alt > p["LAND_ALT_LOW"] / 100.0 else p["LAND_SPEED"]) / 100.0

    def _control(self, now: float) -> tuple[np.ndarray, float | None]:
        if not self.armed or (self.landed == ON_GROUND and self.mode != (AUTO, MISSION)):
            return np.zeros(3), None  # ground idle until a takeoff (auto_armed)
        if self.guided_vel is not None:
            if now - self.guided_vel_t > self.ap_params["GUID_TIMEOUT"]:
                self.guided_vel = np.zeros(3)  # a stale velocity target is zeroed
            return saturate(self.guided_vel, self.limits, self._cruise()), self.yaw_target
        if self.circle is not None:
            return self._circle_step(now)
        if self.mode == (AUTO, LAND):
            tgt = self.target if self.target is not None else self.body.pos
            v = velocity_for(self.body, np.array([tgt[0], tgt[1], self.body.pos[2]]),
                             self.limits)
            v[2] = self._land_speed()
            return v, None
        v, yaw = super()._control(now)
        return v, (self.yaw_target if self.yaw_target is not None else yaw)

    def _rtl(self) -> tuple[np.ndarray, float | None]:
        p, pos, home = self.ap_params, self.body.pos, self.home_ned
        if self.rtl_alt is None:  # ModeRTL::compute_return_target
            cur = self.alt_above_home
            dist = float(np.hypot(*(home[:2] - pos[:2])))
            alt = cur if p["RTL_ALT"] <= 0 else max(p["RTL_ALT"] / 100.0,
                                                    cur + max(0.0, p["RTL_CLIMB_MIN"]) / 100.0)
            if p["RTL_CONE_SLOPE"] > 0:
                alt = min(alt, max(dist * p["RTL_CONE_SLOPE"], cur + 2.5))
            if p["FENCE_ENABLE"] and int(p["FENCE_TYPE"]) & 1:
                alt = min(alt, p["FENCE_ALT_MAX"] - p["FENCE_MARGIN"])
            self.rtl_alt = max(alt, cur)
        z = home[2] - self.rtl_alt
        if self.rtl_phase == 0:  # initial climb
            if abs(pos[2] - z) < 0.5:
                self.rtl_phase = 1
            return velocity_for(self.body, np.array([pos[0], pos[1], z]), self.limits), None
        if self.rtl_phase == 1:  # return, then loiter above home
            tgt = np.array([home[0], home[1], z])
            if float(np.hypot(*(tgt[:2] - pos[:2]))) < 1.0:
                now = self.clock()
                if self.rtl_arrived is None:
                    self.rtl_arrived = now
                if now - self.rtl_arrived >= p["RTL_LOIT_TIME"] / 1000.0:
                    self.rtl_phase = 2
            speed = p["RTL_SPEED"] / 100.0 or self._cruise()
            return velocity_for(self.body, tgt, self.limits, speed), self._heading(tgt)
        final = p["RTL_ALT_FINAL"] / 100.0
        if final > 0:  # stop above home and stay in RTL
            return velocity_for(self.body, np.array([home[0], home[1], home[2] - final]),
                                self.limits), None
        v = velocity_for(self.body, np.array([home[0], home[1], pos[2]]), self.limits)
        v[2] = self._land_speed()
        return v, None

    def _circle_start(self) -> None:
        r = max(0.0, self.ap_params["CIRCLE_RADIUS"]) / 100.0
        yaw = self.body.yaw
        centre = self.body.pos[:2] + r * np.array([math.cos(yaw), math.sin(yaw)])
        self.circle = (centre, yaw + math.pi, float(self.body.pos[2]), self.clock())

    def _circle_step(self, now: float) -> tuple[np.ndarray, float | None]:
        assert self.circle is not None
        centre, angle, z, last = self.circle
        r = max(0.0, self.ap_params["CIRCLE_RADIUS"]) / 100.0
        rate = math.radians(self.ap_params["CIRCLE_RATE"])  # positive: clockwise from above
        angle += rate * max(0.0, now - last)
        self.circle = (centre, angle, z, now)
        tgt = np.array([centre[0] + r * math.cos(angle), centre[1] + r * math.sin(angle), z])
        cmd = self.limits.pos_gain * (tgt - self.body.pos)
        cmd[:2] += r * rate * np.array([-math.sin(angle), math.cos(angle)])  # feed-forward
        d = centre - self.body.pos[:2]
        yaw = math.atan2(d[1], d[0]) if r > 0.1 else angle
        return saturate(cmd, self.limits, self._cruise()), yaw

    def _auto_landing(self) -> bool:
        """In a mode that lands and disarms on touchdown (LAND, RTL's descent, mission LAND)."""
        return self.mode == (AUTO, LAND) or (self.mode == (AUTO, RTL) and self.rtl_phase == 2
                                             and self.ap_params["RTL_ALT_FINAL"] <= 0)

    def _landing_logic(self, now: float) -> None:
        if not self.armed:
            return
        on_ground = self.rel_alt < 0.05 and abs(float(self.body.vel[2])) < 0.1
        landing = self._auto_landing()
        if self.landed == TAKING_OFF and self.rel_alt > 0.5:
            self.landed = IN_AIR
        if self.landed == IN_AIR and landing:
            self.landed = LANDING
        if self.landed in (IN_AIR, LANDING) and on_ground:
            self.landed = ON_GROUND  # the land detector works in every mode
            self.landed_since = now
            self.guided_vel = None
        if self.landed != ON_GROUND or self.landed_since is None:
            return
        idle = now - self.landed_since
        delay = max(0.0, min(127.0, self.ap_params["DISARM_DELAY"]))
        if (landing and idle >= LAND_DETECT_S) or (delay > 0 and idle >= delay
                                                   and self.mode != (AUTO, MISSION)):
            self.disarm()

    # ---- failsafes ----------------------------------------------------------------------------
    def _mah_used(self) -> float:
        return self.battery.used_wh / (self.battery.cells * NOMINAL_CELL_V) * 1000.0

    def _mah_left(self) -> float:
        return self.ap_params["BATT_CAPACITY"] - self._mah_used()

    def _battery_level(self) -> int:
        p, volts, left = self.ap_params, self.battery.voltage, self._mah_left()
        if p["BATT_MONITOR"] == 0:
            return 0
        if (p["BATT_CRT_VOLT"] > 0 and volts < p["BATT_CRT_VOLT"]) or \
                (p["BATT_CRT_MAH"] > 0 and left < p["BATT_CRT_MAH"]):
            return 2
        if (p["BATT_LOW_VOLT"] > 0 and volts < p["BATT_LOW_VOLT"]) or \
                (p["BATT_LOW_MAH"] > 0 and left < p["BATT_LOW_MAH"]):
            return 1
        return 0

    def _fence_breach(self) -> str | None:
        p = self.ap_params
        if not p["FENCE_ENABLE"]:
            return None
        kinds = int(p["FENCE_TYPE"])
        if kinds & 1 and self.alt_above_home > p["FENCE_ALT_MAX"]:
            return "maximum altitude"
        dist = float(np.hypot(*(self.body.pos[:2] - self.home_ned[:2])))
        if kinds & 2 and dist > p["FENCE_RADIUS"]:
            return "circle"
        return None

    def _failsafe_mode(self, mode: Mode) -> None:
        """A failsafe action: disarm when already landed, else the mode unless landing."""
        if self.landed == ON_GROUND:
            self.disarm()
        elif self.ac_mode != Mode.LAND and not self.set_ac_mode(mode) and mode != Mode.LAND:
            self.set_ac_mode(Mode.LAND)

    def _failsafes(self, now: float) -> None:
        if not self.armed:
            return
        p = self.ap_params
        act = int(p["FS_GCS_ENABLE"])
        if act and self.gcs_seen and not self.fs_gcs and \
                now - self.gcs_last > p["FS_GCS_TIMEOUT"]:
            self.fs_gcs = True
            self.status("GCS Failsafe On", mav.MAV_SEVERITY_CRITICAL)
            self._failsafe_mode({4: Mode.LAND, 5: Mode.LAND, 7: Mode.BRAKE}.get(act, Mode.RTL))
        level = self._battery_level()
        if level > self.fs_batt:
            self.fs_batt = level
            self.status(f"Battery 1 is {'low' if level == 1 else 'critical'} "
                        f"{self.battery.voltage:.2f}V used {self._mah_used():.0f} mAh",
                        mav.MAV_SEVERITY_CRITICAL)
            act = int(p["BATT_FS_LOW_ACT" if level == 1 else "BATT_FS_CRT_ACT"])
            if act:
                self._failsafe_mode(Mode.RTL if act in (2, 3) else Mode.LAND)
        breach = self._fence_breach()
        if breach and not self.fence_breached:
            self.fence_breached = True
            self.status(f"Fence Breach: {breach}", mav.MAV_SEVERITY_CRITICAL)
            act = int(p["FENCE_ACTION"])
            if act and self.ac_mode not in (Mode.RTL, Mode.LAND):
                self._failsafe_mode({2: Mode.LAND, 4: Mode.BRAKE, 5: Mode.LAND}.get(act,
                                                                                   Mode.RTL))
        elif not breach:
            self.fence_breached = False

    # ---- telemetry ----------------------------------------------------------------------------
    def _batt_remaining(self) -> int:
        cap = self.ap_params["BATT_CAPACITY"]
        return int(max(0.0, min(100.0, 100.0 * self._mah_left() / cap))) if cap > 0 else -1

    def message(self, name: str) -> Any:
        b = self.body
        if name == "HEARTBEAT":
            base = mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mav.MAV_MODE_FLAG_STABILIZE_ENABLED \
                | mav.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED
            state = mav.MAV_STATE_STANDBY
            if self.armed:
                base |= mav.MAV_MODE_FLAG_SAFETY_ARMED
                if self.ac_mode in POSITION_MODES:
                    base |= mav.MAV_MODE_FLAG_GUIDED_ENABLED
                state = mav.MAV_STATE_CRITICAL if self.fs_gcs or self.fs_batt else \
                    mav.MAV_STATE_ACTIVE
            return mav.MAVLink_heartbeat_message(mav.MAV_TYPE_QUADROTOR,
                                                 mav.MAV_AUTOPILOT_ARDUPILOTMEGA, base,
                                                 int(self.ac_mode), state, 3)
        if name == "SYS_STATUS":
            m = super().message(name)
            m.battery_remaining = self._batt_remaining()
            return m
        if name == "BATTERY_STATUS":
            m = super().message(name)
            m.current_consumed = int(self._mah_used())
            m.battery_remaining = self._batt_remaining()
            return m
        if name == "GLOBAL_POSITION_INT":
            lat, lon, alt = self.ned_to_global(b.pos)
            return mav.MAVLink_global_position_int_message(
                int((self.clock() - self.start) * 1000) & 0xFFFFFFFF, int(lat * 1e7),
                int(lon * 1e7), int(alt * 1000), int(self.alt_above_home * 1000),
                int(b.vel[0] * 100), int(b.vel[1] * 100), int(b.vel[2] * 100),
                int(math.degrees(b.yaw) % 360 * 100))
        if name == "VFR_HUD":
            wind = np.array([self.params["SIM_WIND_N"], self.params["SIM_WIND_E"]])
            ground = float(np.hypot(b.vel[0], b.vel[1]))
            hover_w = self.power.propulsion_w(0.0) + self.power.avionics_w
            throttle = 0 if not self.armed else int(min(100.0, 100.0 * self.ap_params[
                "MOT_THST_HOVER"] * b.power_w / hover_w))
            return mav.MAVLink_vfr_hud_message(
                float(np.hypot(*(b.vel[:2] - wind))), ground, int(math.degrees(b.yaw) % 360),
                throttle, self.ned_to_global(b.pos)[2], -float(b.vel[2]))
        if name == "EKF_STATUS_REPORT":
            return mav.MAVLink_ekf_status_report_message(EKF_HEALTHY, 0.02, 0.01, 0.01, 0.02,
                                                         0.0)
        if name == "HOME_POSITION":
            h, ned = self.home, self.home_ned
            return mav.MAVLink_home_position_message(
                int(h.lat * 1e7), int(h.lon * 1e7), int(h.alt * 1000), *map(float, ned),
                [1.0, 0.0, 0.0, 0.0], 0.0, 0.0, 0.0, int(time.time() * 1e6))
        if name == "AUTOPILOT_VERSION":
            return mav.MAVLink_autopilot_version_message(
                CAPABILITIES, COPTER_VERSION, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0, 0,
                self.sysid)
        return super().message(name)


class ArduMissionServer(MissionServer):
    """ArduPilot's mission list: item 0 is home (read from the vehicle, writes to it ignored,
    as AP_Mission does), the mission proper starts at 1, uploads ask with MISSION_REQUEST."""

    v: ArduCopterVehicle

    def __init__(self, vehicle: ArduCopterVehicle) -> None:
        super().__init__(vehicle)
        self.receiving = False
        self.uploader = (0, 0)
        self.warned: set[str] = set()
        self._store([])

    def _home_item(self) -> Any:
        h = self.v.home
        return mav.MAVLink_mission_item_int_message(
            0, 0, 0, mav.MAV_FRAME_GLOBAL, mav.MAV_CMD_NAV_WAYPOINT, 0, 1, 0.0, 0.0, 0.0, 0.0,
            round(h.lat * 1e7), round(h.lon * 1e7), float(h.alt))

    def _store(self, items: list[Any]) -> None:
        self.items = [self._home_item(), *items[1:]]
        self.current = 1
        self.finished = False

    def resume(self) -> None:
        if self.finished or self.current < 1:
            self.current, self.finished = 1, False

    def _target(self, it: Any) -> np.ndarray:
        tgt = super()._target(it)
        if it.command == mav.MAV_CMD_NAV_TAKEOFF:  # Copter climbs where it is
            tgt[:2] = self.v.body.pos[:2]
        return tgt

    def _warn(self, text: str) -> None:
        if text not in self.warned:
            self.warned.add(text)
            self.v.status(text)

    def current_message(self) -> Any:
        n = len(self.items)
        state = mav.MISSION_STATE_NO_MISSION if n <= 1 else mav.MISSION_STATE_COMPLETE \
            if self.finished else mav.MISSION_STATE_ACTIVE if self.v.ac_mode == Mode.AUTO \
            else mav.MISSION_STATE_NOT_STARTED
        return mav.MAVLink_mission_current_message(min(self.current, n - 1), n - 1, state,
                                                   int(self.v.ac_mode == Mode.AUTO))

    def handle(self, msg: Any, link: Any) -> None:
        kind = msg.get_type()
        mtype = getattr(msg, "mission_type", 0)
        if mtype != mav.MAV_MISSION_TYPE_MISSION:
            super().handle(msg, link)  # no fence or rally lists
            return
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        send = self.v.send

        def ack(result: int) -> None:
            send(mav.MAVLink_mission_ack_message(*src, result), link)

        if kind == "MISSION_COUNT":
            self.receiving, self.uploader, self.warned = True, src, set()
            self.count, self.expected, self.incoming = msg.count, 0, []
            if msg.count == 0:
                self._store([])
                self.receiving = False
                ack(mav.MAV_MISSION_ACCEPTED)
            else:
                send(mav.MAVLink_mission_request_message(*src, 0), link)
        elif kind in ("MISSION_ITEM", "MISSION_ITEM_INT"):
            if not self.receiving:
                ack(mav.MAV_MISSION_ERROR)
            elif src != self.uploader:
                ack(mav.MAV_MISSION_DENIED)
            elif msg.seq != self.expected:
                ack(mav.MAV_MISSION_INVALID_SEQUENCE)
            else:
                if kind == "MISSION_ITEM":
                    self._warn("got MISSION_ITEM; GCS should send MISSION_ITEM_INT")
                self.incoming.append(_as_int(msg))
                self.expected += 1
                if self.expected < self.count:
                    send(mav.MAVLink_mission_request_message(*src, self.expected), link)
                else:
                    self._store(self.incoming)
                    self.receiving = False
                    ack(mav.MAV_MISSION_ACCEPTED)
        elif kind == "MISSION_REQUEST_LIST":
            if self.receiving:
                ack(mav.MAV_MISSION_DENIED)
            else:
                send(mav.MAVLink_mission_count_message(*src, len(self.items)), link)
        elif kind in ("MISSION_REQUEST_INT", "MISSION_REQUEST"):
            if self.receiving:
                ack(mav.MAV_MISSION_DENIED)
            elif msg.seq >= len(self.items):
                ack(mav.MAV_MISSION_INVALID_SEQUENCE)
            else:
                it = self._home_item() if msg.seq == 0 else self.items[msg.seq]
                fields = (it.seq, it.frame, it.command, int(it.seq == self.current),
                          it.autocontinue, it.param1, it.param2, it.param3, it.param4)
                if kind == "MISSION_REQUEST_INT":
                    send(mav.MAVLink_mission_item_int_message(*src, *fields, it.x, it.y, it.z),
                         link)
                else:
                    self._warn("got MISSION_REQUEST; use MISSION_REQUEST_INT!")
                    send(mav.MAVLink_mission_item_message(*src, *fields, it.x / 1e7, it.y / 1e7,
                                                          it.z), link)
        elif kind == "MISSION_CLEAR_ALL":
            self.receiving = False
            self._store([])
            ack(mav.MAV_MISSION_ACCEPTED)
        elif kind == "MISSION_SET_CURRENT":
            if msg.seq < len(self.items):
                self.current, self.finished = max(1, msg.seq), False
            send(self.current_message(), link)
