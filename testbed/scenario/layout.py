"""How a scenario's links group into subnets: one per point-to-point or Wi-Fi link, one per
switched LAN (the links around a connected set of switches).  Pure and order-stable, so the
address-space check at load time and the planner count the same subnets."""

from __future__ import annotations

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
