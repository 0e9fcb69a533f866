"""The ArduCopter flavour: its ArduCopter behaviour on a simulated clock (no sockets), and
DroneKit (dronekit2) flying it over UDP on loopback the way DroneKit scripts fly ArduCopter
SITL: connect, GUIDED, arm, simple_takeoff, simple_goto, parameters, LAND."""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest
from pymavlink.dialects.v20 import ardupilotmega as mav
from vehicle_sim import FakeClockVehicle

from firmware import sitl
from firmware.ardupilot import AC_DEFAULTS, COPTER_MODES, ArduCopterVehicle, Mode
from firmware.params import INT32, REAL32
from firmware.sitl import PX4_HOME, Fleet
from firmware.vehicle import Home

pytestmark = pytest.mark.unit

HOME = Home(*PX4_HOME)
M_PER_DEG = math.pi / 180 * 6378137.0


class Copter(FakeClockVehicle):
    """An ArduCopterVehicle on a fake clock, its outgoing messages captured."""

    vehicle_cls = ArduCopterVehicle
    home = HOME

    def mode(self, number: int) -> int:
        return self.command(mav.MAV_CMD_DO_SET_MODE, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                            number)

    def heartbeat(self) -> Any:
        return self.v.message("HEARTBEAT")

    def takeoff(self, alt: float = 10.0) -> None:
        assert self.mode(Mode.GUIDED) == mav.MAV_RESULT_ACCEPTED
        assert self.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1) == mav.MAV_RESULT_ACCEPTED
        assert self.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, alt) == \
            mav.MAV_RESULT_ACCEPTED
        self.run_until(lambda: self.v.alt_above_home > alt - 0.3, 20)
        self.run(1)


def north_of_home(metres: float) -> float:
    return HOME.lat + metres / M_PER_DEG


# ---- socket-free behaviour ---------------------------------------------------------------------
def test_heartbeat_encodes_arducopter_modes() -> None:
    c = Copter()
    hb = c.heartbeat()
    assert (hb.type, hb.autopilot) == (mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_ARDUPILOTMEGA)
    assert hb.custom_mode == Mode.STABILIZE and hb.system_status == mav.MAV_STATE_STANDBY
    assert hb.base_mode == (mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
                            | mav.MAV_MODE_FLAG_STABILIZE_ENABLED
                            | mav.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED)  # 81, as ArduCopter
    wire = mav.MAVLink(None, srcSystem=1, srcComponent=1)
    again = mav.MAVLink(None).decode(bytearray(hb.pack(wire)))
    assert again.custom_mode == 0 and again.autopilot == mav.MAV_AUTOPILOT_ARDUPILOTMEGA
    # the mode numbers are ArduCopter's, as pymavlink (and so DroneKit) names them
    from pymavlink import mavutil
    acm = mavutil.mode_mapping_bynumber(mav.MAV_TYPE_QUADROTOR)
    assert all(acm[m.value] == m.name for m in Mode)
    assert all(acm[n] == name for n, name in COPTER_MODES.items())
    # armed in a position-controlled mode: SAFETY_ARMED and GUIDED_ENABLED (217)
    c.takeoff(5)
    hb = c.heartbeat()
    assert hb.custom_mode == Mode.GUIDED and hb.base_mode == 217
    assert hb.system_status == mav.MAV_STATE_ACTIVE


def test_mode_changes_as_arducopter_answers_them() -> None:
    c = Copter()
    assert c.mode(Mode.GUIDED) == mav.MAV_RESULT_ACCEPTED
    assert c.heartbeat().custom_mode == Mode.GUIDED
    c.out.clear()
    c.send(mav.MAVLink_set_mode_message(1, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, Mode.LOITER))
    ack = c.sent("COMMAND_ACK")[0]  # ArduPilot acks SET_MODE with "command" 11
    assert (ack.command, ack.result) == (mav.MAVLINK_MSG_ID_SET_MODE, mav.MAV_RESULT_ACCEPTED)
    assert c.heartbeat().custom_mode == Mode.LOITER
    assert c.command(mav.MAV_CMD_DO_SET_MODE, 0, 4) == mav.MAV_RESULT_DENIED  # not custom
    assert c.mode(99) == mav.MAV_RESULT_FAILED
    assert c.mode(14) == mav.MAV_RESULT_FAILED  # FLIP: not simulated
    assert c.mode(Mode.AUTO) == mav.MAV_RESULT_FAILED  # no mission
    assert "No such mode 99" in c.v.statustext
    assert c.command(mav.MAV_CMD_NAV_RETURN_TO_LAUNCH) == mav.MAV_RESULT_ACCEPTED
    assert c.heartbeat().custom_mode == Mode.RTL
    assert c.command(mav.MAV_CMD_NAV_LAND) == mav.MAV_RESULT_ACCEPTED
    assert c.heartbeat().custom_mode == Mode.LAND
    assert c.v.mode_name == "LAND"


