"""Each host's share of a scenario: from the scenario, the one global NetworkPlan and the
placement, what every host creates, emulates and joins.

Addresses and routes are computed ONCE, globally (testbed.net.plan.build): a node keeps the
address, interface names and routes it has in a single-host run, whichever host runs it, so
routing needs no per-host computation and a node's routes are installed only by its host.

The rules (each pure and deterministic, so every host computes the same split):

* a point-to-point or Wi-Fi link is emulated on exactly one host: the host of most of its
  endpoints, ties going to the host of its first endpoint;
* a switched LAN (its switches, their trunks and every port) is emulated whole on one host:
  the host of most of its switches, ties to its first switch's; its switches are placed there
  (a trunk never crosses hosts);
* a link end whose node lives on another host is a *remote end* of the emulating host: the
  engine attaches it in the share's gateway namespace (`sh<tag>.gw`) instead of the node's,
  where it is bridged to a VXLAN device toward the node's host;
* the same end is a *joined end* of the node's host: a VXLAN device with the same VNI, moved
  into the node's namespace under the endpoint's interface name and configured like a local
  end (MAC, address, neighbours, routes).

Every cross-host end gets its own VNI (`cluster.vni_base` + its index in plan order): one
tunnel per end keeps each end an Ethernet segment of its own, exactly the shape the engines
already serve (a tap or a veth per end).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.net.plan import NetworkPlan, Segment
from testbed.scenario.cluster import Cluster
from testbed.scenario.model import Scenario

VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


@dataclass(frozen=True)
class CrossEnd:
    """One link end whose node and emulation are on different hosts."""

    link: str
    segment: str
    node: str
    ifname: str  # the endpoint's name in the node (eth<k>)
    root_name: str  # the engine's name for it (tap / veth), global plan's tag
    ip: str
    prefixlen: int
    vni: int
    emulated_on: str  # host of the link's emulation (gateway side)
    node_host: str  # host of the node (joined side)


@dataclass
class Share:
    host: str
    nodes: list[str]  # namespaces this host creates (not switches)
    switches: list[str]
    segments: list[str]  # segments (links, LANs) this host emulates
    links: list[str]  # the links of those segments
    remote_ends: list[CrossEnd] = field(default_factory=list)
    joined_ends: list[CrossEnd] = field(default_factory=list)
    peers: dict[str, str] = field(default_factory=dict)  # host -> its tunnel address

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Split:
    placement: dict[str, str]  # node -> host (switches moved with their LAN)
    emulated_on: dict[str, str]  # segment -> host
    shares: dict[str, Share]
    cross: list[CrossEnd]

    def to_dict(self) -> dict[str, Any]:
        return {"placement": dict(self.placement), "emulated_on": dict(self.emulated_on),
                "shares": {h: s.to_dict() for h, s in self.shares.items()},
                "cross": [asdict(c) for c in self.cross]}


def _majority(hosts: list[str]) -> str:
    """Most frequent host; ties to the one that appears first."""
    counts = Counter(hosts)
    top = max(counts.values())
    return next(h for h in hosts if counts[h] == top)


def _segment_host(sc: Scenario, seg: Segment, place: dict[str, str]) -> str:
    if seg.switches:
        return _majority([place[s] for s in seg.switches])
    link = sc.link(seg.links[0])
    return _majority([place[n] for n in link.endpoints])


def split(sc: Scenario, plan: NetworkPlan, cluster: Cluster, placement: dict[str, str]) -> Split:
    """The shares of every host of `cluster` (each host gets one, even an empty one)."""
    missing = [n for n in sc.nodes if n not in placement]
    if missing:
        raise ValueError(f"placement misses nodes: {', '.join(missing)}")
    hosts = [h.name for h in cluster.hosts]
    unknown = sorted({h for h in placement.values() if h not in hosts})
    if unknown:
        raise ValueError(f"placement names unknown hosts: {', '.join(unknown)}")
    place = dict(placement)
    emulated_on: dict[str, str] = {}
    for seg in plan.segments:
        host = _segment_host(sc, seg, place)
        emulated_on[seg.name] = host
        for s in seg.switches:
            pinned = cluster.placement.pins.get(s)
            if pinned is not None and pinned != host:
                raise ValueError(f"switch {s} is pinned to {pinned}, but its LAN "
                                 f"({seg.name}) is emulated on {host}: a LAN is never split "
                                 "across hosts; pin its switches to one host")
            place[s] = host
    cross: list[CrossEnd] = []
    for seg in plan.segments:
        host = emulated_on[seg.name]
        for m in seg.members:
            if place[m.node] != host:
                cross.append(CrossEnd(
                    link=m.link, segment=seg.name, node=m.node, ifname=m.ifname,
                    root_name=m.root_name, ip=m.ip, prefixlen=m.prefixlen,
                    vni=cluster.vni_base + len(cross), emulated_on=host,
                    node_host=place[m.node]))
    switches = set(sc.switches())
    shares: dict[str, Share] = {}
    for h in hosts:
        segs = [s for s in plan.segments if emulated_on[s.name] == h]
        shares[h] = Share(
            host=h,
            nodes=[n for n in sc.nodes if place[n] == h and n not in switches],
            switches=[n for n in sc.nodes if place[n] == h and n in switches],
            segments=[s.name for s in segs],
            links=[name for s in segs for name in s.links],
            remote_ends=[c for c in cross if c.emulated_on == h],
            joined_ends=[c for c in cross if c.node_host == h],
        )
        peers = {c.node_host for c in shares[h].remote_ends} | \
            {c.emulated_on for c in shares[h].joined_ends}
        shares[h].peers = {p: cluster.host(p).tunnel_address for p in sorted(peers)}
    return Split(place, emulated_on, shares, cross)


def retag(plan: NetworkPlan, tag: str) -> NetworkPlan:
    """The same plan under another run tag: names (namespaces, taps, veths, bridges, the
    switch namespace) change, addresses, MACs, interface names in the nodes and routes do
    not.  Each share runs under a tag of its own, so shares on one machine (the stand-in
    hosts) never collide, and each share's teardown (which also sweeps names with its tag)
    touches only what it made."""
    old = plan.tag
    if len(tag) != 4 or any(c not in "0123456789abcdef" for c in tag):
        raise ValueError("tag must be 4 lower-case hex digits")

    def sub(name: str) -> str:
        for prefix in (f"sh{old}", f"s{old}"):
            if name.startswith(prefix):
                return prefix.replace(old, tag) + name[len(prefix):]
        return name

    new = copy.deepcopy(plan)
    new.__dict__.pop("_by_link", None)
    new.tag = tag
    new.namespaces = {n: sub(ns) for n, ns in plan.namespaces.items()}
    for seg in new.segments:
        for m in seg.members:
            m.root_name = sub(m.root_name)
    for sw in new.switches.values():
        sw.bridge = sub(sw.bridge)
        for p in sw.ports:
            p.root_name = sub(p.root_name)
    for t in new.trunks:
        t.a_name, t.b_name = sub(t.a_name), sub(t.b_name)
    new.switch_netns = sub(new.switch_netns) if new.switch_netns else None
    return new


def gateway_netns(tag: str) -> str:
    """The share's gateway namespace: remote ends of the links it emulates live here."""
    return f"sh{tag}.gw"


