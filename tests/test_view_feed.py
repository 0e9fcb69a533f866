"""The live view's data feed and server, on run folders made here: frames from the files a run
writes (incrementally, as a live run appends), names instead of addresses, the bounded frame
ring, the token, and the asset paths."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.run.loadlog import link_members, parse_net_dev
from testbed.view.feed import RunFeed, Tail, footprint_km
from testbed.view.server import RING, Hub, ViewServer, _file_under
from testbed.view.synthetic import SyntheticFeed

pytestmark = pytest.mark.unit
T0 = 1_800_000_000.0

NETWORK = {
    "namespaces": {"gs1": "x-gs1", "sat1": "x-sat1", "user1": "x-user1", "cloud1": "x-cloud1"},
    "segments": [
        {"name": "sat-up", "medium": "p2p", "links": ["sat-up"], "switches": [],
         "members": [{"node": "gs1", "link": "sat-up", "ifname": "eth1", "ip": "198.18.2.1"},
                     {"node": "sat1", "link": "sat-up", "ifname": "eth0", "ip": "198.18.2.2"}]},
        {"name": "cell", "medium": "wifi", "links": ["cell"], "switches": [],
         "members": [{"node": "gs1", "link": "cell", "ifname": "eth0", "ip": "198.18.1.1"},
                     {"node": "user1", "link": "cell", "ifname": "eth0", "ip": "198.18.1.2"}]},
        {"name": "lan:sw1", "medium": "ethernet", "links": ["wan"], "switches": ["sw1"],
         "members": [{"node": "cloud1", "link": "wan", "ifname": "eth0", "ip": "198.18.3.2"}]},
    ],
    "primary_ip": {"gs1": "198.19.255.254", "sat1": "198.19.255.253",
                   "user1": "198.19.255.252", "cloud1": "198.19.255.251"},
}
SCENARIO = {
    "name": "viewtest", "duration_s": 30,
    "nodes": {"gs1": {"kind": "ground_station", "position": [0, 0, 10]},
              "user1": {"kind": "ground_user", "position": [50, 80, 1.5]},
              "sat1": {"kind": "satellite"}, "cloud1": {"kind": "cloud"},
              "sw1": {"kind": "switch"}},
    "links": [{"name": "sat-up", "kind": "satellite", "endpoints": ["gs1", "sat1"],
               "delay_ms": 6, "rate_mbps": 50},
              {"name": "cell", "kind": "air-to-ground", "endpoints": ["gs1", "user1"]},
              {"name": "wan", "kind": "wired", "endpoints": ["cloud1", "sw1"]}],
    "traffic": [{"name": "ping-cloud", "kind": "ping", "src": "user1", "dst": "cloud1",
                 "start_s": 0, "duration_s": 20},
                {"name": "bulk", "kind": "tcp", "src": "user1", "dst": "cloud1",
                 "start_s": 2, "duration_s": 20}],
}


def make_run(tmp_path: Path, running: bool = True) -> Path:
    run = tmp_path / "run"
    (run / "flows").mkdir(parents=True)
    (run / "probes").mkdir()
    (run / "logs" / "cloud1").mkdir(parents=True)
    (run / "network.json").write_text(json.dumps(NETWORK))
    (run / "scenario.resolved.yaml").write_text(yaml.safe_dump(SCENARIO))
    (run / "world.json").write_text(json.dumps({"satellites": [], "time_scale": 1.0}))
    (run / "manifest.json").write_text(json.dumps(
        {"run_id": "r1", "status": "running" if running else "done",
         "time_zero_wall": T0}))
    return run


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_tail_returns_complete_lines_only(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    tail = Tail(p)
    assert tail.lines() == []  # absent: nothing, no error
    append(p, "one\ntw")
    assert tail.lines() == ["one"]
    append(p, "o\nthree\n")
    assert tail.lines() == ["two", "three"]
    assert tail.lines() == []


def test_topology_names_kinds_and_places(tmp_path: Path) -> None:
    topo = RunFeed(make_run(tmp_path)).topology()
    assert topo["frame"] == "local"  # positions in metres, no constellation, no location
    nodes = {n["name"]: n for n in topo["nodes"]}
    assert nodes["user1"]["pos"] == [50.0, 80.0, 1.5]
    assert nodes["sat1"]["kind"] == "satellite"
    # nodes without a place sit beside a placed neighbour, not at the origin or nowhere
    assert nodes["sat1"]["pos"] is not None and nodes["sat1"]["pos"] != [0.0, 0.0, 10.0]
    assert nodes["cloud1"]["pos"] is not None and nodes["sw1"]["pos"] is not None
    links = {lk["name"]: lk for lk in topo["links"]}
    assert links["sat-up"]["ends"] == ["gs1", "sat1"]
    assert links["sat-up"]["configured"]["delay_ms"] == 6
    assert links["wan"]["ends"] == ["cloud1", "sw1"]
    assert [f["name"] for f in topo["flows"]] == ["ping-cloud", "bulk"]


def test_frames_follow_the_files_as_they_grow(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    feed = RunFeed(run, live=True)
    assert feed.poll() == []
    append(run / "events.jsonl", json.dumps(
        {"planned_s": 2.0, "actual_s": 2.001, "event": "start_flow bulk", "ok": True,
         "action": "start_flow", "flow": "bulk"}) + "\n")
    append(run / "events.jsonl", json.dumps(
        {"planned_s": 5.0, "actual_s": 5.002, "event": "link_down link=sat-up", "ok": True,
         "action": "link_down", "link": "sat-up"}) + "\n")
    # a probe answer from gs1 to sat1's address on sat-up, a ping of the flow
    append(run / "probes" / "gs1.txt",
           f"[{T0 + 3.0:.5f}] 198.18.2.2  : [0], 64 bytes, 12.40 ms (12.4 avg, 0% loss)\n")
    append(run / "flows" / "ping-cloud.ping.txt",
           "PING 198.19.255.251 56(84) bytes of data.\n"
           f"[{T0 + 1.0:.6f}] 64 bytes from 198.19.255.251: icmp_seq=1 ttl=62 time=26.8 ms\n"
           f"[{T0 + 1.4:.6f}] 64 bytes from 198.19.255.251: icmp_seq=3 ttl=62 time=27.0 ms\n")
    frames = feed.poll()
    by_t = {f["t"]: f for f in frames}
    assert [f["t"] for f in frames] == sorted(f["t"] for f in frames)
    assert by_t[5.0]["links"]["sat-up"]["state"] == "down"
    assert by_t[5.0]["events"][0]["link"] == "sat-up"
    assert by_t[3.0]["rtt"] == {"sat-up": 12.4}  # the address became its link's name
    assert by_t[1.0]["flows"]["ping-cloud"]["rtt_ms"] == 26.8
    assert by_t[1.4]["flows"]["ping-cloud"]["loss_pct"] == pytest.approx(33.33, abs=0.01)
    # iperf3's per-second lines, placed after the flow's actual start
    append(run / "logs" / "cloud1" / "iperf3-server-bulk.log",
           "Accepted connection from 198.19.255.252, port 40000\n"
           "[  5]   0.00-1.00   sec   732 KBytes  5.99 Mbits/sec\n"
           "[  5]   1.00-2.00   sec   1.2 MBytes  9.87 Mbits/sec\n"
           "[  5]   0.00-10.04  sec  11.9 MBytes  9.95 Mbits/sec                  receiver\n")
    append(run / "logs" / "link-load.jsonl", json.dumps(
        {"wall": T0 + 4, "t": 4.0, "dt": 1.0, "links": {"sat-up": 3.8},
         "nodes": {"cloud1": 12.5}}) + "\n")
    later = {f["t"]: f for f in feed.poll()}
    assert later[3.0]["flows"]["bulk"] == {"goodput_mbps": 5.99}
    assert later[4.0]["flows"]["bulk"] == {"goodput_mbps": 9.87}
    assert later[4.0]["load"] == {"sat-up": 3.8}
    assert later[4.0]["nodes"]["cloud1"]["cpu_pct"] == 12.5
    assert all(t < 13 for t in later)  # the summary line is no sample
    assert feed.poll() == []


def test_handovers_and_dynamic_links(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "world.json").write_text(json.dumps({
        "satellites": ["sat1"], "access": {"gsl": {"gs1": {"sat1": "gsl-gs1-sat1"}}},
        "links": {"gsl-gs1-sat1": {"ends": ["gs1", "sat1"], "role": "access"}}}))
    (run / "mobility").mkdir()
    append(run / "mobility" / "handovers.jsonl", json.dumps(
        {"group": "gsl", "terminal": "gs1", "from": None, "to": "sat1", "t_s": 0.0,
         "reason": "initial"}) + "\n" + json.dumps(
        {"group": "gsl", "terminal": "gs1", "from": "sat0", "to": "sat1", "t_s": 7.5,
         "reason": "policy"}) + "\n")
    append(run / "mobility" / "link-state.csv",
           "t_s,t_mobility_s,link,role,up,routed,delay_ms,rate_mbps,loss_pct,range_km,"
           "elevation_deg,snr_db\n"
           "8.000,8.0,gsl-gs1-sat1,access,1,0,3.1,50.0,0.0,900.0,40.0,12.0\n")
    frames = {f["t"]: f for f in RunFeed(run).poll()}
    assert frames[7.5]["handovers"] == [{"group": "gsl", "terminal": "gs1", "from": "sat0",
                                          "to": "sat1"}]
    assert frames[7.5]["links"]["gsl-gs1-sat1"]["state"] == "handover"
    assert frames[8.0]["links"]["gsl-gs1-sat1"]["state"] == "unusable"  # up, not routed
    assert 0.0 not in frames  # the initial attachment is no handover


def test_geo_frame_and_footprint(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    sc = dict(SCENARIO, nodes={**SCENARIO["nodes"],
                               "gs1": {"kind": "ground_station",
                                       "location": {"lat_deg": 50.1, "lon_deg": 8.7}}})
    (run / "scenario.resolved.yaml").write_text(yaml.safe_dump(sc))
    topo = RunFeed(run).topology()
    assert topo["frame"] == "geo"
    gs1 = next(n for n in topo["nodes"] if n["name"] == "gs1")
    assert gs1["pos"][:2] == [50.1, 8.7]
    # a 550 km satellite above a 25 degree mask covers a ground radius of ~940 km
    assert footprint_km(550.0, 25.0) == pytest.approx(940, rel=0.03)


def test_link_members_count_each_packet_once() -> None:
    members = link_members(NETWORK)
    assert members["sat-up"] == [("gs1", "eth1", False), ("sat1", "eth0", False)]
    assert members["wan"] == [("cloud1", "eth0", True)]  # one namespace end: rx and tx
    text = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
            "  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n")
    assert parse_net_dev(text) == {"eth0": (1000, 2000)}


class Frames:
    live = True
    series: list[dict[str, Any]] = []

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def topology(self) -> dict[str, Any]:
        return {"run": self.run_info(), "nodes": [], "links": []}

    def run_info(self) -> dict[str, Any]:
        return {"live": True}

    def poll(self) -> list[dict[str, Any]]:
        return self.batches.pop(0) if self.batches else []

    def now(self) -> float:
        return 1.0

    def ended(self) -> bool:
        return False


def test_ring_counts_what_a_slow_client_lost() -> None:
    src = Frames()
    hub = Hub(src)
    src.batches.append([{"t": i / 10} for i in range(RING + 50)])
    hub.pump()
    first = hub.since(0)
    assert first["dropped"] == 50 and first["frames"][0]["seq"] == 50
    assert len(first["frames"]) == 2000  # one answer is bounded too
    assert hub.since(first["next"])["dropped"] == 0
    assert hub.stats["dropped"] == 50


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_server_token_assets_and_paths() -> None:
    hub = Hub(SyntheticFeed(20, 30))
    srv = ViewServer(hub, "s3cret", port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert srv.server_address[0] == "127.0.0.1"
        assert get(f"{base}/api/topology")[0] == 403
        assert get(f"{base}/api/topology?token=wrong")[0] == 403
        code, body = get(f"{base}/api/topology?token=s3cret")
        assert code == 200 and len(json.loads(body)["nodes"]) == 20
        hub.pump()
        code, body = get(f"{base}/api/frames?token=s3cret&since=0")
        assert code == 200 and "frames" in json.loads(body)
        for bad in ("/vendor/leaflet/../../../../etc/passwd", "/vendor/left-pad/index.js",
                    "/assets/../server.py", "/assets/node_modules/leaflet/package.json"):
            assert get(f"{base}{bad}?token=s3cret")[0] == 404, bad
    finally:
        srv.shutdown()
        srv.server_close()


def test_file_under_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("x")
    (tmp_path / "out").symlink_to("/etc")
    assert _file_under(tmp_path, "a.js") == (tmp_path / "a.js").resolve()
    for rel in ("../etc/passwd", "/etc/passwd", "out/passwd", "", "a\\b"):
        assert _file_under(tmp_path, rel) is None


def test_node_status_records_reach_the_nodes(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "logs").mkdir(exist_ok=True)
    append(run / "logs" / "node-status.jsonl",
           json.dumps({"wall": T0 + 6.0, "node": "gs1", "battery_pct": 87.5, "mode": "MISSION",
                       "armed": True}) + "\n" + '{"wall": 1, "node": ')
    frames = {f["t"]: f for f in RunFeed(run).poll()}
    assert frames[6.0]["nodes"]["gs1"] == {"battery_pct": 87.5, "mode": "MISSION",
                                           "armed": True}


def test_stalled_and_vanishing_clients_do_not_hold_up_others() -> None:
    """A browser that connects and never finishes its request, or one that closes mid-answer,
    costs one thread for at most the socket timeout: others are served meanwhile."""
    import socket
    import time

    hub = Hub(SyntheticFeed(200, 500))
    hub.pump()
    srv = ViewServer(hub, "tok", port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    stalled = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /api/frames?token=tok&since=0 HTTP/1.1\r\nHost: x\r\n")  # no end
            stalled.append(s)
        gone = socket.create_connection(("127.0.0.1", port))
        gone.sendall(b"GET /api/topology?token=tok HTTP/1.1\r\nHost: x\r\n\r\n")
        gone.close()  # before reading a byte of the answer
        t0 = time.monotonic()
        code, body = get(f"http://127.0.0.1:{port}/api/frames?token=tok&since=0")
        assert code == 200 and "frames" in json.loads(body)
        assert time.monotonic() - t0 < 2.0
    finally:
        for s in stalled:
            s.close()
        srv.shutdown()
        srv.server_close()