def test_arming_takeoff_and_auto_disarm() -> None:
    c = Copter()
    arm = mav.MAV_CMD_COMPONENT_ARM_DISARM
    for mode in (Mode.LAND, Mode.RTL, Mode.BRAKE):
        assert c.mode(mode) == mav.MAV_RESULT_ACCEPTED
        assert c.command(arm, 1) == mav.MAV_RESULT_FAILED
    assert "Arm: Mode not armable" in c.v.statustext
    assert c.mode(Mode.STABILIZE) == mav.MAV_RESULT_ACCEPTED
    assert c.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10) == mav.MAV_RESULT_FAILED
    assert c.command(arm, 1) == mav.MAV_RESULT_ACCEPTED
    # armed, but takeoff only in GUIDED/LOITER/POSHOLD
    assert c.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10) == mav.MAV_RESULT_FAILED
    # left on the ground without a takeoff: disarmed after DISARM_DELAY, mode kept
    c.run(AC_DEFAULTS["DISARM_DELAY"][0] - 1)
    assert c.v.armed
    c.run(2)
    assert not c.v.armed and c.heartbeat().custom_mode == Mode.STABILIZE
    # param7 is metres above home, not AMSL; GUIDED stays GUIDED through the takeoff
    c.takeoff(10)
    assert abs(c.v.alt_above_home - 10) < 0.3 and c.heartbeat().custom_mode == Mode.GUIDED
    assert c.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 20) == mav.MAV_RESULT_FAILED
    assert c.command(arm, 0) == mav.MAV_RESULT_FAILED  # no GCS disarm in flight
    assert c.v.armed
    g = c.v.message("GLOBAL_POSITION_INT")
    assert abs(g.relative_alt / 1000 - 10) < 0.3 and abs(g.alt / 1000 - (HOME.alt + 10)) < 0.3


def test_guided_targets_and_land() -> None:
    c = Copter(LAND_SPEED=100)
    c.takeoff(10)
    c.out.clear()
    c.send(mav.MAVLink_mission_item_message(  # DroneKit's simple_goto
        0, 0, 0, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT, mav.MAV_CMD_NAV_WAYPOINT, 2, 0, 0, 0, 0, 0,
        north_of_home(40), HOME.lon, 15))
    assert c.sent("MISSION_ACK")[0].type == mav.MAV_MISSION_ACCEPTED
    c.run(20)
    assert np.allclose(c.v.body.pos, [40, 0, -15], atol=1.0)
    assert c.v.mission.items and len(c.v.mission.items) == 1  # not stored as a mission item
    # velocity in GUIDED, zeroed after GUID_TIMEOUT
    c.send(mav.MAVLink_set_position_target_local_ned_message(
        0, 1, 1, mav.MAV_FRAME_LOCAL_NED, 0b110111000111, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 0, 0))
    c.run(2)
    assert abs(c.v.body.vel[1] - 2.0) < 0.1
    c.run(5)
    assert abs(c.v.body.vel[1]) < 0.05 and 5 < c.v.body.pos[1] < 12
    # a global position target, relative altitude
    c.send(mav.MAVLink_set_position_target_global_int_message(
        0, 1, 1, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, 0b110111111000,
        round(north_of_home(0) * 1e7), round(HOME.lon * 1e7), 12, 0, 0, 0, 0, 0, 0, 0, 0))
    c.run(25)
    assert np.allclose(c.v.body.pos, [0, 0, -12], atol=0.5)
    # outside GUIDED a guided waypoint is refused
    assert c.mode(Mode.LOITER) == mav.MAV_RESULT_ACCEPTED
    c.out.clear()
    c.send(mav.MAVLink_mission_item_int_message(
        0, 0, 0, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, mav.MAV_CMD_NAV_WAYPOINT, 2, 0, 0, 0,
        0, 0, round(north_of_home(30) * 1e7), round(HOME.lon * 1e7), 12))
    assert c.sent("MISSION_ACK")[0].type == mav.MAV_MISSION_ERROR
    # LAND: WPNAV_SPEED_DN above LAND_ALT_LOW (10 m), LAND_SPEED below; disarms on touchdown
    assert c.mode(Mode.LAND) == mav.MAV_RESULT_ACCEPTED
    c.run(1.5)
    assert abs(c.v.body.vel[2] - 1.5) < 0.05
    c.run_until(lambda: c.v.rel_alt < 5, 10)
    assert abs(c.v.body.vel[2] - 1.0) < 0.05
    c.run_until(lambda: not c.v.armed, 10)
    assert c.heartbeat().custom_mode == Mode.LAND


