"""How a scenario's links group into subnets: one per point-to-point or Wi-Fi link, one per
switched LAN (the links around a connected set of switches).  Pure and order-stable, so the
address-space check at load time and the planner count the same subnets."""

from __future__ import annotations

import ipaddress

import networkx as nx

from testbed.scenario.model import Medium, Scenario


def segments_layout(sc: Scenario) -> list[tuple[str, Medium, list[str], list[str]]]:
    """(name, medium, link names, switches) of every subnet, in a stable order."""
    out: list[tuple[str, Medium, list[str], list[str]]] = []
    switches = set(sc.switches())
    lan = nx.Graph()
    lan.add_nodes_from(switches)
    for link in sc.links:
        medium = link.carried_by
        if medium is Medium.ETHERNET and (switches & set(link.endpoints)):
            a, b = link.endpoints
            if a in switches and b in switches:
                lan.add_edge(a, b)
            continue
        out.append((link.name, medium, [link.name], []))
    order = {n: i for i, n in enumerate(sc.nodes)}
    for comp in sorted(nx.connected_components(lan), key=lambda c: min(order[n] for n in c)):
        comp_sw = sorted(comp, key=order.__getitem__)
        links = [
            link.name for link in sc.links
            if link.carried_by is Medium.ETHERNET and set(link.endpoints) & comp
        ]
        if any(set(sc.link(n).endpoints) - switches for n in links):
            # ':' cannot occur in a link name, so a LAN never shares a link's name
            out.append((f"lan:{comp_sw[0]}", Medium.ETHERNET, links, comp_sw))
    return out


def count_segments(sc: Scenario) -> int:
    return len(segments_layout(sc))


def subnet_prefixes(sc: Scenario) -> list[int]:
    """Prefix length of every subnet, in segments_layout order: addressing.p2p_prefix for a
    point-to-point segment (a p2p link, or an Ethernet link without a switch: exactly two
    members), /24 for Wi-Fi cells and switched LANs."""
    p2p = sc.addressing.p2p_prefix
    return [p2p if point_to_point(medium, sws) else 24 for _, medium, _, sws in
            segments_layout(sc)]


def point_to_point(medium: Medium, switches: list[str]) -> bool:
    return medium is Medium.P2P or (medium is Medium.ETHERNET and not switches)


def allocate(pool: ipaddress.IPv4Network,
             prefixes: list[int]) -> tuple[list[ipaddress.IPv4Network], int]:
    """The subnets, from the bottom of the pool up, and how many /24s they take (the first
    one, x.x.0.0/24, kept unused, included).  A /24 subnet takes the next whole /24; smaller
    ones are packed in order into /24s of their own, so with every prefix 24 (the default)
    segment k is simply the (k+1)-th /24 of the pool."""
    base = int(pool.network_address)
    block = 1  # next whole /24 (index from the bottom of the pool)
    small, small_end = 0, 0  # packing cursor inside the current /24 of small subnets
    out: list[ipaddress.IPv4Network] = []
    for p in prefixes:
        if p == 24:
            out.append(ipaddress.IPv4Network((base + block * 256, 24)))
            block += 1
            continue
        size = 1 << (32 - p)
        small = -(-small // size) * size
        if small + size > small_end:
            small, small_end = base + block * 256, base + (block + 1) * 256
            block += 1
        out.append(ipaddress.IPv4Network((small, p)))
        small += size
    return out, block


def blocks_needed(sc: Scenario) -> tuple[int, int]:
    """(/24s the subnets take, the unused first one included; /24s the node addresses take
    at the top of the pool: 254 per /24, .0 and .255 skipped)."""
    pool = ipaddress.ip_network(sc.addressing.pool)
    assert isinstance(pool, ipaddress.IPv4Network)
    _, blocks = allocate(pool, subnet_prefixes(sc))
    return blocks, -(-len(sc.hosts()) // 254)
