"""From a validated Scenario to a NetworkPlan: names, addresses, switch ports and routes.

The plan is pure data, computed without touching the host, so it can be inspected
(`python -m testbed check --plan`), unit-tested, written to the run folder, and later split
across hosts.  Naming scheme (every Linux interface name fits IFNAMSIZ, 15 characters):

    namespace of node N        sh<tag>-<N>          e.g. sh3fa9-uav1   (ip netns)
    interfaces inside a node   eth0, eth1, ...      in the order of the scenario's links
    ns-3 tap (before the move) s<tag>t<k>           e.g. s3fa9t12
    switch namespace           sh<tag>.switch       Open vSwitch + os-ken of the run
    veth end on a switch       s<tag>v<k>
    Open vSwitch bridge        s<tag>b<k>

Open vSwitch's userspace datapath holds one `ovs-netdev` tap per namespace, so each run's
switches live in their own namespace (which also keeps the root namespace free of any
emulated interface).  <tag> is 4 hex digits unique to the run, so two runs never collide
and leftovers of a killed run are recognisable.  Subnets are /24s taken in order from the
scenario's address pool (default 198.18.0.0/15, the RFC 2544 benchmarking range); with
`addressing.p2p_prefix` (29, 30 or 31) point-to-point segments get that smaller subnet instead,
packed into /24s of their own, so thousands of links fit (docs/addressing.md).

Every node also gets a *node address*, a /32 on its loopback taken from the top of the pool
(like a router ID).  Names resolve to it, traffic is sourced from it (routes carry `src`),
and every host has a /32 route to every other node: so a node whose links come and go (a
ground terminal handing over between satellites) keeps one address that flows can use for a
whole run.  With `addressing.routes_to: ground` only the node addresses of nodes that are not
satellites are routed (and no remote subnets): satellites are pure transit, as in Hypatia and
StarryNet, which keeps a 1,000-node shell at ~100 routes per namespace instead of ~4,000.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from testbed.scenario.layout import allocate, segments_layout, subnet_prefixes
from testbed.scenario.model import Link, Medium, NodeKind, Scenario

IFNAMSIZ = 15


@dataclass
class Endpoint:
    node: str
    link: str
    ifname: str  # inside the node's namespace
    root_name: str  # tap or veth name at creation time in the root namespace
    ip: str
    prefixlen: int
    mac: str | None = None  # fixed for veths; ns-3 devices report theirs at start


@dataclass
class Segment:
    """One IP subnet: a Wi-Fi channel, a point-to-point link, or a switched Ethernet LAN."""

    name: str
    medium: Medium
    subnet: str
    links: list[str]
    members: list[Endpoint] = field(default_factory=list)
    switches: list[str] = field(default_factory=list)


@dataclass
class SwitchPort:
    port_no: int
    root_name: str
    peer: str  # host node or switch on the other side
    peer_mac: str | None = None  # host MAC behind this port


@dataclass
class Switch:
    name: str
    bridge: str
    dpid: str
    ports: list[SwitchPort] = field(default_factory=list)


@dataclass
class Trunk:
    """A switch-to-switch wired link: a veth pair with both ends in the root namespace."""

    link: str
    a: str
    b: str
    a_name: str
    b_name: str
    rate_mbps: float | None = None


@dataclass(slots=True)
class Route:
    subnet: str  # a segment's /24 or another node's /32 node address
    via: str
    dev: str
    src: str | None = None  # the node's own node address

    def line(self) -> str:
        """The `ip -batch` command that installs it."""
        src = f" src {self.src}" if self.src else ""
        return f"route replace {self.subnet} via {self.via} dev {self.dev}{src}"


@dataclass
class NetworkPlan:
    tag: str
    scenario: str
    namespaces: dict[str, str]
    segments: list[Segment]
    switches: dict[str, Switch]
    trunks: list[Trunk]
    routes: dict[str, list[Route]]
    primary_ip: dict[str, str]  # node -> node address (/32 on lo)
    switch_netns: str | None = None
    # node -> subnets behind it that are no segment of the plan (a hardware board's link,
    # testbed.hil.boards): every other host routes them like the node's own address
    attached: dict[str, list[str]] = field(default_factory=dict)
    # node -> the address its NAME resolves to when something else serves it: a board that
    # replaces the node (its agent, reached through the node's links), so a workload that
    # addresses "uav1" reaches the hardware without knowing about it
    served_by: dict[str, str] = field(default_factory=dict)

    def endpoints(self, node: str | None = None) -> list[Endpoint]:
        return [m for s in self.segments for m in s.members if node is None or m.node == node]

    def segment_of(self, link: str) -> Segment:
        """(An index by link name, built on first use: thousands of links are looked up at
        every mobility tick.)"""
        index: dict[str, Segment] | None = self.__dict__.get("_by_link")
        seg = index.get(link) if index is not None else None
        if seg is None or link not in seg.links:
            self.__dict__["_by_link"] = index = {n: s for s in self.segments for n in s.links}
            seg = index.get(link)
            if seg is None:
                raise StopIteration(link)  # as the linear search did
        return seg

    def endpoint(self, link: str, node: str) -> Endpoint:
        return next(m for m in self.segment_of(link).members if m.node == node and m.link == link)

    def hosts_file(self) -> str:
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.served_by.get(node, ip)} {node}" for node, ip in self.primary_ip.items()]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """The plan as JSON-ready data.  Routes are converted by hand: `asdict` deep-copies
        each of the 1.7 M routes a 1,000-node plan with routes to every node holds (~30 s)."""
        return {"tag": self.tag, "scenario": self.scenario, "namespaces": dict(self.namespaces),
                "segments": [asdict(s) for s in self.segments],
                "switches": {k: asdict(v) for k, v in self.switches.items()},
                "trunks": [asdict(t) for t in self.trunks],
                "routes": {n: [{"subnet": r.subnet, "via": r.via, "dev": r.dev, "src": r.src}
                               for r in rs] for n, rs in self.routes.items()},
                "primary_ip": dict(self.primary_ip), "switch_netns": self.switch_netns,
                "attached": {k: list(v) for k, v in self.attached.items()},
                "served_by": dict(self.served_by)}


def _mac(tag: str, k: int) -> str:
    return f"02:{tag[0:2]}:{tag[2:4]}:00:{k >> 8 & 0xFF:02x}:{k & 0xFF:02x}"


def build(sc: Scenario, tag: str, attached: dict[str, list[str]] | None = None,
          served_by: dict[str, str] | None = None) -> NetworkPlan:
    if len(tag) != 4 or any(c not in "0123456789abcdef" for c in tag):
        raise ValueError("tag must be 4 lower-case hex digits")
    pool = ipaddress.ip_network(sc.addressing.pool)
    assert isinstance(pool, ipaddress.IPv4Network)
    layout = segments_layout(sc)
    # x.x.0.0/24 is kept unused (it reads like a network address to people); /24s from
    # x.x.1.0 up, point-to-point segments packed by addressing.p2p_prefix
    subnets, blocks = allocate(pool, subnet_prefixes(sc))
    namespaces = {n: f"sh{tag}-{n}" for n in sc.hosts()}
    primary = node_addresses(pool, sc.hosts())
    if_count = dict.fromkeys(sc.hosts(), 0)
    counter = iter(range(1, 1 << 16))
    switch_names = sc.switches()
    switches = {
        s: Switch(name=s, bridge=f"s{tag}b{i}", dpid=f"{i + 1:016x}")
        for i, s in enumerate(switch_names)
    }
    segments: list[Segment] = []
    trunks: list[Trunk] = []
    low = min((ipaddress.IPv4Address(a) for a in primary.values()), default=None)
    if low is not None and blocks * 256 > int(low) - int(pool.network_address):
        raise ValueError(f"the subnets reach {subnets[-1]}, into the node addresses (from "
                         f"{low}): the scenario check (references._address_space) should "
                         "have refused this pool")
    link_of = {link.name: link for link in sc.links}
    for (name, medium, links, sws), net in zip(layout, subnets, strict=True):
        seg = Segment(name=name, medium=medium, subnet=str(net), links=links, switches=sws)
        host_ips = net.hosts()
        for link_name in links:
            link = link_of[link_name]
            if medium is Medium.ETHERNET and sws:
                a, b = link.endpoints
                if a in switches and b in switches:
                    k = next(counter)
                    trunks.append(Trunk(link_name, a, b, f"s{tag}v{k}a", f"s{tag}v{k}b",
                                        link.rate_mbps))
                    for sw, nm, peer in ((a, f"s{tag}v{k}a", b), (b, f"s{tag}v{k}b", a)):
                        ports = switches[sw].ports
                        ports.append(SwitchPort(len(ports) + 1, nm, peer))
                    continue
            for ep in link.endpoints:
                if ep in switches:
                    continue
                k = next(counter)
                ifname = f"eth{if_count[ep]}"
                if_count[ep] += 1
                kind = "t" if medium in (Medium.WIFI, Medium.P2P) else "v"
                endpoint = Endpoint(
                    node=ep, link=link_name, ifname=ifname, root_name=f"s{tag}{kind}{k}",
                    ip=str(next(host_ips)), prefixlen=net.prefixlen,
                    mac=_mac(tag, k) if medium is Medium.ETHERNET else None,
                )
                seg.members.append(endpoint)
                for sw in link.endpoints:
                    if sw in switches:
                        ports = switches[sw].ports
                        ports.append(SwitchPort(len(ports) + 1, endpoint.root_name, ep,
                                                endpoint.mac))
        segments.append(seg)
    for seg in segments:
        for m in seg.members:
            assert len(m.root_name) <= IFNAMSIZ and len(m.ifname) <= IFNAMSIZ
    plan = NetworkPlan(tag=tag, scenario=sc.name, namespaces=namespaces, segments=segments,
                       switches=switches, trunks=trunks, routes={}, primary_ip=primary,
                       switch_netns=f"sh{tag}.switch" if switches else None,
                       attached=dict(attached or {}), served_by=dict(served_by or {}))
    plan.routes = compute_routes(sc, plan)
    return plan


def node_addresses(pool: ipaddress.IPv4Network, hosts: list[str]) -> dict[str, str]:
    """Node addresses from the top of the pool, downwards, skipping .0 and .255 so that no
    address reads like a network or broadcast address."""
    top = int(pool.broadcast_address) - 1
    out: dict[str, str] = {}
    addr = top
    for node in hosts:
        while addr & 0xFF in (0, 255):
            addr -= 1
        out[node] = str(ipaddress.IPv4Address(addr))
        addr -= 1
    return out


def node_subnets_used(plan: NetworkPlan) -> int:
    """How many /24s at the top of the pool the node addresses occupy."""
    return len({ip.rsplit(".", 1)[0] for ip in plan.primary_ip.values()})


def _segment_cost(link_of: dict[str, Link], seg: Segment) -> float:
    """Route metric in milliseconds: configured one-way delay plus a per-hop cost."""
    delays = [link_of[n].delay_ms or 0.0 for n in seg.links]
    per_hop = {Medium.WIFI: 1.0, Medium.P2P: 0.2, Medium.ETHERNET: 0.1}[seg.medium]
    return max(delays, default=0.0) + per_hop


def host_graph(sc: Scenario, plan: NetworkPlan, down: frozenset[str] = frozenset(),
               cost: dict[str, float] | None = None,
               apart: dict[str, frozenset[frozenset[str]]] | None = None) -> nx.Graph:
    """Hosts joined by the cheapest segment they share; segments in `down` are left out.
    `cost` overrides the configured metric (ms) of some segments: the mobility engine passes
    the current propagation delays.  `apart`: per segment, member pairs that share it but
    cannot reach each other directly now (a Wi-Fi station and the access points it is not
    associated with)."""
    g = nx.Graph()
    g.add_nodes_from(plan.namespaces)
    link_of = {link.name: link for link in sc.links}
    for seg in plan.segments:
        if seg.name in down:
            continue
        c = cost[seg.name] if cost and seg.name in cost else _segment_cost(link_of, seg)
        for i, a in enumerate(seg.members):
            for b in seg.members[i + 1:]:
                if a.node == b.node or (apart and frozenset((a.node, b.node))
                                        in apart.get(seg.name, ())):
                    continue
                if not g.has_edge(a.node, b.node) or g[a.node][b.node]["weight"] > c:
                    g.add_edge(a.node, b.node, weight=c, segment=seg.name)
    return g


class RouteCache:
    """Per-host tables of the previous computation, reused when a host's next hops did not
    change (most hosts, at most handovers): unchanged tables cost nothing to rebuild, diff
    or install."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.tables: dict[str, list[Route]] = {}


