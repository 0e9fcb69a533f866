"""Scale (issue 23): 1,000 nodes and thousands of point-to-point links in one plan.

`addressing.p2p_prefix` packs point-to-point subnets into /24s, `addressing.routes_to:
ground` routes only the node addresses of ground nodes (satellites are transit), and the
route computation stays fast enough to run at every handover.  The large plan comes from a
generator here (a +Grid torus of satellites and ground nodes with two access links each), so
the tests depend on no scenario file.  Timings are printed, not asserted (benchmarks measure
performance; the bounds below only catch a return to the quadratic Python loops).
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from testbed import scenario
from testbed.net import health
from testbed.net import plan as planmod
from testbed.net.plan import NetworkPlan, RouteCache
from testbed.scenario import Scenario, ScenarioError
from testbed.scenario.model import NodeKind

pytestmark = pytest.mark.unit

QUICKSTART = Path(__file__).resolve().parents[1] / "topologies" / "quickstart.yaml"
TAG = "ab12"


def synthetic(planes: int, per_plane: int, ground: int, addressing: dict[str, Any] | None = None,
              access: int = 2, traffic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A scenario dict: planes x per_plane satellites on a +Grid torus of p2p ISLs (ring in
    each plane, same index in the next plane), and `ground` ground nodes (every tenth a
    ground station) with `access` p2p links each to satellites spread over the shell."""
    nodes: dict[str, Any] = {}
    links: list[dict[str, Any]] = []

    def sat(p: int, k: int) -> str:
        return f"s{p}x{k}"

    for p in range(planes):
        for k in range(per_plane):
            nodes[sat(p, k)] = {"kind": "satellite"}
    for p in range(planes):
        for k in range(per_plane):
            links.append({"name": f"i{p}x{k}", "kind": "satellite", "delay_ms": 2.0,
                          "rate_mbps": 100, "endpoints": [sat(p, k), sat(p, (k + 1) % per_plane)]})
            if planes > 1:
                links.append({"name": f"j{p}x{k}", "kind": "satellite", "delay_ms": 3.0,
                              "rate_mbps": 100, "endpoints": [sat(p, k), sat((p + 1) % planes, k)]})
    n = planes * per_plane
    for g in range(ground):
        name = f"g{g}"
        nodes[name] = {"kind": "ground_station" if g % 10 == 0 else "ground_user"}
        for a in range(access):
            s = (g * 7 + a * 13) % n
            links.append({"name": f"a{g}x{a}", "kind": "satellite", "delay_ms": 4.0 + a,
                          "rate_mbps": 50, "endpoints": [name, sat(s // per_plane, s % per_plane)]})
    data: dict[str, Any] = {"name": "synthetic", "duration_s": 60, "nodes": nodes,
                            "links": links, "traffic": traffic or []}
    if addressing is not None:
        data["addressing"] = addressing
    return data


def quickstart_with(addressing: dict[str, Any]) -> Scenario:
    return scenario.load(QUICKSTART, overrides={"addressing": addressing})


@pytest.fixture(scope="module")
def big() -> tuple[Scenario, NetworkPlan]:
    """900 satellites (30 x 30, 1,800 ISLs) + 100 ground nodes (200 access links)."""
    t0 = time.perf_counter()
    sc = scenario.parse(synthetic(30, 30, 100, {"p2p_prefix": 31, "routes_to": "ground"}),
                        "synthetic.yaml")
    t1 = time.perf_counter()
    plan = planmod.build(sc, TAG)
    t2 = time.perf_counter()
    print(f"\n1,000-node scenario: parse {t1 - t0:.2f} s, plan build {t2 - t1:.2f} s, "
          f"{len(plan.segments)} segments, "
          f"{max(len(t) for t in plan.routes.values())} routes per namespace at most")
    assert t2 - t1 < 60
    return sc, plan


def nets(plan: NetworkPlan) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(s.subnet) for s in plan.segments]


def assert_disjoint_and_below_nodes(plan: NetworkPlan, pool: str) -> None:
    pool_net = ipaddress.IPv4Network(pool)
    ns = sorted(nets(plan), key=lambda n: int(n.network_address))
    for a, b in itertools.pairwise(ns):
        assert int(a.broadcast_address) < int(b.network_address), (a, b)
    lowest_node = min(ipaddress.IPv4Address(a) for a in plan.primary_ip.values())
    assert all(n.subnet_of(pool_net) for n in ns)
    assert int(ns[-1].broadcast_address) < int(lowest_node)
    assert ipaddress.IPv4Network(f"{pool_net.network_address}/24") not in ns
    for seg in plan.segments:
        net = ipaddress.IPv4Network(seg.subnet)
        ips = [ipaddress.IPv4Address(m.ip) for m in seg.members]
        assert len(set(ips)) == len(ips)
        for m, ip in zip(seg.members, ips, strict=True):
            assert ip in net and m.prefixlen == net.prefixlen
            if net.prefixlen < 31:
                assert ip not in (net.network_address, net.broadcast_address)


# --- addressing ----------------------------------------------------------------------------

def test_default_addressing_is_todays_byte_for_byte():
    """quickstart's subnets and addresses as they were before p2p_prefix existed, and an
    explicit p2p_prefix: 24 changes nothing in the plan."""
    sc = scenario.load(QUICKSTART)
    plan = planmod.build(sc, TAG)
    assert [(s.name, s.subnet, [(m.node, m.ip, m.prefixlen) for m in s.members])
            for s in plan.segments] == [
        ("cell-a", "198.18.1.0/24", [("uav1", "198.18.1.1", 24), ("user1", "198.18.1.2", 24),
                                     ("user2", "198.18.1.3", 24)]),
        ("cell-b", "198.18.2.0/24", [("uav2", "198.18.2.1", 24), ("user3", "198.18.2.2", 24),
                                     ("user4", "198.18.2.3", 24)]),
        ("backhaul", "198.18.3.0/24", [("uav1", "198.18.3.1", 24), ("uav2", "198.18.3.2", 24),
                                       ("gs1", "198.18.3.3", 24)]),
        ("sat-up", "198.18.4.0/24", [("gs1", "198.18.4.1", 24), ("sat1", "198.18.4.2", 24)]),
        ("sat-down", "198.18.5.0/24", [("sat1", "198.18.5.1", 24),
                                       ("cloud1", "198.18.5.2", 24)]),
        ("lan:sw1", "198.18.6.0/24", [("gs1", "198.18.6.1", 24), ("edge1", "198.18.6.2", 24)]),
    ]
    assert plan.primary_ip["gs1"] == "198.19.255.254"
    assert plan.primary_ip["cloud1"] == "198.19.255.245"
    explicit = planmod.build(quickstart_with({"p2p_prefix": 24, "routes_to": "all"}), TAG)
    assert explicit.to_dict() == plan.to_dict()


@pytest.mark.parametrize("prefix", [29, 30, 31])
def test_p2p_prefix_packs_point_to_point_subnets(prefix: int):
    sc = quickstart_with({"p2p_prefix": prefix})
    plan = planmod.build(sc, TAG)
    assert_disjoint_and_below_nodes(plan, sc.addressing.pool)
    lengths = {s.name: ipaddress.IPv4Network(s.subnet).prefixlen for s in plan.segments}
    # p2p links take the small subnets; Wi-Fi cells and the switched LAN keep a /24
    assert lengths == {"cell-a": 24, "cell-b": 24, "backhaul": 24, "sat-up": prefix,
                       "sat-down": prefix, "lan:sw1": 24}
    small = [ipaddress.IPv4Network(plan.segment_of(n).subnet) for n in ("sat-up", "sat-down")]
    assert small[0].supernet(new_prefix=24) == small[1].supernet(new_prefix=24)
    if prefix == 31:  # RFC 3021: both addresses are the hosts'
        assert [m.ip for m in plan.segment_of("sat-up").members] == [
            str(small[0].network_address), str(small[0].broadcast_address)]


def test_p2p_prefix_fits_thousands_of_links_in_the_default_pool(big):
    sc, plan = big
    assert len(plan.namespaces) == 1000 and len(plan.segments) == 2000
    assert {ipaddress.IPv4Network(s.subnet).prefixlen for s in plan.segments} == {31}
    assert_disjoint_and_below_nodes(plan, sc.addressing.pool)
    # 2,000 /31s: 4,000 addresses from 198.18.1.0 up (15 5/8 /24s)
    top = max(int(n.broadcast_address) for n in nets(plan))
    assert str(ipaddress.IPv4Address(top)) == "198.18.16.159"


def test_too_small_a_pool_is_a_clear_error():
    with pytest.raises(ScenarioError) as err:
        scenario.parse(synthetic(30, 30, 100), "big.yaml")
    text = str(err.value)
    assert "big.yaml" in text and "addressing.pool" in text
    assert "p2p_prefix: 30" in text and "2000 point-to-point links" in text
    with pytest.raises(ScenarioError) as err:
        scenario.parse(synthetic(30, 30, 100, {"pool": "10.0.0.0/22", "p2p_prefix": 30}),
                       "big.yaml")
    text = str(err.value)
    assert "addressing.pool" in text and "10.0.0.0/22 holds 3 /24s" in text
    assert "larger pool" in text
    # what does fit: 2,000 /30s need 32 /24s, 1,000 node addresses 4
    scenario.parse(synthetic(30, 30, 100, {"pool": "10.0.0.0/18", "p2p_prefix": 30}), "ok")


def test_unknown_prefix_names_the_field():
    with pytest.raises(ScenarioError) as err:
        scenario.parse(synthetic(2, 3, 2, {"p2p_prefix": 28}), "x.yaml")
    assert "addressing.p2p_prefix" in str(err.value)


# --- routes_to: ground ---------------------------------------------------------------------

def follow(plan: NetworkPlan, src: str, dst: str) -> list[str]:
    """Hosts visited from src to dst's node address through the plan's tables (next hops
    must sit on a subnet of the route's device, no host twice)."""
    owner = {m.ip: m for m in plan.endpoints()}
    target = f"{plan.primary_ip[dst]}/32"
    path, node = [src], src
    while node != dst:
        route = next(r for r in plan.routes[node] if r.subnet == target)
        hop = owner[route.via]
        mine = next(m for m in plan.endpoints(node) if m.ifname == route.dev)
        assert ipaddress.ip_address(route.via) in ipaddress.ip_network(
            f"{mine.ip}/{mine.prefixlen}", strict=False)
        assert route.src == plan.primary_ip[node]
        node = hop.node
        assert node not in path, f"loop {[*path, node]}"
        path.append(node)
    return path


def test_routes_to_ground_routes_only_ground_node_addresses(big):
    sc, plan = big
    ground = [n for n in plan.namespaces if sc.nodes[n].kind is not NodeKind.SATELLITE]
    assert len(ground) == 100
    assert planmod.routed_nodes(sc, plan) == ground
    for node, table in plan.routes.items():
        want = {f"{plan.primary_ip[g]}/32" for g in ground if g != node}
        assert {r.subnet for r in table} == want, node  # no subnet routes, no satellites
        assert len(table) == len(want)
    print(f"routes per namespace: {len(ground) - 1} (ground) / {len(ground)} (satellite); "
          f"{sum(len(t) for t in plan.routes.values())} in all")


def test_routes_to_ground_reach_every_ground_pair(big):
    sc, plan = big
    ground = [n for n in plan.namespaces if sc.nodes[n].kind is not NodeKind.SATELLITE]
    for src in ground[::7]:
        for dst in ground:
            if src != dst:
                follow(plan, src, dst)


def test_routes_to_ground_small_scenario_every_pair():
    sc = scenario.parse(synthetic(3, 4, 5, {"routes_to": "ground"}), "s")
    plan = planmod.build(sc, TAG)
    ground = planmod.routed_nodes(sc, plan)
    assert ground == [f"g{i}" for i in range(5)]
    for src in ground:
        for dst in ground:
            if src != dst:
                follow(plan, src, dst)


def test_traffic_to_a_satellite_is_refused_under_routes_to_ground():
    flow = {"name": "p", "kind": "ping", "src": "g0", "dst": "s0x1", "duration_s": 10}
    scenario.parse(synthetic(2, 3, 2, {"routes_to": "all"}, traffic=[flow]), "x.yaml")
    with pytest.raises(ScenarioError) as err:
        scenario.parse(synthetic(2, 3, 2, {"routes_to": "ground"}, traffic=[flow]), "x.yaml")
    text = str(err.value)
    assert "traffic[0].dst" in text and "'s0x1' is a satellite" in text
    assert "routes_to: all" in text


# --- reroute -------------------------------------------------------------------------------

def test_reroute_after_a_handover_is_fast_and_keeps_unchanged_tables(big):
    sc, plan = big
    cache = RouteCache()
    first = planmod.compute_routes(sc, plan, cache=cache)
    assert first == plan.routes
    # g5 loses its first access link (its other satellite takes over)
    t0 = time.perf_counter()
    after = planmod.compute_routes(sc, plan, down=frozenset({"a5x0"}), cache=cache)
    dt = time.perf_counter() - t0
    rebuilt = [n for n in after if after[n] is not first[n]]
    print(f"\nreroute after a handover at 1,000 hosts: {dt * 1e3:.0f} ms, "
          f"{len(rebuilt)} tables rebuilt")
    assert dt < 10  # loose: the target is well under a second
    assert 0 < len(rebuilt) < len(after)
    assert "g5" in rebuilt
    for n in after:
        if n not in rebuilt:
            assert after[n] == first[n]
    # nothing changed: every table object is the cached one (RouteInstaller skips them)
    again = planmod.compute_routes(sc, plan, down=frozenset({"a5x0"}), cache=cache)
    assert all(again[n] is after[n] for n in after)


def test_all_routes_mode_unchanged_at_100_hosts():
    """The default (every node, every subnet) on 90 satellites and 10 ground nodes: route
    set as before, and the timing printed for comparison with the ~10 ms of today."""
    sc = scenario.parse(synthetic(9, 10, 10), "s")
    plan = planmod.build(sc, TAG)
    subnets = {s.subnet for s in plan.segments}
    for node, table in plan.routes.items():
        own = {str(ipaddress.ip_network(f"{m.ip}/{m.prefixlen}", strict=False))
               for m in plan.endpoints(node)}
        others = {f"{ip}/32" for n, ip in plan.primary_ip.items() if n != node}
        assert {r.subnet for r in table} == (subnets - own) | others
    cache = RouteCache()
    planmod.compute_routes(sc, plan, cache=cache)
    t0 = time.perf_counter()
    planmod.compute_routes(sc, plan, down=frozenset({"a5x0"}), cache=cache)
    print(f"\nreroute at 100 hosts (routes_to: all): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    for src in ("g0", "g3", "s4x4"):
        for dst in plan.namespaces:
            if dst != src:
                follow(plan, src, dst)


# --- health check targets ------------------------------------------------------------------

def fake_net(sc: Scenario, plan: NetworkPlan) -> SimpleNamespace:
    return SimpleNamespace(
        plan=plan, sc=sc, lock=threading.Lock(), apart={},
        down_segments=lambda: frozenset({"a5x0"}),
        routing_graph=lambda: planmod.host_graph(sc, plan, frozenset({"a5x0"})))


def test_health_targets_at_scale_are_linear_and_routed_only(big):
    sc, plan = big
    t0 = time.perf_counter()
    want = health.targets(fake_net(sc, plan))  # type: ignore[arg-type]
    dt = time.perf_counter() - t0
    pairs = sum(len(t) for t in want.values())
    print(f"\nhealth targets at 1,000 hosts: {pairs} pings, computed in {dt * 1e3:.0f} ms")
    ground = planmod.routed_nodes(sc, plan)
    sat_ips = {plan.primary_ip[n] for n in plan.namespaces if n not in ground}
    ground_ips = {plan.primary_ip[n] for n in ground}
    for node, t in want.items():
        assert not set(t) & sat_ips  # nobody pings a satellite's node address
        if node not in ground:
            assert not set(t) & ground_ips  # and satellites ping only their neighbours
    # every up link is pinged (from one end), the down one is not
    pinged = {(node, ip) for node, t in want.items() for ip in t}
    for seg in plan.segments:
        a, b = seg.members
        covered = (a.node, b.ip) in pinged or (b.node, a.ip) in pinged
        assert covered == (seg.name != "a5x0"), seg.name
    # every ground node reaches the anchors and the anchors reach every ground node
    anchors = ground[:health.ANCHORS]
    for g in ground:
        for a in anchors:
            if a != g:
                assert plan.primary_ip[a] in want[g]
                assert plan.primary_ip[g] in want[a]
    assert pairs < 2 * len(plan.segments) + 2 * health.ANCHORS * len(ground)


def test_health_targets_small_network_all_pairs():
    sc = quickstart_with({})
    plan = planmod.build(sc, TAG)
    net = fake_net(sc, plan)
    net.down_segments = frozenset
    net.routing_graph = lambda: planmod.host_graph(sc, plan)
    want = health.targets(net)  # type: ignore[arg-type]
    for node, t in want.items():
        others = {plan.primary_ip[o] for o in plan.namespaces if o != node}
        assert others <= set(t)
        for m in plan.endpoints(node):  # every neighbour, from both ends
            seg = plan.segment_of(m.link)
            assert {p.ip for p in seg.members if p.node != node} <= set(t)
