"""The built-in PX4-flavour autopilot: flight logic and failsafes on a simulated clock (no
sockets), and MAVSDK 4.x flying it over UDP on loopback through controllers/fleet.py."""

from __future__ import annotations

import asyncio
import math
import struct
import threading
from typing import Any

import numpy as np
import pytest
from pymavlink.dialects.v20 import ardupilotmega as mav
from vehicle_sim import FakeClockVehicle

from firmware.dynamics import Battery, PowerModel
from firmware.params import INT32, REAL32
from firmware.sitl import Fleet
from firmware.vehicle import AUTO, LAND, LOITER, OFFBOARD, RTL, Home

pytestmark = pytest.mark.unit

HOME = Home(47.397742, 8.545594, 488.0)


class Sim(FakeClockVehicle):
    """A PX4-flavour vehicle on a fake clock, its outgoing messages captured."""

    home = HOME


# --- dynamics -----------------------------------------------------------------------------------

def test_rotary_wing_power_model():
    pm = PowerModel()
    assert pm.propulsion_w(0.0) == pytest.approx(79.86 + 88.63, abs=0.01)  # Zeng: hover
    curve = [pm.propulsion_w(v) for v in range(0, 31)]
    best = int(np.argmin(curve))
    assert 8 <= best <= 14 and curve[best] < curve[0]  # the classic bathtub, minimum ~10 m/s
    assert curve[30] > curve[0]
    assert pm.propulsion_w(0.0, climb_rate=2.0) > pm.propulsion_w(0.0)


def test_battery_drains_and_voltage_follows():
    b = Battery(capacity_wh=10.0)
    assert b.voltage == pytest.approx(16.8)
    b.drain(100.0, 180.0)  # 5 Wh
    assert b.remaining == pytest.approx(0.5)
    assert 14.0 < b.voltage < 16.8


# --- flight logic -----------------------------------------------------------------------------

def test_heartbeat_is_px4_with_custom_mode():
    s = Sim()
    hb = s.v.message("HEARTBEAT")
    assert hb.autopilot == mav.MAV_AUTOPILOT_PX4 and hb.type == mav.MAV_TYPE_QUADROTOR
    assert hb.custom_mode == (AUTO << 16) | (LOITER << 24)
    assert not hb.base_mode & mav.MAV_MODE_FLAG_SAFETY_ARMED


def test_takeoff_hold_reposition_land_and_auto_disarm():
    s = Sim()
    assert s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, math.nan) == \
        mav.MAV_RESULT_DENIED  # not armed
    assert s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1) == mav.MAV_RESULT_ACCEPTED
    assert s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, math.nan) == \
        mav.MAV_RESULT_ACCEPTED
    s.run(8)
    assert s.v.mode == (AUTO, LOITER) and s.v.rel_alt == pytest.approx(2.5, abs=0.1)
    lat, lon = HOME.lat + 0.0005, HOME.lon  # ~55.6 m north
    assert s.command(mav.MAV_CMD_DO_REPOSITION, -1, 0, 0, 0, lat, lon, HOME.alt + 20) == \
        mav.MAV_RESULT_ACCEPTED
    s.run(30)
    assert s.v.body.pos[0] == pytest.approx(55.6, abs=1.0)
    assert s.v.rel_alt == pytest.approx(20, abs=0.5)
    speeds = []
    assert s.command(mav.MAV_CMD_NAV_LAND) == mav.MAV_RESULT_ACCEPTED
    for _ in range(40):
        s.run(1)
        speeds.append(float(s.v.body.vel[2]))  # descent rate, m/s (NED: down > 0)
        if not s.v.armed:
            break
    assert not s.v.armed and s.v.rel_alt < 0.05  # landed, then disarmed itself
    assert max(speeds[:5]) == pytest.approx(1.5, abs=0.05)  # MPC_Z_VEL_MAX_DN above 10 m
    assert sorted(speeds)[len(speeds) // 2] == pytest.approx(0.7, abs=0.05)  # then landing


def test_rtl_climbs_returns_lands():
    s = Sim(RTL_RETURN_ALT=15.0, MPC_XY_CRUISE=10.0)
    s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, HOME.alt + 5)
    s.run(6)
    s.v.reposition(HOME.lat, HOME.lon + 0.0013, math.nan)  # ~98 m east
    s.run(25)
    assert s.command(mav.MAV_CMD_NAV_RETURN_TO_LAUNCH) == mav.MAV_RESULT_ACCEPTED
    peak = 0.0
    for _ in range(90):
        s.run(1)
        peak = max(peak, s.v.rel_alt)
        if not s.v.armed:
            break
    assert peak == pytest.approx(15.0, abs=0.6)
    assert not s.v.armed and float(np.hypot(*s.v.body.pos[:2])) < 1.5