def routed_nodes(sc: Scenario, plan: NetworkPlan) -> list[str]:
    """The hosts whose node address every other host routes: all of them, or with
    addressing.routes_to: ground the ones that are not satellites (and any node a hardware
    board's subnet hangs behind).  Satellites are then pure transit."""
    if sc.addressing.routes_to == "all":
        return list(plan.namespaces)
    return [n for n in plan.namespaces if n in plan.attached
            or (node := sc.nodes.get(n)) is None or node.kind is not NodeKind.SATELLITE]


def compute_routes(sc: Scenario, plan: NetworkPlan, down: frozenset[str] = frozenset(),
                   cost: dict[str, float] | None = None,
                   cache: RouteCache | None = None,
                   graph: nx.Graph | None = None) -> dict[str, list[Route]]:
    """Static shortest-path routes, per host, sourced from its own node address: to every
    other routed node's address (routed_nodes) and, with addressing.routes_to: all, to every
    subnet it is not on.

    Dijkstra runs in scipy (C) from every routed destination only (all hosts, or the ground
    nodes): the graph is undirected, so the predecessor of host u in the tree of
    destination d is u's next hop toward d, read off without walking any path.  Only hosts
    whose next hops changed get new tables (RouteCache).  (~10 ms for 100 hosts and 200
    subnets; ~50 ms for 1,000 hosts routing 100 ground nodes: it runs at every handover.)"""
    g = graph if graph is not None else host_graph(sc, plan, down, cost)
    hosts = list(plan.namespaces)
    idx = {n: i for i, n in enumerate(hosts)}
    n = len(hosts)
    by_name = {s.name: s for s in plan.segments}
    hop: list[dict[int, tuple[str, str]]] = [{} for _ in range(n)]  # u -> {v: (via, dev)}
    rows, cols, weights = [], [], []
    for u, v, data in g.edges(data=True):
        seg = by_name[data["segment"]]
        mu = next(m for m in seg.members if m.node == u)
        mv = next(m for m in seg.members if m.node == v)
        iu, iv = idx[u], idx[v]
        hop[iu][iv] = (mv.ip, mu.ifname)
        hop[iv][iu] = (mu.ip, mv.ifname)
        rows += [iu, iv]
        cols += [iv, iu]
        weights += [max(float(data["weight"]), 1e-9)] * 2  # a 0 would read as "no edge"
    csr = csr_matrix((weights, (rows, cols)), shape=(n, n))
    every = sc.addressing.routes_to == "all"
    dests = hosts if every else routed_nodes(sc, plan)
    d_idx = np.array([idx[d] for d in dests], dtype=np.int64)
    # rows: distances from / predecessors in the tree of each destination
    dist, pred = dijkstra(csr, directed=True, indices=d_idx, return_predecessors=True)
    nh_of = np.ascontiguousarray(pred.T)  # [u, j]: u's next hop toward dests[j]
    reach_of = np.ascontiguousarray(np.isfinite(dist).T) & (d_idx[None, :] != np.arange(n)[:,
                                                                                          None])
    dst_text = [f"{plan.primary_ip[d]}/32" for d in dests]
    attached = [plan.attached.get(d, ()) for d in dests]
    segs: list[tuple[Segment, list[str]]] = []
    if every:  # routes to the subnets too: aim at each subnet's nearest member
        # (ties: the first by name); dist rows are all hosts in order here
        segs = [(seg, sorted({m.node for m in seg.members}))
                for seg in plan.segments if seg.members]
        target = np.empty((n, len(segs)), dtype=np.int64)
        member = np.zeros((n, len(segs)), dtype=bool)
        for k, (_, nodes) in enumerate(segs):
            cols_k = np.array([idx[x] for x in nodes])
            target[:, k] = cols_k[np.argmin(dist[:, cols_k], axis=1)]
            member[cols_k, k] = True
        tgt_ok = np.isfinite(np.take_along_axis(dist, target, axis=1)) & ~member
        tgt = np.where(tgt_ok, target, -1)
    routes: dict[str, list[Route]] = {}
    for ui, u in enumerate(hosts):
        nh, reach = nh_of[ui], reach_of[ui]
        # which segment carries each of u's edges matters too (two links between two hosts)
        links = "|".join(f"{v}:{g[u][v]['segment']}" for v in g[u]).encode()
        key = nh.tobytes() + reach.tobytes() + links
        if every:
            key += tgt[ui].tobytes()
        if cache is not None and cache.keys.get(u) == key:
            routes[u] = cache.tables[u]
            continue
        src = plan.primary_ip[u]
        hops = hop[ui]
        table = []
        if every:
            for k in np.flatnonzero(tgt_ok[ui]).tolist():
                via, dev = hops[int(nh[tgt[ui, k]])]
                table.append(Route(segs[k][0].subnet, via, dev, src))
        sel = np.flatnonzero(reach)
        for j, v in zip(sel.tolist(), nh[sel].tolist(), strict=True):
            via, dev = hops[v]
            table.append(Route(dst_text[j], via, dev, src))
            if attached[j]:
                table += [Route(s, via, dev, src) for s in attached[j]]
        routes[u] = table
        if cache is not None:
            cache.keys[u], cache.tables[u] = key, table
    return routes
