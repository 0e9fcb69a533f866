"""What the CPN steering app installs, computed as plain data so it can be tested without a
switch.

The app (controllers/cpn/sdn/steering.py) owns the OpenFlow side; this module owns the
decisions:

* a `LinkGraph` of switches built from what LLDP discovered (ports come from discovery, not
  from the plan, so a recabled or cut trunk is seen as it is),
* `ServiceSpec` / `Service`: a service virtual address (VIP) steered to the instance a
  mapping algorithm chose, with a bandwidth reservation and a latency bound,
* `FlowTable`: every switch's flows for the current graph and services, as dictionaries of
  match fields and action tuples; the app diffs two tables and sends only the changes.

Forwarding model (table 0 only, proactive):

* ARP requests go to the controller, which answers for every known host and VIP, so nothing
  is ever flooded and redundant (looped) backbones need no spanning tree.
* Host unicast: `eth_dst=<host MAC>` follows the lowest-latency path over live links.
* A service: along its path tree every switch forwards `ipv4_dst=VIP` towards the instance's
  switch; that switch rewrites VIP:port to the instance's address:port (MAC too), meters it
  and delivers it.  Replies from the instance's service port are rewritten back to VIP:port
  and follow the same tree back to whichever host MAC they are addressed to.  Each service
  has its own instance port, so two services on one node never share a reverse match.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

PRIO_TABLE_MISS = 0
PRIO_HOST = 200
PRIO_ARP = 300
PRIO_SERVICE = 400
PRIO_SERVICE_EDGE = 410  # rewrite at the instance's switch: more specific than transit
PRIO_LLDP = 0xFFFF
LLDP_NEAREST_BRIDGE = "01:80:c2:00:00:0e"

HOP_COST_MS = 0.05
"""Latency charged per switch-to-switch hop when a trunk has no configured delay, so that
shortest paths prefer fewer hops among equal-delay ones."""

DEFAULT_TRUNK_MBPS = 1000.0
"""Capacity assumed for a trunk without a configured rate (veth through the userspace datapath
carries about 1 Gbit/s here)."""

PROTOCOLS = {"tcp": 6, "udp": 17}

Match = tuple[tuple[str, Any], ...]
Action = tuple[Any, ...]


def vip_mac(vip: str) -> str:
    """A locally administered unicast MAC derived from the VIP, so ARP answers are stable across
    controller restarts and readable in captures (06:00 + the four address bytes)."""
    b = ipaddress.IPv4Address(vip).packed
    return "06:00:" + ":".join(f"{x:02x}" for x in b)


@dataclass(frozen=True)
class HostPort:
    """A host interface on a switch port, as the network builder wired it."""

    node: str
    mac: str
    ip: str | None
    switch: str
    port_no: int


@dataclass(frozen=True)
class Trunk:
    """A configured switch-to-switch link: what the planner may assume about it."""

    a: str
    b: str
    rate_mbps: float
    delay_ms: float


@dataclass
class Fabric:
    """The static part: switches, where hosts are, configured trunk properties.  Built from the
    same topology JSON as the L2 app (plus host IPs and trunk rates)."""

    switches: dict[str, int]
    hosts: dict[str, HostPort]  # by MAC
    trunks: list[Trunk]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fabric:
        entries = data.get("switches", [])
        switches = {sw["name"]: int(str(sw["dpid"]), 16) for sw in entries}
        hosts: dict[str, HostPort] = {}
        for sw in entries:
            for port in sw.get("ports", []):
                peer, mac = port.get("peer"), port.get("peer_mac")
                if peer in switches or not mac:
                    continue
                mac = mac.lower()
                hosts[mac] = HostPort(peer, mac, port.get("peer_ip"), sw["name"],
                                      int(port["port_no"]))
        trunks = [Trunk(t["a"], t["b"], float(t.get("rate_mbps") or DEFAULT_TRUNK_MBPS),
                        float(t.get("delay_ms") or 0.0)) for t in data.get("trunks", [])]
        return cls(switches, hosts, trunks)

    def name_of(self, dpid: int) -> str | None:
        return next((n for n, d in self.switches.items() if d == dpid), None)

    def host_by_node(self, node: str) -> HostPort | None:
        return next((h for h in self.hosts.values() if h.node == node), None)

    def host_by_ip(self, ip: str) -> HostPort | None:
        return next((h for h in self.hosts.values() if h.ip == ip), None)

    def expected_pairs(self) -> set[frozenset[str]]:
        """Switch pairs that should be joined once discovery has seen every trunk."""
        return {frozenset((t.a, t.b)) for t in self.trunks if t.a != t.b}

    def trunk(self, a: str, b: str) -> Trunk:
        for t in self.trunks:
            if {t.a, t.b} == {a, b}:
                return t
        return Trunk(a, b, DEFAULT_TRUNK_MBPS, 0.0)


@dataclass
class LinkGraph:
    """Live switch adjacency from discovery: (switch, port) -> (peer switch, peer port)."""

    ports: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    """change it through add / remove_port only: they keep the out-port index current"""
    _out: dict[tuple[str, str], int] | None = field(default=None, init=False, repr=False)

    def add(self, a: str, pa: int, b: str, pb: int) -> bool:
        """Record a discovered direction (and its reverse: trunks are full duplex veths);
        True if this changed the graph."""
        changed = self.ports.get((a, pa)) != (b, pb) or self.ports.get((b, pb)) != (a, pa)
        self.ports[(a, pa)] = (b, pb)
        self.ports[(b, pb)] = (a, pa)
        if changed:
            self._out = None
        return changed

    def remove_port(self, sw: str, port_no: int) -> bool:
        """A port went down or a link timed out: both directions are gone."""
        peer = self.ports.pop((sw, port_no), None)
        if peer is None:
            return False
        self.ports.pop(peer, None)
        self._out = None
        return True

    def pairs(self) -> set[frozenset[str]]:
        return {frozenset((a, b)) for (a, _), (b, _) in self.ports.items() if a != b}

    def out_port(self, a: str, b: str) -> int | None:
        """a's port towards b; the lowest-numbered one when trunks are parallel.  Indexed
        once per graph change: a flow table asks this for every host on every switch, on the
        reroute path."""
        if self._out is None:
            self._out = {}
            for (x, pa), (y, _) in self.ports.items():
                if pa < self._out.get((x, y), pa + 1):
                    self._out[(x, y)] = pa
        return self._out.get((a, b))

    def graph(self, fabric: Fabric) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(fabric.switches)
        # sorted: equal-latency ties must break the same way in every process (set order
        # of strings changes with hash randomisation)
        for a, b in sorted(tuple(sorted(pair)) for pair in self.pairs()):
            t = fabric.trunk(a, b)
            g.add_edge(a, b, latency=t.delay_ms + HOP_COST_MS, capacity=t.rate_mbps)
        return g


class ServiceError(ValueError):
    """A service request that cannot be honoured; the message says why and what to change."""


@dataclass(frozen=True)
class ServiceSpec:
    """What a mapping decision asks the network for.  `clients` are host nodes whose traffic
    must meet the bound; None means every host on the fabric."""

    name: str
    vip: str
    port: int
    instance: str
    instance_port: int
    bandwidth_mbps: float = 0.0
    latency_ms: float | None = None
    protocols: tuple[str, ...] = ("tcp", "udp")
    clients: tuple[str, ...] | None = None
    path: tuple[str, ...] | None = None
    """switches from a client's switch to the instance's, as the mapper chose them"""

    @classmethod
    def from_request(cls, name: str, body: dict[str, Any], fabric: Fabric,
                     taken_vips: Iterable[str]) -> ServiceSpec:
        """Validate a REST body; every problem names the field and what to send instead."""
        def need(key: str, kind: type, default: Any = None) -> Any:
            value = body.get(key, default)
            if value is None:
                raise ServiceError(f"'{key}' is required")
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ServiceError(f"'{key}' must be a {kind.__name__}, got {value!r}")
            return value

        instance = need("instance", str)
        host = fabric.host_by_node(instance)
        if host is None or host.ip is None:
            known = sorted({h.node for h in fabric.hosts.values()})
            raise ServiceError(f"instance '{instance}' is not a host on the switched network; "
                               f"hosts: {', '.join(known)}")
        port = need("port", int)
        instance_port = need("instance_port", int, port)
        for key, value in (("port", port), ("instance_port", instance_port)):
            if not 1 <= value <= 65535:
                raise ServiceError(f"'{key}' must be 1..65535, got {value}")
        bandwidth = need("bandwidth_mbps", float, 0.0)
        if bandwidth < 0:
            raise ServiceError("'bandwidth_mbps' must be >= 0")
        latency = body.get("latency_ms")
        if latency is not None and (not isinstance(latency, int | float) or latency <= 0):
            raise ServiceError(f"'latency_ms' must be a positive number, got {latency!r}")
        protocols = tuple(body.get("protocols") or ("tcp", "udp"))
        bad = [p for p in protocols if p not in PROTOCOLS]
        if bad:
            raise ServiceError(f"'protocols' may hold {sorted(PROTOCOLS)}, got {bad}")
        clients = body.get("clients")
        if clients is not None:
            if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
                raise ServiceError("'clients' must be a list of node names")
            unknown = [c for c in clients if fabric.host_by_node(c) is None]
            if unknown:
                raise ServiceError(f"'clients' {unknown} are not hosts on the switched network")
            clients = tuple(clients)
        taken = set(taken_vips)
        vip = body.get("vip") or allocate_vip(host.ip, fabric, taken)
        try:
            ipaddress.IPv4Address(vip)
        except ValueError as exc:
            raise ServiceError(f"'vip' {vip!r} is not an IPv4 address") from exc
        if vip in taken or fabric.host_by_ip(vip) is not None:
            raise ServiceError(f"'vip' {vip} is already in use; leave it out to get a free one")
        path = body.get("path")
        if path is not None:
            if not isinstance(path, list) or not all(p in fabric.switches for p in path):
                raise ServiceError(f"'path' must be a list of switch names "
                                   f"({', '.join(sorted(fabric.switches))}), got {path!r}")
            if path[-1] != host.switch:
                raise ServiceError(f"'path' must end at {instance}'s switch {host.switch}")
            path = tuple(path)
        return cls(name, vip, port, instance, instance_port, bandwidth,
                   float(latency) if latency is not None else None, protocols, clients, path)


def allocate_vip(instance_ip: str, fabric: Fabric, taken: set[str]) -> str:
    """VIPs come from the top of the LAN's /24 (the planner hands host addresses out from the
    bottom), so clients reach them on-link without extra routes."""
    net = ipaddress.ip_network(f"{instance_ip}/24", strict=False)
    used = taken | {h.ip for h in fabric.hosts.values() if h.ip}
    for addr in reversed(list(net.hosts())):
        if str(addr) not in used:
            return str(addr)
    raise ServiceError(f"no free address left for a VIP in {net}")


@dataclass
class Service:
    """A spec plus where it runs now: the path from each client switch to the instance's
    switch (switch names), and the links it holds bandwidth on."""

    spec: ServiceSpec
    meter_id: int
    paths: dict[str, list[str]] = field(default_factory=dict)
    reserved: set[frozenset[str]] = field(default_factory=set)
    latency_ms: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "vip": s.vip, "vip_mac": vip_mac(s.vip), "port": s.port,
                "instance": s.instance, "instance_port": s.instance_port,
                "bandwidth_mbps": s.bandwidth_mbps, "latency_ms": s.latency_ms,
                "protocols": list(s.protocols), "clients": list(s.clients or []) or None,
                "requested_path": list(s.path) if s.path else None,
                "paths": self.paths, "path_latency_ms": self.latency_ms,
                "follows_requested_path": bool(s.path) and self.paths.get(s.path[0])
                == list(s.path),
                "meter_id": self.meter_id}


def route_service(spec: ServiceSpec, fabric: Fabric, graph: nx.Graph,
                  others: Iterable[Service]) -> tuple[dict[str, list[str]], set[frozenset[str]],
                                                      dict[str, float]]:
    """Lowest-latency tree from the instance's switch over links with enough residual
    bandwidth; fails with the client that cannot be served within the bound."""
    used: dict[frozenset[str], float] = {}
    for svc in others:
        if svc.spec.name == spec.name:
            continue
        for edge in svc.reserved:
            used[edge] = used.get(edge, 0.0) + svc.spec.bandwidth_mbps
    feasible = nx.Graph()
    feasible.add_nodes_from(graph.nodes)
    for a, b, data in graph.edges(data=True):
        if data["capacity"] - used.get(frozenset((a, b)), 0.0) >= spec.bandwidth_mbps - 1e-9:
            feasible.add_edge(a, b, **data)
    inst = fabric.host_by_node(spec.instance)
    assert inst is not None
    dist, tree = nx.single_source_dijkstra(feasible, inst.switch, weight="latency")
    pinned = pinned_tree(spec, inst.switch, feasible)
    if pinned is not None:
        dist, tree = pinned
    client_switches = sorted({h.switch for h in fabric.hosts.values()
                              if spec.clients is None or h.node in spec.clients})
    paths: dict[str, list[str]] = {}
    latency: dict[str, float] = {}
    reserved: set[frozenset[str]] = set()
    for sw in client_switches:
        if sw not in tree:
            raise ServiceError(f"no path from switch {sw} to {spec.instance} with "
                               f"{spec.bandwidth_mbps:g} Mbit/s free on every link")
        if spec.latency_ms is not None and dist[sw] > spec.latency_ms + 1e-9:
            raise ServiceError(f"the best path from switch {sw} to {spec.instance} takes "
                               f"{dist[sw]:.2f} ms, over the {spec.latency_ms:g} ms bound")
        path = list(reversed(tree[sw]))  # client switch -> instance switch
        paths[sw] = path
        latency[sw] = round(dist[sw], 3)
        reserved |= {frozenset(e) for e in itertools.pairwise(path)}
    if spec.bandwidth_mbps <= 0:
        reserved = set()
    return paths, reserved, latency


def pinned_tree(spec: ServiceSpec, root: str, feasible: nx.Graph
                ) -> tuple[dict[str, float], dict[str, list[str]]] | None:
    """The mapper's own path (spec.path, client switch first), when it is usable on the live
    graph, with every other switch joining it at its nearest point, so the forwarding stays a
    tree.  None (compute our own) if the path is absent, broken by a cut, or short of
    bandwidth: the mapping asked for it, but only the live graph can say it still works."""
    path = list(spec.path or ())
    if not path or path[-1] != root or any(
            not feasible.has_edge(a, b) for a, b in itertools.pairwise(path)):
        return None
    suffix_ms = {path[-1]: 0.0}
    for a, b in reversed(list(itertools.pairwise(path))):
        suffix_ms[a] = suffix_ms[b] + feasible[a][b]["latency"]
    on_path = {sw: i for i, sw in enumerate(path)}
    # a virtual source joined to every switch of the path by the latency left from there to
    # the root: the shortest tree from it joins each switch where its total is least
    virtual = ("__pinned__",)
    g = feasible.copy()
    for sw in path:
        g.add_edge(virtual, sw, latency=suffix_ms[sw])
    lengths, joins = nx.single_source_dijkstra(g, virtual, weight="latency")
    dist: dict[str, float] = {}
    tree: dict[str, list[str]] = {}  # switch -> [root ... switch], like single_source_dijkstra
    for sw, join in joins.items():
        if sw == virtual:
            continue
        meet = join[1]
        via = path[on_path[meet]:]  # meet -> root along the pinned path
        dist[sw] = lengths[sw]
        tree[sw] = list(reversed(via)) + join[2:]
    return dist, tree


@dataclass
class FlowTable:
    """switch -> {(priority, match): (actions, meter id or 0)}."""

    flows: dict[str, dict[tuple[int, Match], tuple[tuple[Action, ...], int]]]

    def count(self) -> int:
        return sum(len(f) for f in self.flows.values())


def _m(**fields: Any) -> Match:
    return tuple(sorted(fields.items()))


def flow_table(fabric: Fabric, links: LinkGraph, services: Iterable[Service]) -> FlowTable:
    """Every switch's flows for the live graph and the current services."""
    graph = links.graph(fabric)
    flows: dict[str, dict[tuple[int, Match], tuple[tuple[Action, ...], int]]] = {
        s: {} for s in fabric.switches}
    for sw in fabric.switches:
        flows[sw][(PRIO_TABLE_MISS, ())] = ((), 0)
        flows[sw][(PRIO_ARP, _m(eth_type=0x0806))] = ((("controller",),), 0)
        # LLDP to the controller, as os-ken's topology app installs it: kept in our table too,
        # because that app runs on its own thread and may install it before our connect-time
        # wipe of the switch, which would blind discovery for good
        flows[sw][(PRIO_LLDP, _m(eth_type=0x88CC, eth_dst=LLDP_NEAREST_BRIDGE))] = (
            (("controller",),), 0)
    # host unicast along lowest-latency paths
    next_hop: dict[str, dict[str, str]] = {}  # host switch -> {switch: neighbour towards it}
    for sw in {h.switch for h in fabric.hosts.values()}:
        _, paths = nx.single_source_dijkstra(graph, sw, weight="latency")
        next_hop[sw] = {other: p[-2] for other, p in paths.items() if len(p) > 1}
    for mac, host in fabric.hosts.items():
        for sw in fabric.switches:
            if sw == host.switch:
                port: int | None = host.port_no
            else:
                hop = next_hop[host.switch].get(sw)
                port = links.out_port(sw, hop) if hop else None
            if port is not None:
                flows[sw][(PRIO_HOST, _m(eth_dst=mac))] = ((("output", port),), 0)
    for svc in services:
        _service_flows(svc, fabric, links, flows)
    return FlowTable(flows)


