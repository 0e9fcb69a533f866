"""A PX4-behaving multirotor autopilot, speaking MAVLink 2: the vehicle the testbed flies when
no PX4 SITL binary exists (and the one it scales to hundreds of).

Behaviour follows PX4 v1.14 as clients see it: HEARTBEAT (autopilot PX4, quadrotor, PX4
custom-mode encoding main << 16 | sub << 24), COMMAND_LONG/COMMAND_INT answered with
COMMAND_ACK to the sender, arming with pre-arm checks, takeoff (param7 AMSL, NaN ->
MIS_TAKEOFF_ALT), DO_REPOSITION, DO_SET_MODE, land with auto-disarm, return-to-launch,
OFFBOARD position/velocity setpoints with fallback to hold when they stop, the mission
protocol (testbed/firmware/mission.py), parameters, HOME_POSITION, AUTOPILOT_VERSION,
TIMESYNC, SET_MESSAGE_INTERVAL, and telemetry at PX4-like rates.  Failsafes: data-link loss
(no GCS heartbeat for COM_DL_LOSS_T) -> NAV_DLL_ACT, low battery -> COM_LOW_BAT_ACT,
geofence -> GF_ACTION.

The vehicle knows nothing about sockets: `handle(msg, link)` takes a decoded message and the
link it came on, `tick(now)` advances flight and returns due telemetry through `send`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymavlink.dialects.v20 import ardupilotmega as mav

from firmware.dynamics import Battery, Body, Limits, PowerModel, saturate, step, velocity_for
from firmware.mission import MissionServer
from firmware.params import PX4_DEFAULTS, ParamTable, decode, encode

EARTH_R = 6378137.0

# PX4 main modes and AUTO sub-modes (px4_custom_mode.h)
MANUAL, ALTCTL, POSCTL, AUTO, ACRO, OFFBOARD, STABILIZED = 1, 2, 3, 4, 5, 6, 7
READY, TAKEOFF, LOITER, MISSION, RTL, LAND = 1, 2, 3, 4, 5, 6
MODE_NAMES = {(MANUAL, 0): "MANUAL", (ALTCTL, 0): "ALTCTL", (POSCTL, 0): "POSCTL",
              (AUTO, TAKEOFF): "TAKEOFF", (AUTO, LOITER): "HOLD", (AUTO, MISSION): "MISSION",
              (AUTO, RTL): "RTL", (AUTO, LAND): "LAND", (OFFBOARD, 0): "OFFBOARD",
              (STABILIZED, 0): "STABILIZED", (AUTO, READY): "READY"}

ON_GROUND, IN_AIR, TAKING_OFF, LANDING = 1, 2, 3, 4  # MAV_LANDED_STATE

SENSORS = (mav.MAV_SYS_STATUS_SENSOR_3D_GYRO | mav.MAV_SYS_STATUS_SENSOR_3D_ACCEL
           | mav.MAV_SYS_STATUS_SENSOR_3D_MAG | mav.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
           | mav.MAV_SYS_STATUS_SENSOR_GPS | mav.MAV_SYS_STATUS_SENSOR_ANGULAR_RATE_CONTROL
           | mav.MAV_SYS_STATUS_SENSOR_ATTITUDE_STABILIZATION
           | mav.MAV_SYS_STATUS_SENSOR_YAW_POSITION
           | mav.MAV_SYS_STATUS_SENSOR_Z_ALTITUDE_CONTROL
           | mav.MAV_SYS_STATUS_SENSOR_XY_POSITION_CONTROL
           | mav.MAV_SYS_STATUS_SENSOR_MOTOR_OUTPUTS | mav.MAV_SYS_STATUS_SENSOR_BATTERY
           | mav.MAV_SYS_STATUS_AHRS | mav.MAV_SYS_STATUS_PREARM_CHECK)

CAPABILITIES = (mav.MAV_PROTOCOL_CAPABILITY_MISSION_FLOAT | mav.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
                | mav.MAV_PROTOCOL_CAPABILITY_MISSION_INT | mav.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
                | mav.MAV_PROTOCOL_CAPABILITY_PARAM_ENCODE_BYTEWISE
                | mav.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_LOCAL_NED
                | mav.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT
                | mav.MAV_PROTOCOL_CAPABILITY_MAVLINK2)
PX4_VERSION = (1 << 24) | (14 << 16) | (0 << 8) | 255  # 1.14.0 release

# default telemetry rates (Hz) on the API link, by message name
RATES = {"HEARTBEAT": 1.0, "SYS_STATUS": 2.0, "BATTERY_STATUS": 1.0, "GPS_RAW_INT": 5.0,
         "GLOBAL_POSITION_INT": 20.0, "LOCAL_POSITION_NED": 20.0, "ATTITUDE": 20.0,
         "EXTENDED_SYS_STATE": 2.0, "HOME_POSITION": 0.5, "MISSION_CURRENT": 1.0}


@dataclass
class Home:
    lat: float
    lon: float
    alt: float  # AMSL, m


@dataclass
class VehicleConfig:
    sysid: int
    home: Home
    telemetry_hz: float = 20.0
    params: dict[str, float] = field(default_factory=dict)
    battery_wh: float = 74.0


class Vehicle:
    def __init__(self, cfg: VehicleConfig, send: Callable[[Any, Any], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.send, self.clock = cfg, send, clock
        self.sysid = cfg.sysid
        self.home = cfg.home
        # the local NED frame stays where the vehicle powered up; DO_SET_HOME moves home only
        self.origin = Home(cfg.home.lat, cfg.home.lon, cfg.home.alt)
        self.params = ParamTable(PX4_DEFAULTS, cfg.params)
        self.limits = Limits()
        self.power = PowerModel()
        self.battery = Battery(capacity_wh=cfg.battery_wh)
        self.body = Body()
        self.armed = False
        self.mode = (AUTO, LOITER)
        self.landed = ON_GROUND
        self.target: np.ndarray | None = None  # NED position target
        self.vel_target: np.ndarray | None = None
        self.yaw_target: float | None = None
        self.speed: float | None = None
        self.rtl_phase = 0
        self.landed_since: float | None = None
        self.offboard_last = -math.inf
        self.gcs_last = clock()
        self.dll_triggered = False
        self.bat_state = 0  # 0 ok, 1 low, 2 critical, 3 emergency
        self.mission = MissionServer(self)
        self.start = clock()
        self.last_tick = self.start
        self.rates = {k: (v if v <= cfg.telemetry_hz or k == "HEARTBEAT" else cfg.telemetry_hz)
                      for k, v in RATES.items()}
        self.next_due = dict.fromkeys(self.rates, self.start)
        self.statustext: list[str] = []

    # ---- geometry ------------------------------------------------------------------------
    def ned_to_global(self, ned: np.ndarray) -> tuple[float, float, float]:
        o = self.origin
        lat = o.lat + math.degrees(ned[0] / EARTH_R)
        lon = o.lon + math.degrees(ned[1] / (EARTH_R * math.cos(math.radians(o.lat))))
        return lat, lon, o.alt - float(ned[2])

    def global_to_ned(self, lat: float, lon: float, alt_amsl: float) -> np.ndarray:
        o = self.origin
        n = math.radians(lat - o.lat) * EARTH_R
        e = math.radians(lon - o.lon) * EARTH_R * math.cos(math.radians(o.lat))
        return np.array([n, e, o.alt - alt_amsl])

    @property
    def rel_alt(self) -> float:
        return -float(self.body.pos[2])

    @property
    def mode_name(self) -> str:
        return MODE_NAMES.get(self.mode, f"{self.mode}")

    # ---- mode changes ----------------------------------------------------------------------
    def set_mode(self, main: int, sub: int = 0) -> bool:
        if main == OFFBOARD and self.clock() - self.offboard_last > \
                self.params["COM_OF_LOSS_T"]:
            return False  # PX4 refuses OFFBOARD without a live setpoint stream
        if main == AUTO and sub == MISSION and not self.mission.items:
            return False
        if main in (MANUAL, ALTCTL, POSCTL, STABILIZED, ACRO):
            main, sub = POSCTL, 0  # no sticks here: position mode holds
        self.mode = (main, sub)
        if self.mode == (AUTO, LOITER) or self.mode == (POSCTL, 0):
            self.hold_here()
        elif self.mode == (AUTO, RTL):
            self.rtl_phase = 0
        elif self.mode == (AUTO, MISSION):
            self.mission.resume()
        elif self.mode == (AUTO, LAND):
            self.target = np.array([self.body.pos[0], self.body.pos[1], 0.0])
        return True

    def hold_here(self) -> None:
        self.target = self.body.pos.copy()
        self.vel_target = None

    def arm(self, arm: bool, force: bool = False) -> tuple[bool, str]:
        if arm:
            if self.armed:
                return True, ""
            if not force and self.battery.remaining <= self.params["BAT_CRIT_THR"]:
                return False, "Arming denied: battery critical"
            if not force and self.landed != ON_GROUND:
                return False, "Arming denied: not landed"
            self.armed = True
            self.landed_since = self.clock()
            self.hold_here()
            return True, ""
        if self.landed != ON_GROUND and not force:
            return False, "Disarming denied: not landed"
        self.disarm()
        return True, ""

    def disarm(self) -> None:
        self.armed = False
        self.mode = (AUTO, LOITER)
        self.landed = ON_GROUND
        self.vel_target = None
        self.target = None

    def takeoff(self, alt_amsl: float) -> bool:
        if not self.armed:
            return False
        rel = self.params["MIS_TAKEOFF_ALT"] if math.isnan(alt_amsl) else \
            alt_amsl - self.home.alt
        self.target = np.array([self.body.pos[0], self.body.pos[1], -max(rel, 0.5)])
        self.mode = (AUTO, TAKEOFF)
        self.landed = TAKING_OFF
        return True

    def reposition(self, lat: float, lon: float, alt: float) -> bool:
        if not self.armed or self.landed == ON_GROUND or not _on_earth(lat, lon):
            return False
        cur_lat, cur_lon, cur_alt = self.ned_to_global(self.body.pos)
        self.target = self.global_to_ned(cur_lat if math.isnan(lat) else lat,
                                         cur_lon if math.isnan(lon) else lon,
                                         cur_alt if math.isnan(alt) else alt)
        self.mode = (AUTO, LOITER)
        return True

    # ---- messages ----------------------------------------------------------------------------
    def handle(self, msg: Any, link: Any) -> None:
        kind = msg.get_type()
        if kind == "HEARTBEAT":
            if msg.type == mav.MAV_TYPE_GCS:
                self.gcs_last = self.clock()
                if self.dll_triggered:
                    self.dll_triggered = False
            return
        target = getattr(msg, "target_system", None)
        if target not in (None, 0, self.sysid):
            return
        if kind in ("COMMAND_LONG", "COMMAND_INT"):
            self._command(msg, link)
        elif kind == "SET_POSITION_TARGET_LOCAL_NED":
            self._setpoint_local(msg)
        elif kind == "SET_POSITION_TARGET_GLOBAL_INT":
            self._setpoint_global(msg)
        elif kind == "SET_MODE":
            main, sub = (msg.custom_mode >> 16) & 0xFF, (msg.custom_mode >> 24) & 0xFF
            self.set_mode(main, sub)
        elif kind == "PARAM_REQUEST_LIST":
            for i, name in enumerate(self.params.names):
                self._param_value(name, i, link)
        elif kind == "PARAM_REQUEST_READ":
            name = msg.param_id if msg.param_index < 0 else (
                self.params.names[msg.param_index]
                if msg.param_index < len(self.params.names) else "")
            if name in self.params.items:
                self._param_value(name, self.params.names.index(name), link)
        elif kind == "PARAM_SET":
            if msg.param_id in self.params.items:
                p = self.params.items[msg.param_id]
                if math.isfinite(msg.param_value):  # else refused: the reply is the old value
                    p.value = decode(msg.param_value, p.type)
                self._param_value(msg.param_id, self.params.names.index(msg.param_id), link)
        elif kind == "TIMESYNC" and msg.tc1 == 0:
            self.send(mav.MAVLink_timesync_message(int(time.time() * 1e9), msg.ts1), link)
        elif kind.startswith("MISSION_"):
            self.mission.handle(msg, link)

    def _param_value(self, name: str, index: int, link: Any) -> None:
        p = self.params.items[name]
        self.send(mav.MAVLink_param_value_message(name.encode(), encode(p), p.type,
                                                  len(self.params.names), index), link)

    def _ack(self, msg: Any, result: int, link: Any) -> None:
        self.send(mav.MAVLink_command_ack_message(
            msg.command, result, 0, 0, msg.get_srcSystem(), msg.get_srcComponent()), link)

    def _command(self, msg: Any, link: Any) -> None:
        c = msg.command
        p = [0.0 if math.isnan(x) else x for x in (msg.param1, msg.param2, msg.param3,
                                                    msg.param4)]
        if msg.get_type() == "COMMAND_INT":
            p5, p6, p7 = msg.x / 1e7, msg.y / 1e7, msg.z
        else:
            p5, p6, p7 = msg.param5, msg.param6, msg.param7
        ok, bad = mav.MAV_RESULT_ACCEPTED, mav.MAV_RESULT_DENIED
        if any(math.isinf(x) for x in (*p, p5, p6, p7)):
            # NaN is MAVLink's "unchanged / use current"; infinity is nobody's intent
            self._ack(msg, mav.MAV_RESULT_DENIED, link)
            return
        if c == mav.MAV_CMD_COMPONENT_ARM_DISARM:
            done, why = self.arm(p[0] > 0.5, force=int(p[1]) == 21196)
            if why:
                self.status(why)
            self._ack(msg, ok if done else bad, link)
        elif c == mav.MAV_CMD_NAV_TAKEOFF:
            self._ack(msg, ok if self.takeoff(p7) else bad, link)
        elif c == mav.MAV_CMD_NAV_LAND:
            self._ack(msg, ok if self.armed and self.set_mode(AUTO, LAND) else bad, link)
        elif c == mav.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            self._ack(msg, ok if self.armed and self.set_mode(AUTO, RTL) else bad, link)
        elif c == mav.MAV_CMD_DO_SET_MODE:
            done = self.set_mode(int(p[1]), int(p[2])) if int(p[0]) & \
                mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED else False
            self._ack(msg, ok if done else bad, link)
        elif c == mav.MAV_CMD_DO_REPOSITION:
            if p[0] > 0:
                self.speed = p[0]
            self._ack(msg, ok if self.reposition(p5, p6, p7) else bad, link)
        elif c == mav.MAV_CMD_NAV_LOITER_UNLIM:
            self._ack(msg, ok if self.set_mode(AUTO, LOITER) else bad, link)
        elif c == mav.MAV_CMD_DO_CHANGE_SPEED:
            self.speed = p[1] if p[1] > 0 else None
            self._ack(msg, ok, link)
        elif c == mav.MAV_CMD_MISSION_START:
            self._ack(msg, ok if self.armed and self.set_mode(AUTO, MISSION) else bad, link)
        elif c == mav.MAV_CMD_SET_MESSAGE_INTERVAL:
            self._ack(msg, ok if self._interval(int(p[0]), p[1]) else bad, link)
        elif c == mav.MAV_CMD_REQUEST_MESSAGE:
            self._ack(msg, ok if self._send_now(int(p[0]), link) else bad, link)
        elif c == mav.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES:
            self._ack(msg, ok, link)
            self._send_now(mav.MAVLINK_MSG_ID_AUTOPILOT_VERSION, link)
        elif c == mav.MAV_CMD_GET_HOME_POSITION:
            self._ack(msg, ok, link)
            self._send_now(mav.MAVLINK_MSG_ID_HOME_POSITION, link)
        elif c == mav.MAV_CMD_DO_SET_HOME:
            here = self.ned_to_global(self.body.pos)
            given = (p5, p6, p7) if p[0] <= 0.5 else here
            if not _on_earth(given[0], given[1]):
                self._ack(msg, bad, link)
                return
            # NaN: that coordinate stays where the vehicle is
            lat, lon, alt = (h if math.isnan(g) else g for g, h in zip(given, here, strict=True))
            self.home = Home(lat, lon, alt)
            self._ack(msg, ok, link)
        else:
            self._ack(msg, mav.MAV_RESULT_UNSUPPORTED, link)

    def _interval(self, msg_id: int, interval_us: float) -> bool:
        name = _name_of(msg_id)
        if name is None:
            return False
        if interval_us < 0:
            self.rates[name] = 0.0
        elif interval_us == 0:
            self.rates[name] = RATES.get(name, 0.0)
        else:
            self.rates[name] = 1e6 / interval_us
        self.next_due.setdefault(name, self.clock())
        return True

    def _send_now(self, msg_id: int, link: Any) -> bool:
        name = _name_of(msg_id)
        if name is None:
            return False
        m = self.message(name)
        if m is None:
            return False
        self.send(m, link)
        return True

    def _setpoint_local(self, msg: Any) -> None:
        if not all(math.isfinite(x) for x in (msg.x, msg.y, msg.z, msg.vx, msg.vy, msg.vz)):
            return  # dropped whole, as a corrupt setpoint; offboard times out if none follow
        self.offboard_last = self.clock()
        tm = msg.type_mask
        pos_ignored = tm & 0b111 == 0b111
        vel_ignored = tm & 0b111000 == 0b111000
        if not pos_ignored:
            self.off_pos = np.array([msg.x, msg.y, msg.z])
            self.off_vel = None
        elif not vel_ignored:
            self.off_vel = np.array([msg.vx, msg.vy, msg.vz])
            self.off_pos = None
        self.off_yaw = None if tm & 1024 else msg.yaw

    def _setpoint_global(self, msg: Any) -> None:
        if not (_on_earth(msg.lat_int / 1e7, msg.lon_int / 1e7) and all(
                math.isfinite(x) for x in (msg.alt, msg.vx, msg.vy, msg.vz))):
            return
        self.offboard_last = self.clock()
        tm = msg.type_mask
        if tm & 0b111 != 0b111:
            alt = msg.alt if msg.coordinate_frame in (mav.MAV_FRAME_GLOBAL_INT,
                                                      mav.MAV_FRAME_GLOBAL) \
                else self.home.alt + msg.alt
            self.off_pos = self.global_to_ned(msg.lat_int / 1e7, msg.lon_int / 1e7, alt)
            self.off_vel = None
        else:
            self.off_vel = np.array([msg.vx, msg.vy, msg.vz])
            self.off_pos = None
        self.off_yaw = None if tm & 1024 else msg.yaw

    def status(self, text: str, severity: int = mav.MAV_SEVERITY_WARNING) -> None:
        self.statustext.append(text)
        self.send(mav.MAVLink_statustext_message(severity, text[:50].encode()), None)

    # ---- flight --------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        dt = min(0.2, max(0.0, now - self.last_tick))
        self.last_tick = now
        if dt > 0:
            self._failsafes(now)
            vel_cmd, yaw = self._control(now)
            wind = np.array([self.params["SIM_WIND_N"], self.params["SIM_WIND_E"], 0.0])
            flying = self.armed and self.landed != ON_GROUND
            step(self.body, vel_cmd, yaw, dt, self.limits, self.power, wind, flying,
                 self.params["SIM_COMPUTE_W"])
            self.battery.drain(self.body.power_w, dt)
            self._landing_logic(now)
        self._telemetry(now)

    def _control(self, now: float) -> tuple[np.ndarray, float | None]:
        if not self.armed:
            return np.zeros(3), None
        main = self.mode[0]
        cruise = self.speed or self.params["MPC_XY_CRUISE"]
        if main == OFFBOARD:
            if now - self.offboard_last > self.params["COM_OF_LOSS_T"]:
                self.status("Offboard setpoints lost: holding")
                self.set_mode(AUTO, LOITER)
            elif getattr(self, "off_vel", None) is not None:
                return saturate(self.off_vel, self.limits), getattr(self, "off_yaw", None)
            elif getattr(self, "off_pos", None) is not None:
                return velocity_for(self.body, self.off_pos, self.limits), \
                    getattr(self, "off_yaw", None)
        if self.mode == (AUTO, TAKEOFF):
            assert self.target is not None
            v = velocity_for(self.body, self.target, self.limits)
            v[2] = max(v[2], -self.params["MPC_TKO_SPEED"])
            if abs(self.body.pos[2] - self.target[2]) < 0.3:
                self.mode = (AUTO, LOITER)  # holds at the takeoff altitude, not short of it
            return v, None
        if self.mode == (AUTO, LAND):
            v = velocity_for(self.body, self.target if self.target is not None
                             else self.body.pos, self.limits)
            # PX4 descends at MPC_Z_VEL_MAX_DN down to MPC_LAND_ALT1 (10 m), then slows to
            # MPC_LAND_SPEED for the final approach
            v[2] = self.params["MPC_LAND_SPEED"] if self.rel_alt < 10.0 else \
                self.params["MPC_Z_VEL_MAX_DN"]
            return v, None
        if self.mode == (AUTO, RTL):
            return self._rtl()
        if self.mode == (AUTO, MISSION):
            tgt, land = self.mission.step()
            if land:
                self.set_mode(AUTO, LAND)
                return np.zeros(3), None
            if tgt is not None:
                return velocity_for(self.body, tgt, self.limits, cruise), self._heading(tgt)
        if self.target is None:
            self.hold_here()
        assert self.target is not None
        return velocity_for(self.body, self.target, self.limits, cruise), \
            self._heading(self.target)

    def _heading(self, target: np.ndarray) -> float | None:
        d = target[:2] - self.body.pos[:2]
        return math.atan2(d[1], d[0]) if float(np.hypot(*d)) > 2.0 else None

    def _rtl(self) -> tuple[np.ndarray, float | None]:
        alt = self.params["RTL_RETURN_ALT"]
        home = self.global_to_ned(self.home.lat, self.home.lon, self.home.alt)
        if self.rtl_phase == 0:  # climb to the return altitude
            tgt = np.array([self.body.pos[0], self.body.pos[1], -max(alt, self.rel_alt)])
            if self.rel_alt >= alt - 0.5:
                self.rtl_phase = 1
            return velocity_for(self.body, tgt, self.limits), None
        if self.rtl_phase == 1:  # fly home
            tgt = np.array([home[0], home[1], self.body.pos[2]])
            if float(np.hypot(*(tgt[:2] - self.body.pos[:2]))) < 1.0:
                self.rtl_phase = 2
            return velocity_for(self.body, tgt, self.limits,
                                self.params["MPC_XY_CRUISE"]), self._heading(tgt)
        self.target = np.array([home[0], home[1], max(home[2], 0.0)])
        v = velocity_for(self.body, self.target, self.limits)
        v[2] = self.params["MPC_LAND_SPEED"] if self.rel_alt < 10 else \
            self.limits.z_vel_down
        return v, None

    def _landing_logic(self, now: float) -> None:
        if not self.armed:
            return
        on_ground = self.rel_alt < 0.05 and abs(float(self.body.vel[2])) < 0.1
        if self.landed == TAKING_OFF and self.rel_alt > 0.5:
            self.landed = IN_AIR
        descending = self.mode == (AUTO, LAND) or (self.mode == (AUTO, RTL)
                                                    and self.rtl_phase == 2)
        if self.landed == IN_AIR and descending:
            self.landed = LANDING
        if self.landed in (IN_AIR, LANDING) and on_ground and descending:
            self.landed = ON_GROUND
            self.landed_since = now
        if self.landed == ON_GROUND and self.landed_since is not None and \
                now - self.landed_since > self.params["COM_DISARM_LAND"] and \
                self.mode[0] != OFFBOARD and self.mode != (AUTO, TAKEOFF):
            self.disarm()

    def _failsafes(self, now: float) -> None:
        if not self.armed or self.landed == ON_GROUND:
            return
        p = self.params
        act = int(p["NAV_DLL_ACT"])
        if act and not self.dll_triggered and now - self.gcs_last > p["COM_DL_LOSS_T"]:
            self.dll_triggered = True
            self.status("Data link lost: failsafe")
            self._failsafe_action(act)
        rem = self.battery.remaining
        level = 3 if rem <= p["BAT_EMERGEN_THR"] else 2 if rem <= p["BAT_CRIT_THR"] else \
            1 if rem <= p["BAT_LOW_THR"] else 0
        if level > self.bat_state:
            self.bat_state = level
            self.status(["", "Low battery", "Critical battery: return",
                         "Emergency battery: landing"][level])
            if int(p["COM_LOW_BAT_ACT"]) >= 2 and level >= 2:
                self.set_mode(AUTO, LAND if level == 3 else RTL)
        hor, ver = p["GF_MAX_HOR_DIST"], p["GF_MAX_VER_DIST"]
        out = (hor > 0 and float(np.hypot(*self.body.pos[:2])) > hor) or \
            (ver > 0 and self.rel_alt > ver)
        if out and self.mode != (AUTO, RTL) and self.mode != (AUTO, LAND):
            self.status("Geofence breached")
            self._failsafe_action({1: 0, 2: 1, 3: 2, 4: 3}.get(int(p["GF_ACTION"]), 2))

    def _failsafe_action(self, act: int) -> None:
        if act == 1:
            self.set_mode(AUTO, LOITER)
        elif act == 2:
            self.set_mode(AUTO, RTL)
        elif act == 3:
            self.set_mode(AUTO, LAND)

    # ---- telemetry ----------------------------------------------------------------------------
    def _telemetry(self, now: float) -> None:
        for name, hz in self.rates.items():
            if hz <= 0 or now < self.next_due[name]:
                continue
            self.next_due[name] = max(self.next_due[name] + 1.0 / hz, now)
            m = self.message(name)
            if m is not None:
                self.send(m, None)

    def message(self, name: str) -> Any:
        now_ms = int((self.clock() - self.start) * 1000) & 0xFFFFFFFF
        b = self.body
        lat, lon, alt = self.ned_to_global(b.pos)
        if name == "HEARTBEAT":
            base = mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mav.MAV_MODE_FLAG_STABILIZE_ENABLED \
                | mav.MAV_MODE_FLAG_GUIDED_ENABLED
            if self.armed:
                base |= mav.MAV_MODE_FLAG_SAFETY_ARMED
            custom = (self.mode[0] << 16) | (self.mode[1] << 24)
            state = mav.MAV_STATE_ACTIVE if self.armed else mav.MAV_STATE_STANDBY
            return mav.MAVLink_heartbeat_message(mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_PX4,
                                                 base, custom, state, 3)
        if name == "SYS_STATUS":
            ok = self.battery.remaining > self.params["BAT_CRIT_THR"]
            health = SENSORS if ok else SENSORS & ~mav.MAV_SYS_STATUS_PREARM_CHECK
            return mav.MAVLink_sys_status_message(
                SENSORS, SENSORS, health, 100, int(self.battery.voltage * 1000),
                int(b.power_w / self.battery.voltage * 100), round(self.battery.remaining * 100),
                0, 0, 0, 0, 0, 0)
        if name == "BATTERY_STATUS":
            cells = [int(self.battery.voltage / self.battery.cells * 1000)] * \
                self.battery.cells + [65535] * (10 - self.battery.cells)
            return mav.MAVLink_battery_status_message(
                0, mav.MAV_BATTERY_FUNCTION_ALL, mav.MAV_BATTERY_TYPE_LIPO, 2500, cells,
                int(b.power_w / self.battery.voltage * 100),
                int(self.battery.used_wh / self.battery.voltage * 1000), -1,
                round(self.battery.remaining * 100))
        if name == "GPS_RAW_INT":
            speed = float(np.hypot(b.vel[0], b.vel[1]))
            cog = int(math.degrees(math.atan2(b.vel[1], b.vel[0])) % 360 * 100)
            return mav.MAVLink_gps_raw_int_message(
                int(time.time() * 1e6), 3, int(lat * 1e7), int(lon * 1e7), int(alt * 1000),
                80, 120, int(speed * 100), cog, 12)
        if name == "GLOBAL_POSITION_INT":
            return mav.MAVLink_global_position_int_message(
                now_ms, int(lat * 1e7), int(lon * 1e7), int(alt * 1000),
                int((alt - self.home.alt) * 1000), int(b.vel[0] * 100), int(b.vel[1] * 100),
                int(b.vel[2] * 100), int(math.degrees(b.yaw) % 360 * 100))
        if name == "LOCAL_POSITION_NED":
            return mav.MAVLink_local_position_ned_message(
                now_ms, *map(float, b.pos), *map(float, b.vel))
        if name == "ATTITUDE":
            return mav.MAVLink_attitude_message(now_ms, 0.0, 0.0, _wrap(b.yaw), 0.0, 0.0, 0.0)
        if name == "EXTENDED_SYS_STATE":
            return mav.MAVLink_extended_sys_state_message(mav.MAV_VTOL_STATE_UNDEFINED,
                                                          self.landed)
        if name == "HOME_POSITION":
            h = self.home
            return mav.MAVLink_home_position_message(
                int(h.lat * 1e7), int(h.lon * 1e7), int(h.alt * 1000), 0.0, 0.0, 0.0,
                [1.0, 0.0, 0.0, 0.0], 0.0, 0.0, 0.0, int(time.time() * 1e6))
        if name == "AUTOPILOT_VERSION":
            return mav.MAVLink_autopilot_version_message(
                CAPABILITIES, PX4_VERSION, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0x26AC, 0x0011,
                self.sysid)
        if name == "MISSION_CURRENT":
            return self.mission.current_message() if self.mission.items else None
        return None


def _on_earth(lat: float, lon: float) -> bool:
    """A latitude/longitude a vehicle can fly to; NaN (MAVLink's "keep current") passes."""
    return not (abs(lat) > 90.0 or abs(lon) > 180.0 or math.isinf(lat) or math.isinf(lon))


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


_NAMES: dict[int, str] = {}


def _name_of(msg_id: int) -> str | None:
    if not _NAMES:
        for mid, cls in mav.mavlink_map.items():
            _NAMES[mid] = cls.msgname
    return _NAMES.get(msg_id)