def test_parameters_are_c_cast_and_drive_the_simulation() -> None:
    c = Copter()
    c.send(mav.MAVLink_param_request_list_message(1, 1))
    values = c.sent("PARAM_VALUE")
    names = [m.param_id for m in values]
    assert len(values) >= 40 and len(set(names)) == len(names)
    assert [m.param_index for m in values] == list(range(len(values)))
    assert {m.param_count for m in values} == {len(values)}
    got = {m.param_id: m for m in values}
    for name in ("SYSID_THISMAV", "WPNAV_SPEED", "WPNAV_SPEED_UP", "WPNAV_SPEED_DN",
                 "PILOT_TKOFF_ALT", "RTL_ALT", "LAND_SPEED", "FS_GCS_ENABLE", "BATT_CAPACITY",
                 "FENCE_ENABLE", "FENCE_RADIUS", "FENCE_ALT_MAX", "ARMING_CHECK",
                 "DISARM_DELAY", "FRAME_CLASS"):
        assert name in got
    # integers travel as their value (C cast), not their bytes
    assert (got["RTL_ALT"].param_value, got["RTL_ALT"].param_type) == (1500.0, INT32)
    assert got["DISARM_DELAY"].param_value == 10.0
    assert got["WPNAV_SPEED"].param_type == REAL32
    assert got["BATT_CAPACITY"].param_value == 5000.0  # the simulated 74 Wh 4S pack
    caps = c.v.message("AUTOPILOT_VERSION").capabilities
    assert not caps & mav.MAV_PROTOCOL_CAPABILITY_PARAM_ENCODE_BYTEWISE
    assert caps & mav.MAV_PROTOCOL_CAPABILITY_PARAM_ENCODE_C_CAST
    c.out.clear()
    c.send(mav.MAVLink_param_set_message(1, 1, b"WPNAV_SPEED", 500.0, REAL32))
    (echo,) = c.sent("PARAM_VALUE")
    assert (echo.param_value, echo.param_index) == (500.0, 65535)
    assert c.out[0][1] is None  # to every link, as AP_Param::notify
    assert c.v.params["MPC_XY_CRUISE"] == 5.0
    c.send(mav.MAVLink_param_set_message(1, 1, b"DISARM_DELAY", 4.9999, REAL32))
    assert c.v.ap_params["DISARM_DELAY"] == 5.0
    c.send(mav.MAVLink_param_set_message(1, 1, b"DISARM_DELAY", 300.0, REAL32))
    assert c.v.ap_params["DISARM_DELAY"] == 127.0  # clamped to the AP_Int8
    c.out.clear()
    c.send(mav.MAVLink_param_set_message(1, 1, b"MPC_XY_CRUISE", 1.0, REAL32))
    assert not c.out  # PX4 names do not exist here
    c.send(mav.MAVLink_param_request_read_message(1, 1, b"RTL_ALT", -1))
    assert c.sent("PARAM_VALUE")[0].param_index == names.index("RTL_ALT")
    with pytest.raises(KeyError):
        Copter(MPC_XY_CRUISE=3.0)