def test_offboard_needs_setpoints_and_falls_back_to_hold():
    s = Sim()
    s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, math.nan)
    s.run(6)
    assert s.command(mav.MAV_CMD_DO_SET_MODE, 1, OFFBOARD, 0) == mav.MAV_RESULT_DENIED
    vel_only = 0b110111000111  # ignore position, acceleration, yaw rate... keep velocity
    for _ in range(40):  # 2 m/s east for 2 s at 20 Hz
        s.send(mav.MAVLink_set_position_target_local_ned_message(
            0, 1, 1, mav.MAV_FRAME_LOCAL_NED, vel_only, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 0, 0))
        if s.v.mode[0] != OFFBOARD:
            assert s.command(mav.MAV_CMD_DO_SET_MODE, 1, OFFBOARD, 0) == \
                mav.MAV_RESULT_ACCEPTED
        s.run(0.05)
    assert s.v.body.vel[1] == pytest.approx(2.0, abs=0.2)
    s.run(2.0)  # setpoints stop: after COM_OF_LOSS_T the vehicle holds
    assert s.v.mode == (AUTO, LOITER)
    s.run(3.0)
    assert abs(s.v.body.vel[1]) < 0.2


def test_data_link_loss_triggers_rtl():
    s = Sim(COM_DL_LOSS_T=3)
    s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, math.nan)
    s.run(5)
    assert s.v.mode == (AUTO, LOITER)
    s.run(2.5, heartbeat=False)
    assert s.v.mode == (AUTO, LOITER)
    s.run(1.0, heartbeat=False)
    assert s.v.mode == (AUTO, RTL)
    assert any("Data link lost" in t for t in s.v.statustext)


def test_battery_failsafes_rtl_then_land():
    s = Sim()
    s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, HOME.alt + 10)
    s.run(8)
    s.v.battery.used_wh = s.v.battery.capacity_wh * 0.935  # 6.5 % left: critical
    s.run(0.1)
    assert s.v.mode == (AUTO, RTL)
    s.v.battery.used_wh = s.v.battery.capacity_wh * 0.96  # 4 %: emergency
    s.run(0.1)
    assert s.v.mode == (AUTO, LAND)
    assert s.v.message("SYS_STATUS").battery_remaining == 4


def test_arming_denied_on_critical_battery():
    s = Sim()
    s.v.battery.used_wh = s.v.battery.capacity_wh * 0.95
    assert s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1) == mav.MAV_RESULT_DENIED
    assert not s.v.message("SYS_STATUS").onboard_control_sensors_health & \
        mav.MAV_SYS_STATUS_PREARM_CHECK


def test_geofence_breach_returns():
    s = Sim(GF_MAX_HOR_DIST=30.0)
    s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, HOME.alt + 5)
    s.run(5)
    s.v.reposition(HOME.lat + 0.001, HOME.lon, math.nan)  # 111 m north
    s.run(20)
    assert s.v.mode == (AUTO, RTL)
    assert float(np.hypot(*s.v.body.pos[:2])) < 45


def test_unknown_command_is_unsupported_and_params_are_bytewise():
    s = Sim()
    assert s.command(31000) == mav.MAV_RESULT_UNSUPPORTED
    s.out.clear()
    s.send(mav.MAVLink_param_request_read_message(1, 1, b"COM_DL_LOSS_T", -1))
    pv = s.sent("PARAM_VALUE")[0]
    assert pv.param_type == INT32
    assert struct.unpack("<i", struct.pack("<f", pv.param_value))[0] == 10
    raw = struct.unpack("<f", struct.pack("<i", 7))[0]
    s.send(mav.MAVLink_param_set_message(1, 1, b"COM_DL_LOSS_T", raw, INT32))
    assert s.v.params["COM_DL_LOSS_T"] == 7
    s.send(mav.MAVLink_param_set_message(1, 1, b"MIS_TAKEOFF_ALT", 12.5, REAL32))
    assert s.v.params["MIS_TAKEOFF_ALT"] == 12.5


