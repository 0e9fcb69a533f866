"""The run's own services against hostile clients: malformed frames, oversize lengths,
slow-loris connections.  The service must not crash, must not grow memory or threads with what a
client sends, must count its refusals, and must keep serving a well-behaved client."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.cpn.sdn.api import MAX_BODY_BYTES, ApiClient, ApiError, ApiServer
from controllers.cpn.sdn.plan import Fabric, LinkGraph, Service, ServiceSpec, route_service
from tests.test_cpn_sdn import ring_links, ring_topology
from tests.test_payload_agent import TOKEN as AGENT_TOKEN
from tests.test_payload_agent import with_agent

pytestmark = pytest.mark.unit


class PlanBackend:
    """The steering app's API view over its real request validation and routing (plan.py);
    what it leaves out is only the OpenFlow barrier wait on live switches."""

    def __init__(self) -> None:
        self.fabric = Fabric.from_dict(ring_topology())
        self.links: LinkGraph = ring_links()
        self.services: dict[str, Service] = {}
        self.lock = threading.Lock()

    def api_topology(self) -> dict[str, Any]:
        return {"switches": sorted(self.fabric.switches)}

    def api_services(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.describe() for s in self.services.values()]

    def api_put_service(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            taken = [s.spec.vip for n, s in self.services.items() if n != name]
            spec = ServiceSpec.from_request(name, body, self.fabric, taken)
            paths, reserved, latency = route_service(
                spec, self.fabric, self.links.graph(self.fabric), self.services.values())
            self.services[name] = Service(spec, len(self.services) + 1, paths, reserved,
                                          latency)
            return self.services[name].describe()

    def api_delete_service(self, name: str) -> dict[str, Any]:
        with self.lock:
            self.services.pop(name)
        return {"name": name, "removed": True}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    path = str(tmp_path_factory.mktemp("api") / "api.sock")
    server = ApiServer(path, PlanBackend(), max_connections=4, request_timeout=0.5)
    server.start()
    yield server
    server.stop()
    assert not os.path.exists(path)


def _raw(path: str, data: bytes, wait: float = 0.3) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(wait + 1.0)
        s.connect(path)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionError):
            return b""
        return out


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_socket_is_the_owners_only(api: ApiServer) -> None:
    assert stat.S_IMODE(os.stat(api.path).st_mode) == 0o600


FRAMES = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda m, u, h, b: f"{m} {u} HTTP/1.1\r\n{h}\r\n".encode() + b,
              st.sampled_from(["GET", "PUT", "DELETE", "POST", "BREW", "G\x00T"]),
              st.sampled_from(["/v1/services/x", "/v1/topology", "/" + "a" * 70000, "*",
                               "/v1/services/", "/v1/services/%00"]),
              st.sampled_from(["", "Content-Length: -1\r\n", "Content-Length: 99999999999\r\n",
                               "Content-Length: nan\r\n", "Content-Length: 5\r\n",
                               f"Content-Length: {MAX_BODY_BYTES + 1}\r\n",
                               "X: " + "y" * 70000 + "\r\n"]),
              st.binary(max_size=256)),
    st.builds(lambda body: (f"PUT /v1/services/s HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
                            "\r\n").encode() + body,
              st.recursive(st.none() | st.booleans() | st.floats() | st.integers() |
                           st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(
                               st.sampled_from(["instance", "port", "bandwidth_mbps", "vip",
                                                "clients", "path", "latency_ms"]), c,
                               max_size=5),
                           max_leaves=12).map(lambda v: json.dumps(v).encode())),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(frame=FRAMES)
def test_malformed_requests_are_refused_and_the_api_keeps_serving(api: ApiServer,
                                                                   frame: bytes) -> None:
    reply = _raw(api.path, frame)
    if reply:
        assert reply.startswith(b"HTTP/1."), reply[:80]
        assert b" 500 " not in reply.split(b"\r\n", 1)[0], reply[:200]
    assert ApiClient(api.path, timeout=5).topology()["switches"] == ["s1", "s2", "s3", "s4"]


def test_slow_loris_and_connection_floods_are_bounded(api: ApiServer) -> None:
    client = ApiClient(api.path, timeout=5)
    rss0, threads0 = _rss_kib(), threading.active_count()
    before = api.refused
    stalled = []
    try:
        for _ in range(40):  # ten times the connection limit, each stalled mid-request
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stalled.append(s)
            with contextlib.suppress(OSError):  # refused: closed already, or the backlog full
                s.connect(api.path)
                s.sendall(b"PUT /v1/services/x HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        assert threading.active_count() <= threads0 + 4  # the limit, not the flood
        # past the request timeout the stalled ones are closed, and a well-behaved client is
        # served again (polled: on a loaded host the server's threads run late)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                assert client.topology()["switches"]
                break
            except (ApiError, OSError):  # 503, reset, or EAGAIN from a full backlog
                assert time.monotonic() < deadline, "never served after the flood"
                time.sleep(0.1)
        after = api.refused
        assert after.get("too many connections", 0) - before.get("too many connections", 0) >= 20
        assert after.get("timeout", 0) - before.get("timeout", 0) >= 1
    finally:
        for s in stalled:
            s.close()
    # a body announced far past the limit is refused without being read
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(api.path)
        s.sendall(b"PUT /v1/services/x HTTP/1.1\r\nContent-Length: 4000000000\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    assert _rss_kib() - rss0 < 50_000
    stats = json.loads(_raw(api.path, b"GET /v1/stats HTTP/1.1\r\n\r\n").split(b"\r\n\r\n", 1)[1])
    assert stats["refused"]["body size"] >= 1


def test_a_valid_service_still_installs(api: ApiServer) -> None:
    out = ApiClient(api.path, timeout=5).put_service("web", instance="e2", port=8000)
    assert out["instance"] == "e2"


# ---- MAVLink: the simulated autopilot's command port ---------------------------------------

F32 = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45, 0.0,
                                 1.0, 4.0, 21196.0, -1.0, 5.0, 33.0, 1e7]),
                st.floats(width=32))
I32 = st.integers(-(2**31), 2**31 - 1)
# takeoff, land, RTL, loiter, reposition, change speed, set mode, arm, mission start,
# message interval, request message, home; then ones the vehicle does not know
CMDS = st.sampled_from([22, 21, 20, 17, 192, 178, 176, 400, 300, 511, 512, 410, 179, 0, 65535])


def _messages() -> st.SearchStrategy[Any]:
    from pymavlink.dialects.v20 import ardupilotmega as mav

    sysid = st.sampled_from([0, 1, 2, 255])
    return st.one_of(
        st.builds(mav.MAVLink_command_long_message, sysid, st.just(1), CMDS, st.just(0),
                  F32, F32, F32, F32, F32, F32, F32),
        st.builds(mav.MAVLink_command_int_message, sysid, st.just(1), st.integers(0, 20),
                  CMDS, st.just(0), st.just(0), F32, F32, F32, F32, I32, I32, F32),
        st.builds(mav.MAVLink_set_position_target_local_ned_message, st.just(0), sysid,
                  st.just(1), st.integers(0, 21), st.integers(0, 65535), F32, F32, F32, F32,
                  F32, F32, F32, F32, F32, F32, F32),
        st.builds(mav.MAVLink_set_position_target_global_int_message, st.just(0), sysid,
                  st.just(1), st.integers(0, 21), st.integers(0, 65535), I32, I32, F32, F32,
                  F32, F32, F32, F32, F32, F32, F32),
        st.builds(mav.MAVLink_set_mode_message, sysid, st.integers(0, 255),
                  st.integers(0, 2**32 - 1)),
        st.builds(mav.MAVLink_param_set_message, sysid, st.just(1),
                  st.sampled_from([b"MPC_XY_VEL_MAX", b"MIS_TAKEOFF_ALT", b"COM_DL_LOSS_T",
                                   b"NAV_DLL_ACT", b"BAT_LOW_THR", b"X"]), F32,
                  st.integers(1, 10)),
        st.builds(mav.MAVLink_param_request_read_message, sysid, st.just(1),
                  st.just(b"MPC_XY_VEL_MAX"), st.integers(-32768, 32767)),
        st.builds(mav.MAVLink_mission_count_message, sysid, st.just(1),
                  st.integers(0, 65535), st.integers(0, 2)),
        st.builds(mav.MAVLink_mission_item_int_message, sysid, st.just(1),
                  st.integers(0, 65535), st.integers(0, 20), CMDS, st.integers(0, 1),
                  st.integers(0, 1), F32, F32, F32, F32, I32, I32, F32, st.integers(0, 2)),
        st.builds(mav.MAVLink_mission_request_int_message, sysid, st.just(1),
                  st.integers(0, 65535), st.integers(0, 2)),
    )


def _vehicle() -> tuple[Any, list[Any], list[float]]:
    from firmware.vehicle import Home, Vehicle, VehicleConfig

    now = [0.0]
    sent: list[Any] = []
    v = Vehicle(VehicleConfig(sysid=1, home=Home(47.397742, 8.545594, 488.0)),
                lambda m, link: sent.append(m), clock=lambda: now[0])
    return v, sent, now


@settings(max_examples=200, deadline=None)
@given(msgs=st.lists(_messages(), min_size=1, max_size=8), noise=st.binary(max_size=300))
def test_mavlink_commands_with_any_values_leave_the_vehicle_sane(msgs: list[Any],
                                                                 noise: bytes) -> None:
    """Every message goes through the wire: packed by a ground station, parsed by the
    vehicle's own parser (with random bytes between frames), then handled; the vehicle flies
    on for a simulated half minute and must keep a finite state and keep answering."""
    from pymavlink.dialects.v20 import ardupilotmega as mav

    v, sent, now = _vehicle()
    gcs = mav.MAVLink(None, srcSystem=255, srcComponent=190)
    rx = mav.MAVLink(None, srcSystem=1, srcComponent=1)
    rx.robust_parsing = True
    arm = mav.MAVLink_command_long_message(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0)
    takeoff = mav.MAVLink_command_long_message(1, 1, 22, 0, 0, 0, 0, 0, 0, 0, 520.0)
    wire = b"".join(m.pack(gcs) for m in (arm, takeoff)) + noise
    wire += b"".join(m.pack(gcs) + noise[:7] for m in msgs)
    for m in rx.parse_buffer(wire) or []:
        if m.get_type() != "BAD_DATA":
            v.handle(m, None)
    for _ in range(150):
        now[0] += 0.2
        v.tick(now[0])
    assert np.isfinite(v.body.pos).all() and np.isfinite(v.body.vel).all(), v.body.pos
    assert all(np.isfinite(x) for x in v.ned_to_global(v.body.pos))
    n = len(sent)
    v.handle(mav.MAVLink_command_long_message(1, 1, 512, 0, 33, 0, 0, 0, 0, 0, 0), None)
    assert len(sent) > n  # still answering


# ---- the payload agent (tasks and LLM shards share its port) ------------------------------



def _agent_frames() -> st.SearchStrategy[bytes]:
    import struct

    def framed(header: bytes, body: bytes = b"") -> bytes:
        return struct.pack(">I", len(header)) + header + body

    headers = st.dictionaries(
        st.sampled_from(["kind", "token", "id", "cycles", "share", "body_bytes", "op",
                         "images", "result_bytes", "step", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.text(max_size=8),
                  st.sampled_from(["task", "health", "llm", AGENT_TOKEN, "wrong"]),
                  st.floats(allow_nan=False, allow_infinity=False)), max_size=8)
    return st.one_of(
        st.binary(max_size=512),
        st.builds(lambda h, b: framed(json.dumps(h).encode(), b), headers, st.binary(max_size=64)),
        st.builds(lambda raw: framed(raw), st.binary(max_size=200)),
        st.sampled_from([b"\xff\xff\xff\xff", framed(b"[1,2]"), framed(b'{"body_bytes": -1}'),
                         framed(b'{"x": NaN}'), framed(b"\xc3\x28"),
                         framed(json.dumps({"kind": "task", "token": AGENT_TOKEN,
                                            "body_bytes": 1 << 40}).encode())]))


def _with_agent(fn: Any) -> Any:
    return with_agent(fn, max_connections=8, header_stall_s=0.5)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(frames=st.lists(_agent_frames(), min_size=10, max_size=30))
def test_payload_agent_refuses_malformed_frames_and_keeps_serving(frames: list[bytes]) -> None:
    import asyncio

    from payloads.client import health

    async def attack(agent: Any) -> None:
        for frame in frames:
            reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
            writer.write(frame)
            with contextlib.suppress(ConnectionError):
                writer.write_eof()
                await asyncio.wait_for(reader.read(), 5.0)
            writer.close()
        reply = await health("127.0.0.1", agent.port, AGENT_TOKEN, 5.0)
        assert reply["ok"] and reply["completed"] == 0  # no frame without the token ran
        assert sum(reply["refused"].values()) >= 1 or all(len(f) < 4 for f in frames)

    _with_agent(attack)


def test_payload_agent_bounds_slow_loris_and_floods() -> None:
    """40 connections (5x the limit), each stalled one byte into a frame: the agent refuses
    past its limit, drops the stalled ones after the stall limit, counts both, answers its
    own client, and its memory stays put."""
    import asyncio

    from payloads.client import health

    async def flood(agent: Any) -> None:
        rss0 = _rss_kib()
        held = []
        for _ in range(40):
            r, w = await asyncio.open_connection("127.0.0.1", agent.port)
            w.write(b"\x00")
            held.append((r, w))
        await asyncio.sleep(1.0)  # past the stall limit
        reply = await health("127.0.0.1", agent.port, AGENT_TOKEN, 5.0)
        assert reply["ok"] and reply["connections"] <= 8
        assert reply["refused"]["too many connections"] >= 30
        assert reply["refused"]["stalled"] >= 1
        for _, w in held:
            w.close()
        # a wrong token, then a length prefix past the header limit
        wrong = b'{"kind":"health","token":"wrong"}'
        for frame in (len(wrong).to_bytes(4, "big") + wrong, b"\xff" * 4):
            r, w = await asyncio.open_connection("127.0.0.1", agent.port)
            w.write(frame)
            assert b"unauthorized" in await r.read() or frame.startswith(b"\xff")
            w.close()
        reply = await health("127.0.0.1", agent.port, AGENT_TOKEN, 5.0)
        assert reply["refused"]["unauthorized"] == 1 and reply["refused"]["bad frame"] >= 1
        assert _rss_kib() - rss0 < 50_000

    _with_agent(flood)


# ---- the resilience bench's own bookkeeping ------------------------------------------------

def test_resilience_plan_covers_every_phase_and_signal_and_folders_are_judged(
        tmp_path: Path) -> None:
    from testbed.bench.resilience import KINDS, PHASES, SIGNALS, folder_check, plan

    trials = plan(30)
    assert len(trials) == 30
    assert {(p, s) for _, p, s in trials[:15]} == {(p, s) for p in PHASES for s in SIGNALS}
    assert {k for k, _, _ in trials} == set(KINDS)
    run = tmp_path / "run"
    run.mkdir()
    assert not folder_check(run, "SIGINT")["valid"]  # no manifest
    (run / "manifest.json").write_text(json.dumps({"status": "running", "phase": "running"}))
    assert "not final" in folder_check(run, "SIGKILL")["why"]
    (run / "manifest.json").write_text(json.dumps({"status": "killed", "phase": "health"}))
    assert folder_check(run, "SIGKILL")["valid"] and not folder_check(run, "SIGTERM")["valid"]
    (run / "manifest.json").write_text(json.dumps({"status": "interrupted"}))
    assert "metrics" in folder_check(run, "SIGINT")["why"]
    (run / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    assert folder_check(run, "SIGINT")["valid"]