def _service_flows(svc: Service, fabric: Fabric, links: LinkGraph,
                   flows: dict[str, dict[tuple[int, Match], tuple[tuple[Action, ...], int]]]
                   ) -> None:
    s = svc.spec
    inst = fabric.host_by_node(s.instance)
    assert inst is not None and inst.ip is not None
    # forward: next hop towards the instance's switch, per switch on any client path
    towards: dict[str, str] = {}
    for path in svc.paths.values():
        for a, b in itertools.pairwise(path):
            towards[a] = b
    # reverse: from the instance's switch, which neighbour leads to each client switch
    back: dict[str, dict[str, str]] = {}  # switch -> {client switch: neighbour}
    for client_sw, path in svc.paths.items():
        rev = list(reversed(path))
        for a, b in itertools.pairwise(rev):
            back.setdefault(a, {})[client_sw] = b
    clients = [h for h in fabric.hosts.values()
               if h.mac != inst.mac and h.switch in svc.paths]
    for proto in s.protocols:
        num = PROTOCOLS[proto]
        l4 = "tcp" if proto == "tcp" else "udp"
        for sw, nxt in towards.items():
            port = links.out_port(sw, nxt)
            if port is not None:
                flows[sw][(PRIO_SERVICE, _m(eth_type=0x0800, ip_proto=num, ipv4_dst=s.vip,
                                            **{f"{l4}_dst": s.port}))] = (
                    (("output", port),), 0)
        flows[inst.switch][(PRIO_SERVICE_EDGE, _m(
            eth_type=0x0800, ip_proto=num, ipv4_dst=s.vip, **{f"{l4}_dst": s.port}))] = ((
                ("set", "eth_dst", inst.mac), ("set", "ipv4_dst", inst.ip),
                ("set", f"{l4}_dst", s.instance_port), ("output", inst.port_no)),
                svc.meter_id)
        for host in clients:
            # at the instance's switch: rewrite the reply and send it towards the client
            if host.switch == inst.switch:
                out: int | None = host.port_no
            else:
                out = links.out_port(inst.switch, back[inst.switch][host.switch])
            if out is None:
                continue
            flows[inst.switch][(PRIO_SERVICE_EDGE, _m(
                in_port=inst.port_no, eth_type=0x0800, ip_proto=num, ipv4_src=inst.ip,
                eth_dst=host.mac, **{f"{l4}_src": s.instance_port}))] = ((
                    ("set", "eth_src", vip_mac(s.vip)), ("set", "ipv4_src", s.vip),
                    ("set", f"{l4}_src", s.port), ("output", out)), svc.meter_id)
            # transit switches on the way back
            for sw, by_client in back.items():
                if sw == inst.switch or host.switch not in by_client:
                    continue
                port = links.out_port(sw, by_client[host.switch])
                if port is not None:
                    flows[sw][(PRIO_SERVICE, _m(eth_type=0x0800, ip_proto=num,
                                                ipv4_src=s.vip, eth_dst=host.mac))] = (
                        (("output", port),), 0)
            if host.switch != inst.switch:
                flows[host.switch][(PRIO_SERVICE, _m(eth_type=0x0800, ip_proto=num,
                                                     ipv4_src=s.vip, eth_dst=host.mac))] = (
                    (("output", host.port_no),), 0)


def diff(old: FlowTable, new: FlowTable) -> dict[str, tuple[list[Any], list[Any]]]:
    """switch -> (flows to add or replace, flow keys to delete)."""
    out: dict[str, tuple[list[Any], list[Any]]] = {}
    for sw, flows in new.flows.items():
        before = old.flows.get(sw, {})
        add = [(k, v) for k, v in flows.items() if before.get(k) != v]
        delete = [k for k in before if k not in flows]
        if add or delete:
            out[sw] = (add, delete)
    return out
