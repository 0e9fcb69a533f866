"""The network plan: Linux names that fit, distinct subnets, and loop-free static routes.

The plan is pure data, so every property is checked without creating anything: routes are
followed hop by hop through the plan's own tables (`walk`) the way the kernel would.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed import scenario
from testbed.net import plan as planmod
from testbed.net.plan import IFNAMSIZ, NetworkPlan
from testbed.scenario import Scenario
from testbed.scenario.layout import count_segments

pytestmark = pytest.mark.unit

QUICKSTART = Path(__file__).resolve().parents[1] / "topologies" / "quickstart.yaml"
TAG = "ab12"


@pytest.fixture(scope="module")
def quickstart() -> Scenario:
    return scenario.load(QUICKSTART)


@pytest.fixture(scope="module")
def qplan(quickstart: Scenario) -> NetworkPlan:
    return planmod.build(quickstart, TAG)


def walk(plan: NetworkPlan, src: str, dst_ip: str, max_hops: int = 256) -> list[str]:
    """Follow the routing tables from host `src` to `dst_ip`; return the hosts visited.

    At each host: deliver if the address is on one of its subnets (connected route), else
    take the one route whose subnet holds the address, check its gateway sits on the subnet
    of the route's device, and move to the host that owns the gateway.  A host seen twice
    is a loop.
    """
    owner = {m.ip: m.node for m in plan.endpoints()}
    owner.update({ip: node for node, ip in plan.primary_ip.items()})
    assert dst_ip in owner, f"{dst_ip} is no host's address"
    target = ipaddress.ip_address(dst_ip)
    path = [src]
    node = src
    for _ in range(max_hops):
        mine = plan.endpoints(node)
        if any(m.ip == dst_ip for m in mine) or plan.primary_ip[node] == dst_ip:
            return path
        connected = [m for m in mine if target in _net(m.ip, m.prefixlen)]
        if connected:
            path.append(owner[dst_ip])
            return path
        routes = [r for r in plan.routes[node] if target in ipaddress.ip_network(r.subnet)]
        assert routes, f"{node}: no route to {dst_ip} ({path})"
        # longest prefix wins, as in the kernel; equal prefixes would be ambiguous
        best = max(ipaddress.ip_network(r.subnet).prefixlen for r in routes)
        routes = [r for r in routes if ipaddress.ip_network(r.subnet).prefixlen == best]
        assert len(routes) == 1, f"{node}: {len(routes)} routes to {dst_ip} ({path})"
        route = routes[0]
        assert route.src == plan.primary_ip[node], f"{node}: route not sourced from its address"
        dev = [m for m in mine if m.ifname == route.dev]
        assert len(dev) == 1, f"{node} has no interface {route.dev}"
        assert ipaddress.ip_address(route.via) in _net(dev[0].ip, dev[0].prefixlen), (
            f"{node}: gateway {route.via} is not on {route.dev}")
        nxt = owner[route.via]
        assert nxt not in path, f"routing loop: {[*path, nxt]}"
        path.append(nxt)
        node = nxt
    raise AssertionError(f"no delivery after {max_hops} hops: {path}")


def _net(ip: str, prefixlen: int) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(f"{ip}/{prefixlen}", strict=False)


def root_names(plan: NetworkPlan) -> list[str]:
    """Every interface or bridge name created in the root namespace."""
    names = [m.root_name for m in plan.endpoints()]
    names += [t.a_name for t in plan.trunks] + [t.b_name for t in plan.trunks]
    names += [sw.bridge for sw in plan.switches.values()]
    return names


def check_names(sc: Scenario, plan: NetworkPlan) -> None:
    roots = root_names(plan)
    assert all(0 < len(n) <= IFNAMSIZ for n in roots), roots
    assert not [n for n, c in Counter(roots).items() if c > 1], "duplicate root-namespace name"
    for node in sc.hosts():
        ifnames = [m.ifname for m in plan.endpoints(node)]
        assert all(0 < len(n) <= IFNAMSIZ for n in ifnames), ifnames
        assert len(set(ifnames)) == len(ifnames), f"{node}: duplicate ifname {ifnames}"
    # switch ports refer to names that exist
    for sw in plan.switches.values():
        assert {p.root_name for p in sw.ports} <= set(roots)
        assert [p.port_no for p in sw.ports] == list(range(1, len(sw.ports) + 1))


def check_routes(sc: Scenario, plan: NetworkPlan) -> None:
    all_subnets = {s.subnet for s in plan.segments}
    for host in sc.hosts():
        own = {str(_net(m.ip, m.prefixlen)) for m in plan.endpoints(host)}
        routed = [r.subnet for r in plan.routes[host]]
        assert len(routed) == len(set(routed)), f"{host}: duplicate routes"
        others = {f"{ip}/32" for n, ip in plan.primary_ip.items() if n != host}
        assert set(routed) == (all_subnets - own) | others, host
    for src in sc.hosts():
        for dst in sc.hosts():
            if src != dst:
                path = walk(plan, src, plan.primary_ip[dst])
                assert path[0] == src
                assert path[-1] == dst


# --- quickstart -----------------------------------------------------------------------------

def test_namespaces(quickstart: Scenario, qplan: NetworkPlan):
    assert qplan.tag == TAG
    assert qplan.scenario == "quickstart"
    assert qplan.namespaces == {n: f"shab12-{n}" for n in quickstart.hosts()}
    assert "sw1" not in qplan.namespaces  # switches are OVS bridges, not namespaces


def test_interface_names_fit_and_are_unique(quickstart: Scenario, qplan: NetworkPlan):
    check_names(quickstart, qplan)
    assert all(n.startswith(f"s{TAG}") for n in root_names(qplan))


def test_interfaces_numbered_in_link_order(quickstart: Scenario, qplan: NetworkPlan):
    # gs1 is on backhaul, sat-up, then gs-lan: eth0, eth1, eth2
    assert [(m.link, m.ifname) for m in qplan.endpoints("gs1")] == [
        ("backhaul", "eth0"), ("sat-up", "eth1"), ("gs-lan", "eth2")]


def test_subnets_distinct_and_in_pool(quickstart: Scenario, qplan: NetworkPlan):
    pool = ipaddress.ip_network("198.18.0.0/15")
    nets = [ipaddress.ip_network(s.subnet) for s in qplan.segments]
    assert len(set(nets)) == len(nets)
    for net in nets:
        assert net.prefixlen == 24
        assert net.subnet_of(pool)
    for a in nets:
        for b in nets:
            assert a == b or not a.overlaps(b)
    # the network address of the whole pool is kept out of use
    assert ipaddress.ip_network("198.18.0.0/24") not in nets
    assert len(nets) == count_segments(quickstart)


def test_addresses_inside_their_subnet_and_unique(qplan: NetworkPlan):
    ips = []
    for seg in qplan.segments:
        net = ipaddress.ip_network(seg.subnet)
        for m in seg.members:
            addr = ipaddress.ip_address(m.ip)
            assert addr in net and addr not in (net.network_address, net.broadcast_address)
            assert m.prefixlen == net.prefixlen
            ips.append(m.ip)
    assert len(ips) == len(set(ips))
    # node addresses: one per host, at the top of the pool, on no segment
    pool = ipaddress.ip_network("198.18.0.0/15")
    node_ips = list(qplan.primary_ip.values())
    assert len(set(node_ips)) == len(node_ips) == len(qplan.namespaces)
    assert all(ipaddress.ip_address(ip) in pool for ip in node_ips)
    assert not set(node_ips) & set(ips)
    assert node_ips[0] == "198.19.255.254"
    assert all(not ip.endswith((".0", ".255")) for ip in node_ips)


def test_segments_of_quickstart(qplan: NetworkPlan):
    lan = qplan.segment_of("metro")
    assert lan is qplan.segment_of("gs-lan") is qplan.segment_of("edge-lan")
    assert lan.switches == ["sw1", "sw2"]
    assert {m.node for m in lan.members} == {"gs1", "edge1"}
    assert [(t.a, t.b) for t in qplan.trunks] == [("sw1", "sw2")]
    assert {m.node for m in qplan.segment_of("cell-a").members} == {"uav1", "user1", "user2"}


def test_ethernet_macs(qplan: NetworkPlan):
    macs = [m.mac for m in qplan.endpoints() if m.mac is not None]
    assert macs and len(macs) == len(set(macs))
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b01  # locally administered, unicast
    dpids = [sw.dpid for sw in qplan.switches.values()]
    assert len(set(dpids)) == len(dpids)


def test_every_host_reaches_every_other_without_loops(quickstart: Scenario,
                                                       qplan: NetworkPlan):
    check_routes(quickstart, qplan)


@pytest.mark.parametrize(("user", "uav"), [("user1", "uav1"), ("user2", "uav1"),
                                           ("user3", "uav2"), ("user4", "uav2")])
def test_user_to_cloud_goes_through_uav_gs_sat(qplan: NetworkPlan, user: str, uav: str):
    assert walk(qplan, user, qplan.primary_ip["cloud1"]) == [user, uav, "gs1", "sat1",
                                                            "cloud1"]


def test_user_to_edge_goes_through_the_lan(qplan: NetworkPlan):
    assert walk(qplan, "user4", qplan.primary_ip["edge1"]) == ["user4", "uav2", "gs1", "edge1"]


def test_hosts_file(qplan: NetworkPlan):
    lines = qplan.hosts_file().splitlines()
    assert lines[0] == "127.0.0.1 localhost"
    assert f"{qplan.primary_ip['cloud1']} cloud1" in lines


def test_plan_is_deterministic(quickstart: Scenario, qplan: NetworkPlan):
    assert planmod.build(quickstart, TAG).to_dict() == qplan.to_dict()


@pytest.mark.parametrize("tag", ["AB12", "ab1", "ab123", "zz12", "", "ab-1"])
def test_bad_tag(quickstart: Scenario, tag: str):
    with pytest.raises(ValueError, match="tag"):
        planmod.build(quickstart, tag)


# --- generated scenarios --------------------------------------------------------------------

def renamed(data: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """A scenario document with its nodes renamed (and every reference to them)."""
    out = dict(data)
    out["nodes"] = {mapping[n]: v for n, v in data["nodes"].items()}
    out["links"] = [dict(link, endpoints=[mapping[e] for e in link["endpoints"]])
                    for link in data["links"]]
    out["traffic"] = [dict(f, src=mapping[f["src"]], dst=mapping[f["dst"]])
                      for f in data["traffic"]]
    out["timeline"] = [dict(e, node=mapping[e["node"]]) if "node" in e else e
                       for e in data["timeline"]]
    return out


def test_long_node_names_still_give_valid_names():
    data = yaml.safe_load(QUICKSTART.read_text())
    mapping = {n: f"{n}-{'x' * (28 - len(n))}{i % 10}" for i, n in enumerate(data["nodes"])}
    assert all(len(v) == 30 for v in mapping.values())
    sc = scenario.parse(renamed(data, mapping), "generated")
    plan = planmod.build(sc, "ffff")
    check_names(sc, plan)
    assert plan.namespaces[mapping["uav1"]] == f"shffff-{mapping['uav1']}"
    check_routes(sc, plan)


def test_many_links_still_give_valid_names():
    """A long chain: interface counters grow, names must still fit."""
    n = 120
    nodes = {f"n{i:03d}": {"kind": "cloud"} for i in range(n)}
    links = [{"name": f"l{i:03d}", "kind": "satellite", "endpoints": [f"n{i:03d}",
                                                                      f"n{i + 1:03d}"],
              "delay_ms": 1, "rate_mbps": 10} for i in range(n - 1)]
    sc = scenario.parse({"name": "chain", "nodes": nodes, "links": links}, "generated")
    plan = planmod.build(sc, "0a0b")
    check_names(sc, plan)
    assert walk(plan, "n000", plan.primary_ip["n119"]) == list(nodes)


def ring(delay_ms: float = 1.0) -> Scenario:
    """a - b - c - d - a, four point-to-point links of equal delay."""
    order = ["a", "b", "c", "d"]
    links = [{"name": f"{x}{y}", "kind": "satellite", "endpoints": [x, y],
              "delay_ms": delay_ms, "rate_mbps": 10}
             for x, y in zip(order, order[1:] + order[:1], strict=True)]
    return scenario.parse({"name": "ring", "nodes": {n: {"kind": "cloud"} for n in order},
                           "links": links}, "ring")


def route_to(plan: NetworkPlan, routes: dict, host: str, link: str):
    subnet = plan.segment_of(link).subnet
    found = [r for r in routes[host] if r.subnet == subnet]
    return found[0] if found else None


def test_ring_routes_and_walks():
    sc = ring()
    plan = planmod.build(sc, TAG)
    check_routes(sc, plan)
    # a reaches b-c through b, its neighbour on a-b
    r = route_to(plan, plan.routes, "a", "bc")
    assert r.via == plan.endpoint("ab", "b").ip
    assert r.dev == plan.endpoint("ab", "a").ifname


def test_segment_down_is_avoided():
    sc = ring()
    plan = planmod.build(sc, TAG)
    routes = planmod.compute_routes(sc, plan, down=frozenset({"ab"}))
    r = route_to(plan, routes, "a", "bc")
    assert r.via == plan.endpoint("da", "d").ip
    assert r.dev == plan.endpoint("da", "a").ifname
    # no route anywhere uses a gateway on the downed segment
    down_net = ipaddress.ip_network(plan.segment_of("ab").subnet)
    for host, table in routes.items():
        for route in table:
            assert ipaddress.ip_address(route.via) not in down_net, (host, route)
    # ... but the subnet itself stays reachable from the far side
    assert route_to(plan, routes, "c", "ab") is not None
    # following the new tables, a reaches c's far address the long way round
    plan.routes = routes
    assert walk(plan, "a", plan.endpoint("bc", "b").ip) == ["a", "d", "c", "b"]


def test_unreachable_subnets_get_no_route():
    sc = ring()
    plan = planmod.build(sc, TAG)
    routes = planmod.compute_routes(sc, plan, down=frozenset({"ab", "cd"}))
    assert route_to(plan, routes, "a", "bc") is None
    assert route_to(plan, routes, "c", "da") is None
    assert route_to(plan, routes, "a", "cd") is not None  # via d, which is still on it


def test_link_named_like_a_switch_lan():
    sc = scenario.parse({
        "name": "clash",
        "nodes": {"a": {"kind": "cloud"}, "b": {"kind": "cloud"}, "c": {"kind": "cloud"},
                  "sw1": {"kind": "switch"}},
        "links": [
            {"name": "lan-sw1", "kind": "satellite", "endpoints": ["a", "b"], "delay_ms": 1,
             "rate_mbps": 10},
            {"name": "b-sw", "kind": "wired", "endpoints": ["b", "sw1"]},
            {"name": "c-sw", "kind": "wired", "endpoints": ["c", "sw1"]},
        ]}, "clash")
    plan = planmod.build(sc, TAG)
    check_routes(sc, plan)


def test_route_cache_reuses_unchanged_tables_and_stays_correct():
    sc = ring()
    plan = planmod.build(sc, TAG)
    cache = planmod.RouteCache()
    first = planmod.compute_routes(sc, plan, cache=cache)
    again = planmod.compute_routes(sc, plan, cache=cache)
    assert all(again[h] is first[h] for h in first)  # nothing changed: same objects
    cut = planmod.compute_routes(sc, plan, down=frozenset({"ab"}), cache=cache)
    assert cut["a"] is not first["a"] and cut["a"] != first["a"]
    plan.routes = cut
    check_reachable = walk(plan, "a", plan.primary_ip["b"])
    assert check_reachable == ["a", "d", "c", "b"]
    # and without a cache the same tables come out
    assert planmod.compute_routes(sc, plan, down=frozenset({"ab"})) == cut