def test_mission_item_zero_is_home_and_auto_flies() -> None:
    c = Copter()
    c.send(mav.MAVLink_mission_request_list_message(1, 1))
    assert c.sent("MISSION_COUNT")[0].count == 1  # home only
    c.out.clear()
    c.send(mav.MAVLink_mission_request_message(1, 1, 0))  # DroneKit's download
    (home,) = c.sent("MISSION_ITEM")
    assert abs(home.x - HOME.lat) < 1e-5 and abs(home.y - HOME.lon) < 1e-5
    assert home.z == HOME.alt
    assert "got MISSION_REQUEST; use MISSION_REQUEST_INT!" in c.v.statustext
    # upload: item 0 is ignored, requests are MISSION_REQUEST (which DroneKit answers)
    items = [
        mav.MAVLink_mission_item_int_message(1, 1, 0, 0, 16, 0, 1, 0, 0, 0, 0, 1, 2, 3),
        mav.MAVLink_mission_item_int_message(1, 1, 1, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                             mav.MAV_CMD_NAV_TAKEOFF, 0, 1, 0, 0, 0, 0, 0, 0,
                                             8),
        mav.MAVLink_mission_item_int_message(1, 1, 2, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                             mav.MAV_CMD_NAV_WAYPOINT, 0, 1, 0, 0, 0, 0,
                                             round(north_of_home(25) * 1e7),
                                             round(HOME.lon * 1e7), 8),
        mav.MAVLink_mission_item_int_message(1, 1, 3, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                             mav.MAV_CMD_NAV_LAND, 0, 1, 0, 0, 0, 0, 0, 0, 0),
    ]
    c.out.clear()
    c.send(mav.MAVLink_mission_count_message(1, 1, len(items)))
    for it in items:
        (req,) = c.sent("MISSION_REQUEST")
        assert req.seq == it.seq and not c.sent("MISSION_REQUEST_INT")
        c.out.clear()
        c.send(it)
    assert c.sent("MISSION_ACK")[0].type == mav.MAV_MISSION_ACCEPTED
    c.out.clear()
    c.send(mav.MAVLink_mission_request_int_message(1, 1, 0))
    assert c.sent("MISSION_ITEM_INT")[0].x == round(HOME.lat * 1e7)  # still home
    assert c.v.message("MISSION_CURRENT").total == 3  # home excluded
    # AUTO: refused armed on the ground without a takeoff first; this one has one
    assert c.mode(Mode.GUIDED) == mav.MAV_RESULT_ACCEPTED
    assert c.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1) == mav.MAV_RESULT_ACCEPTED
    c.out.clear()
    assert c.command(mav.MAV_CMD_MISSION_START) == mav.MAV_RESULT_ACCEPTED
    c.run_until(lambda: not c.v.armed, 60)
    reached = [m.seq for m in c.sent("MISSION_ITEM_REACHED")]
    assert reached[:2] == [1, 2]
    assert abs(c.v.body.pos[0] - 25) < 2.5  # within WPNAV_RADIUS, then LAND where it is
    assert c.heartbeat().custom_mode == Mode.AUTO  # the mission's LAND ran inside AUTO


def test_gcs_failsafe_rtl_lands_at_home() -> None:
    c = Copter(FS_GCS_ENABLE=1, RTL_LOIT_TIME=1000, LAND_SPEED=150)
    c.takeoff(8)
    c.send(mav.MAVLink_mission_item_message(
        0, 0, 0, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT, mav.MAV_CMD_NAV_WAYPOINT, 2, 0, 0, 0, 0, 0,
        north_of_home(30), HOME.lon, 8))
    c.run(15)
    c.run(4, heartbeat=False)
    assert c.heartbeat().custom_mode == Mode.GUIDED
    c.run(2, heartbeat=False)  # FS_GCS_TIMEOUT 5 s
    assert c.heartbeat().custom_mode == Mode.RTL
    assert c.heartbeat().system_status == mav.MAV_STATE_CRITICAL
    peak = 0.0
    while c.v.armed:
        assert c.t < 120
        c.run(0.1, heartbeat=False)
        peak = max(peak, c.v.alt_above_home)
    assert 14.5 < peak < 15.5  # RTL_ALT 1500 cm
    assert np.hypot(*c.v.body.pos[:2]) < 1.0 and c.heartbeat().custom_mode == Mode.RTL


