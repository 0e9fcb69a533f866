"""The MAVLink mission protocol (upload, download, clear, set current) and mission execution
as PX4 does it: waypoints reached within NAV_ACC_RAD, MISSION_ITEM_REACHED per item,
MISSION_CURRENT with the total and state, takeoff/land/RTL/change-speed items, hold at the
last waypoint when the mission ends."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from pymavlink.dialects.v20 import ardupilotmega as mav

from firmware.dynamics import Body
from firmware.params import ParamTable

RELATIVE_FRAMES = (mav.MAV_FRAME_GLOBAL_RELATIVE_ALT, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT)
NO_MISSION, NOT_STARTED, ACTIVE, COMPLETE = 1, 2, 3, 5  # MAVLink MISSION_STATE


class MissionVehicle(Protocol):
    """What the mission server uses of the vehicle that owns it (firmware.vehicle.Vehicle).
    Declared here, so the mission protocol depends on this interface and not on the vehicle
    module, which imports the mission server: one direction, no import cycle."""

    send: Callable[[Any, Any], None]
    mode: tuple[int, int]
    speed: float | None
    armed: bool
    landed: int
    body: Body
    params: ParamTable
    home: Any  # firmware.vehicle.Home: lat, lon, alt (AMSL)

    @property
    def rel_alt(self) -> float: ...
    def set_mode(self, main: int, sub: int = 0) -> bool: ...
    def ned_to_global(self, ned: np.ndarray) -> tuple[float, float, float]: ...
    def global_to_ned(self, lat: float, lon: float, alt_amsl: float) -> np.ndarray: ...


class MissionServer:
    def __init__(self, vehicle: MissionVehicle) -> None:
        self.v = vehicle
        self.items: list[Any] = []
        self.current = 0
        self.incoming: list[Any] = []
        self.expected = 0
        self.count = 0
        self.finished = False

    # ---- protocol ------------------------------------------------------------------------------
    def handle(self, msg: Any, link: Any) -> None:
        kind = msg.get_type()
        mtype = getattr(msg, "mission_type", 0)
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        if mtype != mav.MAV_MISSION_TYPE_MISSION:
            # no geofence or rally points here: empty lists, refused uploads
            if kind == "MISSION_REQUEST_LIST":
                self.v.send(mav.MAVLink_mission_count_message(*src, 0, mtype), link)
            elif kind == "MISSION_COUNT":
                result = mav.MAV_MISSION_ACCEPTED if msg.count == 0 else \
                    mav.MAV_MISSION_UNSUPPORTED
                self.v.send(mav.MAVLink_mission_ack_message(*src, result, mtype), link)
            elif kind == "MISSION_CLEAR_ALL":
                self.v.send(mav.MAVLink_mission_ack_message(*src, mav.MAV_MISSION_ACCEPTED,
                                                            mtype), link)
            return
        if kind == "MISSION_COUNT":
            self.count, self.expected, self.incoming = msg.count, 0, []
            if msg.count == 0:
                self._store([])
                self.v.send(mav.MAVLink_mission_ack_message(*src, mav.MAV_MISSION_ACCEPTED),
                            link)
            else:
                self.v.send(mav.MAVLink_mission_request_int_message(*src, 0), link)
        elif kind in ("MISSION_ITEM_INT", "MISSION_ITEM"):
            if msg.seq != self.expected:
                self.v.send(mav.MAVLink_mission_request_int_message(*src, self.expected), link)
                return
            item = _as_int(msg)
            if not _valid(item):
                # MAVLink's mission protocol: a bad item ends the upload with an error ack
                self.count, self.expected, self.incoming = 0, 0, []
                self.v.send(mav.MAVLink_mission_ack_message(*src, mav.MAV_MISSION_INVALID),
                            link)
                return
            self.incoming.append(item)
            self.expected += 1
            if self.expected < self.count:
                self.v.send(mav.MAVLink_mission_request_int_message(*src, self.expected), link)
            else:
                self._store(self.incoming)
                self.v.send(mav.MAVLink_mission_ack_message(*src, mav.MAV_MISSION_ACCEPTED),
                            link)
        elif kind == "MISSION_REQUEST_LIST":
            self.v.send(mav.MAVLink_mission_count_message(*src, len(self.items)), link)
        elif kind in ("MISSION_REQUEST_INT", "MISSION_REQUEST"):
            if msg.seq < len(self.items):
                it = self.items[msg.seq]
                self.v.send(mav.MAVLink_mission_item_int_message(
                    *src, it.seq, it.frame, it.command, int(it.seq == self.current),
                    it.autocontinue, it.param1, it.param2, it.param3, it.param4, it.x, it.y,
                    it.z), link)
        elif kind == "MISSION_CLEAR_ALL":
            self._store([])
            self.v.send(mav.MAVLink_mission_ack_message(*src, mav.MAV_MISSION_ACCEPTED), link)
        elif kind == "MISSION_SET_CURRENT":
            if msg.seq < len(self.items):
                self.current, self.finished = msg.seq, False
            self.v.send(self.current_message(), link)

    def _store(self, items: list[Any]) -> None:
        self.items = items
        self.current = 0
        self.finished = False

    def current_message(self) -> Any:
        state = NO_MISSION if not self.items else COMPLETE if self.finished else \
            ACTIVE if self.v.mode == (4, 4) else NOT_STARTED
        seq = min(self.current, max(0, len(self.items) - 1)) if not self.finished \
            else len(self.items)
        return mav.MAVLink_mission_current_message(seq, len(self.items), state)

    # ---- execution -----------------------------------------------------------------------------
    def resume(self) -> None:
        if self.finished:
            self.current, self.finished = 0, False

    def step(self) -> tuple[np.ndarray | None, bool]:
        """(position target, land now?) for the current item; advances on arrival."""
        v = self.v
        while self.current < len(self.items):
            it = self.items[self.current]
            c = it.command
            if c == mav.MAV_CMD_DO_CHANGE_SPEED:
                v.speed = it.param2 if it.param2 > 0 else None
                self._reached()
                continue
            if c == mav.MAV_CMD_NAV_RETURN_TO_LAUNCH:
                self._reached()
                v.set_mode(4, 5)
                return None, False
            if c not in (mav.MAV_CMD_NAV_WAYPOINT, mav.MAV_CMD_NAV_TAKEOFF,
                         mav.MAV_CMD_NAV_LAND, mav.MAV_CMD_NAV_LOITER_UNLIM):
                self._reached()  # unsupported items are skipped, as PX4 does with DO_*
                continue
            tgt = self._target(it)
            if c == mav.MAV_CMD_NAV_TAKEOFF and not v.armed:
                return None, False
            if c == mav.MAV_CMD_NAV_TAKEOFF and v.landed == 1:
                v.landed = 3  # TAKING_OFF: the mission climbs
            if c == mav.MAV_CMD_NAV_LAND:
                if float(np.hypot(*(tgt[:2] - v.body.pos[:2]))) < v.params["NAV_ACC_RAD"]:
                    self._reached()
                    return None, True
                tgt[2] = v.body.pos[2]
                return tgt, False
            horiz = float(np.hypot(*(tgt[:2] - v.body.pos[:2])))
            if horiz < v.params["NAV_ACC_RAD"] and abs(tgt[2] - v.body.pos[2]) < 1.0:
                if c == mav.MAV_CMD_NAV_LOITER_UNLIM:
                    return tgt, False
                self._reached()
                continue
            return tgt, False
        if not self.finished and self.items:
            self.finished = True
            v.send(self.current_message(), None)
            v.set_mode(4, 3)  # mission complete: hold
        return None, False

    def _target(self, it: Any) -> np.ndarray:
        v = self.v
        lat, lon = it.x / 1e7, it.y / 1e7
        cur_lat, cur_lon, _ = v.ned_to_global(v.body.pos)
        if it.x == 0 and it.y == 0:
            lat, lon = cur_lat, cur_lon
        alt = v.home.alt + it.z if it.frame in RELATIVE_FRAMES else it.z
        if math.isnan(alt):
            alt = v.home.alt + v.rel_alt
        return v.global_to_ned(lat, lon, alt)

    def _reached(self) -> None:
        self.v.send(mav.MAVLink_mission_item_reached_message(self.current), None)
        self.current += 1
        self.v.send(self.current_message(), None)


def _valid(it: Any) -> bool:
    """Parameters finite or NaN (unused), a position on Earth (0, 0 means "here")."""
    if any(math.isinf(x) for x in (it.param1, it.param2, it.param3, it.param4, it.z)):
        return False
    return abs(it.x) <= 900_000_000 and abs(it.y) <= 1_800_000_000


def _as_int(msg: Any) -> Any:
    if msg.get_type() == "MISSION_ITEM_INT":
        return msg
    return mav.MAVLink_mission_item_int_message(
        msg.target_system, msg.target_component, msg.seq, msg.frame, msg.command, msg.current,
        msg.autocontinue, msg.param1, msg.param2, msg.param3, msg.param4, int(msg.x * 1e7),
        int(msg.y * 1e7), msg.z, getattr(msg, "mission_type", 0))