def end_mtu(underlay_mtu: int = 1500) -> int:
    """MTU of a cross-host end: the underlay's less the VXLAN encapsulation.  Both sides of
    the tunnel, and the engine's end in the gateway namespace, get it, so no packet is
    fragmented or dropped for size on the underlay."""
    return underlay_mtu - VXLAN_OVERHEAD


def share_plan(plan: NetworkPlan, share: Share, tag: str) -> NetworkPlan:
    """The plan one host builds: the global plan under the share's tag, its namespaces and
    routes limited to the host's nodes, its switches (and their trunks) to the host's
    switches.  Segments keep every member: a member whose node is elsewhere is a remote end
    (attached in the gateway namespace) or belongs to a link another host emulates."""
    new = retag(plan, tag)
    mine = set(share.nodes)
    new.namespaces = {n: ns for n, ns in new.namespaces.items() if n in mine}
    new.routes = {n: rs for n, rs in new.routes.items() if n in mine}
    new.switches = {n: s for n, s in new.switches.items() if n in share.switches}
    new.trunks = [t for t in new.trunks if t.a in share.switches]
    if not new.switches:
        new.switch_netns = None
    return new


def end_device(plan: NetworkPlan, end: CrossEnd, tag: str) -> str:
    """The name, under the share's tag, of the device that stands for a cross-host end where
    it is created: the engine's tap / veth in the gateway namespace, the VXLAN in the node
    (a switched LAN's host end is the veth's `p` side, as in Network._veths)."""
    seg = plan.segment_of(end.link)
    root = f"s{tag}{end.root_name[len(plan.tag) + 1:]}"
    return root + ("p" if seg.switches else "")


def crossing_links(sp: Split) -> set[str]:
    return {c.link for c in sp.cross}