def test_fleet_flavours() -> None:
    with pytest.raises(ValueError, match="unknown flavour"):
        Fleet(1, flavour="ardupilane", gcs=False)
    with pytest.raises(SystemExit) as exc:
        sitl.main(["--flavour", "ardupilane", "--duration", "0"])
    assert exc.value.code == 2
    assert sitl.main(["--flavour", "arducopter", "--param", "NOPE=1", "--duration", "0"]) == 2


# ---- DroneKit over UDP -------------------------------------------------------------------------
def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dronekit_flies_the_arducopter_flavour() -> None:
    dronekit = pytest.importorskip("dronekit", reason="dronekit2 is not installed")
    api_port = _free_udp_port()
    fleet = Fleet(1, api_port=api_port, local_port=_free_udp_port(), bind_host="127.0.0.1",
                  gcs=False, flavour="arducopter",
                  params={"WPNAV_SPEED_UP": 500, "WPNAV_ACCEL": 500, "LAND_SPEED": 200})
    runner = threading.Thread(target=fleet.run, args=(90.0,), daemon=True)
    runner.start()
    vehicle = None
    t0 = time.monotonic()

    def wait(cond: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            time.sleep(0.05)

    try:
        # the vehicle sends to api_host:api_port, so the client listens there
        vehicle = dronekit.connect(f"udpin:127.0.0.1:{api_port}", wait_ready=True, timeout=20)
        assert vehicle.mode.name == "STABILIZE"
        assert vehicle.parameters["FRAME_CLASS"] == 1.0
        vehicle.wait_for_armable(timeout=10)
        vehicle.wait_ready("autopilot_version", timeout=10)
        assert vehicle.version.autopilot_type == mav.MAV_AUTOPILOT_ARDUPILOTMEGA
        assert vehicle.version.major == 4

        # home the ArduPilot way: item 0 of the downloaded mission; an upload round-trips
        cmds = vehicle.commands
        cmds.download()
        cmds.wait_ready(timeout=10)
        home = vehicle.home_location
        assert home is not None and abs(home.lat - HOME.lat) < 1e-5 and home.alt == HOME.alt
        cmds.clear()
        cmds.add(dronekit.Command(0, 0, 0, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT,
                                  mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 0, 0, 10))
        cmds.add(dronekit.Command(0, 0, 0, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT,
                                  mav.MAV_CMD_NAV_WAYPOINT, 0, 0, 0, 0, 0, 0,
                                  north_of_home(20), HOME.lon, 10))
        cmds.upload(timeout=10)
        cmds.download()
        cmds.wait_ready(timeout=10)
        assert cmds.count == 2 and cmds[1].command == mav.MAV_CMD_NAV_WAYPOINT

        vehicle.wait_for_mode("GUIDED", timeout=5)
        vehicle.arm(timeout=5)
        vehicle.simple_takeoff(10)
        wait(lambda: vehicle.location.global_relative_frame.alt >= 9.5, 15, "takeoff")
        assert vehicle.mode.name == "GUIDED"

        assert vehicle.parameters["WPNAV_SPEED"] == 1000.0
        vehicle.parameters["WPNAV_SPEED"] = 1500  # 15 m/s for the goto
        assert vehicle.parameters["WPNAV_SPEED"] == 1500.0
        target = dronekit.LocationGlobalRelative(north_of_home(50), HOME.lon, 10)
        vehicle.simple_goto(target)
        fastest = 0.0

        def arrived() -> bool:
            nonlocal fastest
            here = vehicle.location.global_relative_frame
            fastest = max(fastest, vehicle.groundspeed or 0.0)
            north = (here.lat - target.lat) * M_PER_DEG
            east = (here.lon - target.lon) * M_PER_DEG * math.cos(math.radians(here.lat))
            return math.hypot(north, east) < 3.0 and abs(here.alt - 10) < 1.0

        wait(arrived, 25, "the goto")
        assert fastest > 11.0  # WPNAV_SPEED above its 10 m/s default took effect

        vehicle.mode = dronekit.VehicleMode("LAND")
        wait(lambda: not vehicle.armed, 20, "landing and auto-disarm")
        assert vehicle.mode.name == "LAND"
        assert vehicle.location.global_relative_frame.alt < 0.2
    finally:
        if vehicle is not None:
            vehicle.close()
        fleet.stopping = True
        runner.join(timeout=5)
        fleet.close()
    assert not fleet.errors
    assert time.monotonic() - t0 < 60