def test_mission_upload_and_execution():
    s = Sim(MPC_XY_CRUISE=10.0)
    wps = [(HOME.lat + 0.0003, HOME.lon, 10.0), (HOME.lat + 0.0003, HOME.lon + 0.0004, 10.0)]
    s.out.clear()
    s.send(mav.MAVLink_mission_count_message(1, 1, len(wps)))
    for i, (lat, lon, alt) in enumerate(wps):
        req = s.sent("MISSION_REQUEST_INT")[-1]
        assert req.seq == i
        s.send(mav.MAVLink_mission_item_int_message(
            1, 1, i, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, mav.MAV_CMD_NAV_WAYPOINT, 0, 1,
            0, 2.0, 0, math.nan, int(lat * 1e7), int(lon * 1e7), alt))
    assert s.sent("MISSION_ACK")[-1].type == mav.MAV_MISSION_ACCEPTED
    s.command(mav.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    s.command(mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, HOME.alt + 10)
    s.run(8)
    assert s.command(mav.MAV_CMD_MISSION_START) == mav.MAV_RESULT_ACCEPTED
    s.run(40)
    reached = [m.seq for m in s.sent("MISSION_ITEM_REACHED")]
    assert reached == [0, 1]
    assert s.v.mode == (AUTO, LOITER) and s.v.mission.finished
    assert s.v.body.pos[1] == pytest.approx(30.0, abs=2.5)


def test_fleet_rejects_too_many_vehicles():
    with pytest.raises(ValueError, match=r"1\.\.255"):
        Fleet(10, first_sysid=250)


# --- MAVSDK over UDP on loopback --------------------------------------------------------------

def test_mavsdk_flies_the_px4_flavour():
    from controllers.fleet import Fleet as Client
    from controllers.fleet import offset

    port = 24540
    fleet = Fleet(1, api_port=port, gcs=False, physics_hz=50,
                  params={"MPC_XY_CRUISE": 8.0, "COM_DISARM_LAND": 1.0})
    th = threading.Thread(target=fleet.run, args=(120,), daemon=True)
    th.start()

    async def fly() -> dict[str, Any]:
        client = Client([f"udpin://127.0.0.1:{port}"])
        (d,) = await client.connect(timeout=10)
        try:
            await client.wait_healthy(15)
            await d.takeoff(5.0)
            pos = await d.position()
            lat, lon = offset(pos.latitude_deg, pos.longitude_deg, 30.0, 0.0)
            goto_s = await d.goto(lat, lon, 5.0, within_m=1.5)
            before = await d.position()
            await d.fly_velocity(0.0, 3.0, 0.0, 3.0)  # offboard: 3 m/s east for 3 s
            after = await d.position()
            east = (after.longitude_deg - before.longitude_deg) * math.cos(
                math.radians(after.latitude_deg)) * math.pi / 180 * 6378137.0
            wps = [(*offset(lat, lon, 0.0, 15.0), 6.0), (*offset(lat, lon, -15.0, 15.0), 6.0)]
            await d.run_mission(wps, speed_m_s=6.0)
            await d.land()
            return {"sysid": d.sysid, "goto_s": goto_s, "east_m": east}
        finally:
            await client.close()

    try:
        res = asyncio.run(fly())
    finally:
        fleet.stopping = True
        th.join(timeout=5)
        fleet.close()
    assert res["sysid"] == 1
    assert res["goto_s"] < 20
    # 3 s at 3 m/s, less the 1 s acceleration ramp and the telemetry age at both ends
    assert 5.0 < res["east_m"] < 10.0
    assert not fleet.vehicles[0].armed and fleet.vehicles[0].rel_alt < 0.1
    assert not fleet.errors


# --- the real-PX4 path: relay, detection ----------------------------------------------------

def test_relay_carries_mavlink_both_ways_and_reports_positions(tmp_path):
    """The path real PX4 SITL takes in a scenario (vehicle -> 127.0.0.1:port -> relay ->
    controller), with the built-in vehicle standing in for PX4."""
    import json as _json
    import socket as _socket
    import subprocess
    import sys

    sock_path = tmp_path / "tel.sock"
    rep = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    rep.bind(str(sock_path))
    rep.settimeout(10)
    relay = subprocess.Popen([sys.executable, "-m", "firmware.udprelay", "--listen", "25540",
                              "--to", "127.0.0.1:25541", "--report-unix", str(sock_path)])
    sitl = subprocess.Popen([sys.executable, "-m", "firmware.sitl", "--api-port", "25540",
                             "--gcs-port", "25549", "--duration", "25"])
    try:
        out = subprocess.run([sys.executable, "-m", "firmware.cmdping", "--listen", "25541",
                              "--count", "10"], capture_output=True, text=True, timeout=60)
        res = _json.loads(out.stdout.strip().splitlines()[-1])
        assert res["sysid"] == 1 and res["lost"] == 0 and res["median_ms"] < 50
        pos = _json.loads(rep.recv(4096))
        assert pos["sysid"] == 1 and pos["lat"] == pytest.approx(47.397742, abs=1e-5)
    finally:
        for p in (sitl, relay):
            p.terminate()
            p.wait(timeout=10)
        rep.close()


def test_px4_sitl_flavour_without_px4_is_a_clear_error(monkeypatch):
    from testbed.net.network import preflight
    from testbed.scenario import ScenarioError, parse

    monkeypatch.delenv("SAGIN_PX4_DIR", raising=False)
    sc = parse({"name": "px4", "nodes": {
        "gs": {"kind": "ground_station"},
        "uav": {"kind": "uav", "position": [0, 0, 0],
                "autopilot": {"controller": "gs", "flavour": "px4-sitl"}}},
        "links": [{"name": "c2", "kind": "air-to-ground", "medium": "p2p",
                   "endpoints": ["gs", "uav"], "delay_ms": 5, "rate_mbps": 5}]}, "px4.yaml")
    with pytest.raises(ScenarioError) as info:
        preflight(sc, "px4.yaml")
    p = info.value.problems[0]
    assert p.path == "nodes.uav.autopilot.flavour" and "SAGIN_PX4_DIR" in p.message
