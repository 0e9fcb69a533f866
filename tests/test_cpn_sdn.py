"""The CPN steering app: its decisions as data (unit), and the real thing on a userspace Open
vSwitch ring programmed by os-ken (emulation): a service VIP reaches the chosen instance with
addresses rewritten both ways, and traffic survives a trunk cut by rerouting."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from controllers.cpn.sdn.plan import (
    PRIO_SERVICE_EDGE,
    Fabric,
    LinkGraph,
    Service,
    ServiceError,
    ServiceSpec,
    diff,
    flow_table,
    route_service,
    vip_mac,
)


def ring_topology(rate: float = 100.0, delay: float | None = None) -> dict[str, Any]:
    """s1-s2-s3-s4-s1, one host per switch (u1 on s1, e1 on s2, e2 on s3, c1 on s4); trunk
    ports: 2 towards the next switch, 3 towards the previous one."""
    hosts = {"s1": "u1", "s2": "e1", "s3": "e2", "s4": "c1"}
    switches = []
    for i, (sw, host) in enumerate(hosts.items(), start=1):
        nxt, prev = f"s{i % 4 + 1}", f"s{(i - 2) % 4 + 1}"
        switches.append({"name": sw, "dpid": f"{i:016x}", "ports": [
            {"port_no": 1, "peer": host, "peer_mac": f"02:00:00:00:00:0{i}",
             "peer_ip": f"198.18.1.{i}"},
            {"port_no": 2, "peer": nxt, "peer_mac": None},
            {"port_no": 3, "peer": prev, "peer_mac": None}]})
    trunks = [{"a": f"s{i}", "b": f"s{i % 4 + 1}", "rate_mbps": rate, "delay_ms": delay}
              for i in range(1, 5)]
    return {"switches": switches, "trunks": trunks}


def ring_links() -> LinkGraph:
    g = LinkGraph()
    for i in range(1, 5):
        g.add(f"s{i}", 2, f"s{i % 4 + 1}", 3)
    return g


def spec(fabric: Fabric, name: str = "svc", **body: Any) -> ServiceSpec:
    base = {"instance": "e2", "port": 8000, "instance_port": 8001}
    return ServiceSpec.from_request(name, {**base, **body}, fabric, [])


@pytest.mark.unit
def test_service_request_validation_names_the_field() -> None:
    fabric = Fabric.from_dict(ring_topology())
    with pytest.raises(ServiceError, match=r"instance 'nope'.*hosts: c1, e1, e2, u1"):
        spec(fabric, instance="nope")
    with pytest.raises(ServiceError, match=r"'port' must be 1\.\.65535"):
        spec(fabric, port=70000)
    with pytest.raises(ServiceError, match="'protocols'"):
        spec(fabric, protocols=["sctp"])
    with pytest.raises(ServiceError, match=r"'vip' 198\.18\.1\.1 is already in use"):
        spec(fabric, vip="198.18.1.1")
    s = spec(fabric)
    assert s.vip == "198.18.1.254"  # top of the LAN's /24, on-link for every host
    assert vip_mac(s.vip) == "06:00:c6:12:01:fe"


@pytest.mark.unit
def test_paths_respect_bandwidth_and_latency_bounds() -> None:
    fabric = Fabric.from_dict(ring_topology(rate=100.0, delay=2.0))
    links = ring_links()
    graph = links.graph(fabric)
    first = spec(fabric, "a", bandwidth_mbps=60, clients=["u1"])
    paths, reserved, latency = route_service(first, fabric, graph, [])
    assert paths == {"s1": ["s1", "s2", "s3"]}
    assert latency["s1"] == pytest.approx(4.1)
    a = Service(first, 1, paths, reserved, latency)
    # 60 of 100 Mbit/s are taken on s1-s2-s3: the second service must go round via s4
    second = spec(fabric, "b", bandwidth_mbps=60, clients=["u1"])
    paths_b, _, _ = route_service(second, fabric, graph, [a])
    assert paths_b == {"s1": ["s1", "s4", "s3"]}
    with pytest.raises(ServiceError, match="over the 3 ms bound"):
        route_service(spec(fabric, "c", latency_ms=3, clients=["u1"]), fabric, graph, [a])
    with pytest.raises(ServiceError, match="no path from switch s1 to e2 with 50 Mbit/s"):
        b = Service(second, 2, paths_b, {frozenset(("s1", "s4")), frozenset(("s3", "s4"))})
        route_service(spec(fabric, "d", bandwidth_mbps=50, clients=["u1"]), fabric, graph,
                      [a, b])


@pytest.mark.unit
def test_the_mappers_path_is_followed_while_it_works() -> None:
    fabric = Fabric.from_dict(ring_topology())
    links = ring_links()
    s = spec(fabric, path=["s1", "s4", "s3"])
    paths, _, _ = route_service(s, fabric, links.graph(fabric), [])
    # s1 uses the requested path; s2 and s4 join the tree at their nearest point
    assert paths == {"s1": ["s1", "s4", "s3"], "s2": ["s2", "s3"], "s3": ["s3"],
                     "s4": ["s4", "s3"]}
    assert Service(s, 1, paths).describe()["follows_requested_path"]
    links.remove_port("s4", 2)  # s4-s1 cut: fall back to the lowest-latency tree
    paths, _, _ = route_service(s, fabric, links.graph(fabric), [])
    assert paths["s1"] == ["s1", "s2", "s3"]
    with pytest.raises(ServiceError, match="'path' must end at e2's switch s3"):
        spec(fabric, path=["s1", "s2"])


@pytest.mark.unit
def test_flow_table_rewrites_at_the_instance_switch_only() -> None:
    fabric = Fabric.from_dict(ring_topology())
    links = ring_links()
    s = spec(fabric, bandwidth_mbps=5, protocols=["udp"])
    paths, reserved, lat = route_service(s, fabric, links.graph(fabric), [])
    svc = Service(s, 7, paths, reserved, lat)
    table = flow_table(fabric, links, [svc])
    rewrites = {sw: [(k, v) for k, v in flows.items() if k[0] == PRIO_SERVICE_EDGE]
                for sw, flows in table.flows.items()}
    assert all(not r for sw, r in rewrites.items() if sw != "s3")
    fwd = [v for k, v in rewrites["s3"] if ("ipv4_dst", s.vip) in k[1]]
    assert fwd == [((("set", "eth_dst", "02:00:00:00:00:03"), ("set", "ipv4_dst", "198.18.1.3"),
                     ("set", "udp_dst", 8001), ("output", 1)), 7)]
    # one reverse rewrite per other host, each leaving towards that host
    rev = [(dict(k[1])["eth_dst"], v[0][-1]) for k, v in rewrites["s3"]
           if ("ipv4_src", "198.18.1.3") in k[1]]
    assert sorted(rev) == [("02:00:00:00:00:01", ("output", 3)),
                           ("02:00:00:00:00:02", ("output", 3)),
                           ("02:00:00:00:00:04", ("output", 2))]
    # cutting s2-s3 moves u1's path round via s4: only the changed switches get flow mods
    links.remove_port("s2", 2)
    paths2, res2, lat2 = route_service(s, fabric, links.graph(fabric), [])
    assert paths2["s1"] == ["s1", "s4", "s3"]
    changes = diff(table, flow_table(fabric, links, [Service(s, 7, paths2, res2, lat2)]))
    assert set(changes) == {"s1", "s2", "s3", "s4"}
    assert diff(table, table) == {}


# ---------------------------------------------------------------------------------------------
# emulation: a real ring of userspace OVS bridges under os-ken

ECHO = ("import socket,sys,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',int(sys.argv[1])))\n"
        "print('ready',flush=True)\n"
        "while True:\n"
        " d,a=s.recvfrom(2000);print(time.time(),a[0],d.decode(),flush=True)\n"
        " s.sendto(sys.argv[2].encode()+b':'+d,a)")


def ring_scenario() -> dict[str, Any]:
    hosts = {"u1": ("ground_user", "s1"), "e1": ("edge_server", "s2"),
             "e2": ("edge_server", "s3"), "c1": ("cloud", "s4")}
    return {
        "name": "cpn-ring", "duration_s": 60,
        "nodes": {**{h: {"kind": k} for h, (k, _) in hosts.items()},
                  **{f"s{i}": {"kind": "switch"} for i in range(1, 5)}},
        "links": [{"name": f"l-{h}", "kind": "wired", "endpoints": [h, sw]}
                  for h, (_, sw) in hosts.items()]
        + [{"name": f"t{i}{i % 4 + 1}", "kind": "wired",
            "endpoints": [f"s{i}", f"s{i % 4 + 1}"], "rate_mbps": 100} for i in range(1, 5)],
        "services": {"sdn": {"app": "cpn"}},
        "capture": {"enabled": False},
    }


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)")
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None,
                    reason="Open vSwitch missing: run `make setup`")
def test_vip_steered_to_chosen_instance_and_rerouted_after_cut(tmp_path: Path) -> None:
    from controllers.cpn.sdn.api import ApiClient, ApiError
    from testbed.engines.base import Change
    from testbed.run.cleanup import leftovers
    from testbed.run.harness import emulated
    from testbed.scenario import parse

    sc = parse(ring_scenario(), "cpn-ring")
    with emulated(sc, tmp_path) as emu:
        tag = emu.net.plan.tag
        assert emu.net.sdn is not None and emu.net.sdn.api_socket is not None
        api = ApiClient(str(emu.net.sdn.api_socket))
        topo = api.topology()
        assert len(topo["links"]) == 4 and sorted(topo["ready"]) == ["s1", "s2", "s3", "s4"]
        with pytest.raises(ApiError, match=r"400.*instance 'x9'"):
            api.put_service("bad", instance="x9", port=8000)
        echoes = {n: emu.popen(n, ["python3", "-u", "-c", ECHO, "8001", n]) for n in ("e1", "e2")}
        for p in echoes.values():  # bound before anything is sent to them
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        try:
            svc = api.put_service("svc", instance="e2", port=8000, instance_port=8001,
                                  bandwidth_mbps=10, protocols=["udp"])
            assert svc["paths"]["s1"] == ["s1", "s2", "s3"] and svc["confirmed"]
            ask = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                   "s.settimeout(2);s.connect((sys.argv[1],8000));s.send(b'q')\n"
                   "print(s.recv(100).decode(), s.getpeername()[0])")
            out = emu.run("u1", ["python3", "-c", ask, svc["vip"]]).stdout.split()
            # answered by e2, seen by the client as coming from the VIP itself
            assert out == ["e2:q", svc["vip"]], out
            # move the service to e1: the same VIP now reaches the other node
            moved = api.put_service("svc", instance="e1", port=8000, instance_port=8001,
                                    protocols=["udp"])
            assert moved["vip"] == svc["vip"]
            out = emu.run("u1", ["python3", "-c", ask, svc["vip"]]).stdout.split()
            assert out == ["e1:q", svc["vip"]], out
            api.put_service("svc", instance="e2", port=8000, instance_port=8001,
                            protocols=["udp"])
            # steady stream, then cut s1-s2: the stream must continue via s4
            send = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                    "s.connect((sys.argv[1],8000))\n"
                    "for i in range(300):\n s.send(str(i).encode());time.sleep(0.005)")
            sender = emu.popen("u1", ["python3", "-c", send, svc["vip"]])
            time.sleep(0.6)
            emu.net.apply([Change("set", link="t12", up=False)])
            assert sender.wait(timeout=30) == 0
            time.sleep(0.3)
        finally:
            for p in echoes.values():
                p.kill()
        lines = [line.split() for line in echoes["e2"].communicate()[0].splitlines()
                 if len(line.split()) == 3]
        stream = [float(t) for t, _src, payload in lines if payload.isdigit()]
        assert len(stream) >= 280, len(stream)  # a few packets may die with the cut link
        gap_ms = max(b - a for a, b in itertools.pairwise(stream)) * 1000
        assert gap_ms < 500, gap_ms
        assert api.services()[0]["paths"]["s1"] == ["s1", "s4", "s3"]
    assert leftovers(tag)["namespaces"] == []


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)")
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None or shutil.which("tcpdump") is None,
                    reason="Open vSwitch / tcpdump missing: run `make setup`")
def test_cpn_mapping_scenario_enacts_abs_decisions(tmp_path: Path) -> None:
    """The shipped scenario, shortened: ABS maps arriving services, the app steers each VIP to
    the node ABS chose (every probe answered by it, seen in the captures), and the trunk cut
    at 20 s reroutes the services that crossed it."""
    import json

    import yaml

    from testbed.run.cleanup import leftovers
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import load

    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "topologies" / "cpn-mapping.yaml").read_text())
    raw["duration_s"] = 38
    for ev in raw["timeline"]:
        if "command" in ev:
            ev["command"] = ev["command"].replace("topologies/", f"{root}/topologies/").replace(
                "--duration 34", "--duration 26")
    path = tmp_path / "cpn-mapping.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = Run(load(path), "cpn-mapping", RunOptions(results_base=tmp_path)).execute()
    assert res.status == "done", res.error
    d = res.run_dir
    log = (d / "logs" / "gs1" / "exec-1s.log").read_text(errors="replace")
    assert (d / "cpn" / "summary.json").is_file(), log[-3000:]
    s = json.loads((d / "cpn" / "summary.json").read_text())
    assert s["accepted"] >= 5, s
    assert s["served_by_chosen_node"] == 1.0, s
    assert s["probes_answered"] > 100 and s["probes_sent_unanswered"] < 0.05 * s["probes_answered"]
    assert s["setup_ms"]["first_packets_seen"] == s["accepted"], s
    assert s["setup_ms"]["request_to_first_packet_max"] < 100, s
    moved = [r for r in s["reroutes"] if "gap_ms" in r]
    assert all(r["recovered"] and r["gap_ms"] < 500 for r in moved), s["reroutes"]
    assert set(s["offline_same_requests"]) >= {"abs", "first_fit", "best_fit"}
    assert not any(leftovers(d.name.rsplit("-", 1)[-1]).values())
