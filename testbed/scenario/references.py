"""Checks that need the whole scenario: names that refer to other parts, and reachability.

pydantic validates each section on its own; these checks report every dangling reference
with the exact field path so the user can fix the file in one pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import networkx as nx

from testbed.scenario.cluster import problems as cluster_problems
from testbed.scenario.errors import Problem, suggest
from testbed.scenario.layout import blocks_needed, point_to_point, segments_layout
from testbed.scenario.model import EventAction, Medium, NodeKind, Scenario
from testbed.workloads import Registry


def check(sc: Scenario, registry: Registry | None = None) -> list[Problem]:
    registry = registry or Registry.installed()
    problems: list[Problem] = []
    nodes = list(sc.nodes)
    link_names = [link.name for link in sc.links]
    flow_names = [f.name for f in sc.traffic]

    def unknown(path: str, name: str, pool: list[str], what: str) -> None:
        problems.append(Problem(path, f"unknown {what[:-1]} '{name}'", suggest(name, pool, what)))

    for names, section in ((link_names, "links"), (flow_names, "traffic")):
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                problems.append(Problem(f"{section}[{i}].name", f"duplicate name '{n}'",
                                        "give every entry a unique name"))
            seen.add(n)

    wifi_nodes: set[str] = set()
    for i, link in enumerate(sc.links):
        medium = link.carried_by
        for j, ep in enumerate(link.endpoints):
            path = f"links[{i}].endpoints[{j}]"
            if ep not in sc.nodes:
                unknown(path, ep, nodes, "nodes")
                continue
            node = sc.nodes[ep]
            if node.kind is NodeKind.SWITCH and medium is not Medium.ETHERNET:
                problems.append(Problem(path, f"switch '{ep}' can only join wired links",
                                        "use kind: wired for links to a switch"))
            if medium is Medium.WIFI or link.channel is not None:
                wifi_nodes.add(ep)
                if not node.placed:
                    why = "Wi-Fi link" if medium is Medium.WIFI else "channel-model link"
                    problems.append(Problem(
                        f"nodes.{ep}.position", f"node '{ep}' is on {why} '{link.name}' "
                        "but has no position", "add position: [x, y, z] in metres, a location "
                        "{lat_deg, lon_deg} or a motion model"))
        if link.wifi is not None and link.wifi.mode != "adhoc" and sc.engines.wifi != "hwsim":
            problems.append(Problem(
                f"links[{i}].wifi.mode", f"mode {link.wifi.mode} needs real 802.11 radios "
                f"(engines.wifi is {sc.engines.wifi}, which emulates ad hoc cells only)",
                "set engines: {wifi: hwsim} (kernels with mac80211_hwsim) or mode: adhoc"))

    for i, flow in enumerate(sc.traffic):
        for fld in ("src", "dst"):
            name = getattr(flow, fld)
            if name not in sc.nodes:
                unknown(f"traffic[{i}].{fld}", name, sc.hosts(), "nodes")
            elif sc.nodes[name].kind is NodeKind.SWITCH:
                problems.append(Problem(f"traffic[{i}].{fld}", f"'{name}' is a switch",
                                        "traffic runs between hosts, not switches"))
            elif (sc.nodes[name].kind is NodeKind.SATELLITE
                  and sc.addressing.routes_to == "ground"):
                problems.append(Problem(
                    f"traffic[{i}].{fld}", f"'{name}' is a satellite and addressing.routes_to "
                    "is ground: no host has a route to a satellite's node address (satellites "
                    "only forward)", "run the flow between ground nodes (not satellites), or "
                    "set addressing: {routes_to: all}"))
        end = flow.start_s + flow.duration_s
        if end > sc.duration_s + 1e-9:
            problems.append(Problem(f"traffic[{i}].duration_s",
                                    f"flow ends at {end:g} s, after the run ends "
                                    f"(duration_s: {sc.duration_s:g})",
                                    "shorten the flow or raise duration_s"))

    for i, ev in enumerate(sc.timeline):
        path = f"timeline[{i}]"
        if ev.at_s > sc.duration_s:
            problems.append(Problem(f"{path}.at_s", f"event at {ev.at_s:g} s is after the run "
                                    f"ends ({sc.duration_s:g} s)", "move it or raise duration_s"))
        if ev.link is not None and ev.link not in link_names:
            unknown(f"{path}.link", ev.link, link_names, "links")
        if ev.flow is not None and ev.flow not in flow_names:
            unknown(f"{path}.flow", ev.flow, flow_names, "flows")
        if ev.node is not None and ev.node not in sc.nodes:
            unknown(f"{path}.node", ev.node, nodes, "nodes")
        if ev.link in link_names:
            link = sc.link(ev.link)
            if ev.action is EventAction.SET_LINK and link.carried_by is Medium.WIFI:
                problems.append(Problem(path, f"set_link on Wi-Fi link '{link.name}'",
                                        "Wi-Fi links change by moving nodes (action: move)"))
            elif ev.rate_back_mbps is not None and link.carried_by is not Medium.P2P:
                problems.append(Problem(f"{path}.rate_back_mbps", f"'{link.name}' is a "
                                        f"{link.carried_by.value} link; only point-to-point "
                                        "links have a rate per direction",
                                        "use rate_mbps (both directions)"))
            if ev.node is not None and ev.node not in link.endpoints:
                problems.append(Problem(f"{path}.node", f"'{ev.node}' is not an endpoint of "
                                        f"'{link.name}'", f"use one of {link.endpoints}"))
        movable = wifi_nodes | {n for acc in sc.access for n in acc.terminals} | {
            n for acc in sc.access if isinstance(acc.candidates, list) for n in acc.candidates}
        if ev.action is EventAction.MOVE and ev.node in sc.nodes:
            if ev.node not in movable:
                problems.append(Problem(f"{path}.node", f"'{ev.node}' is on no Wi-Fi, "
                                        "channel-model or access link, so moving it changes "
                                        "nothing", "move a node whose links follow geometry"))
            elif sc.nodes[ev.node].motion is not None:
                problems.append(Problem(f"{path}.node", f"'{ev.node}' follows a motion model",
                                        "remove the move event or the node's motion"))
        if ev.action in (EventAction.NODE_CRASH, EventAction.NODE_RESTART, EventAction.EXEC) and (
            ev.node in sc.nodes and sc.nodes[ev.node].kind is NodeKind.SWITCH
        ):
            problems.append(Problem(f"{path}.node", f"'{ev.node}' is a switch",
                                    "crash, restart and exec act on hosts"))

    problems += _access(sc, unknown, link_names)
    problems += _telemetry(sc)
    problems += _roads(sc)
    problems += _workloads(sc, registry)
    problems += cluster_problems(sc)

    if isinstance(sc.capture.links, list):
        for i, name in enumerate(sc.capture.links):
            if name not in link_names:
                unknown(f"capture.links[{i}]", name, link_names, "links")

    if problems:
        return problems
    problems += _reachability(sc)
    problems += _address_space(sc)
    return problems


def _access(sc: Scenario, unknown: Callable[[str, str, list[str], str], None],
            link_names: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, acc in enumerate(sc.access):
        path = f"access[{i}]"
        if acc.name in seen or acc.name in link_names:
            problems.append(Problem(f"{path}.name", f"'{acc.name}' is already the name of a "
                                    "link or access group", "give it a unique name"))
        seen.add(acc.name)
        if acc.candidates == "constellation" and sc.constellation is None:
            problems.append(Problem(f"{path}.candidates", "candidates: constellation but the "
                                    "scenario has no constellation section",
                                    "add constellation: {walker: {...}} or list candidate nodes"))
        groups = [("terminals", acc.terminals)]
        if isinstance(acc.candidates, list):
            groups.append(("candidates", acc.candidates))
        for field, names in groups:
            for j, name in enumerate(names):
                if name not in sc.nodes:
                    unknown(f"{path}.{field}[{j}]", name, sc.hosts(), "nodes")
                elif sc.nodes[name].kind is NodeKind.SWITCH:
                    problems.append(Problem(f"{path}.{field}[{j}]", f"'{name}' is a switch",
                                            "terminals and candidates are hosts"))
                elif not sc.nodes[name].placed:
                    problems.append(Problem(
                        f"nodes.{name}.position", f"'{name}' is in access group '{acc.name}' "
                        "but has no position", "add position: [x, y, z], a location "
                        "{lat_deg, lon_deg} or a motion model"))
        if isinstance(acc.candidates, list):
            both = set(acc.terminals) & set(acc.candidates)
            if both:
                problems.append(Problem(f"{path}.candidates", f"{sorted(both)} are both "
                                        "terminals and candidates", "list each node once"))
    return problems


def _telemetry(sc: Scenario) -> list[Problem]:
    """Nodes whose position a workload section reports at run time (an autopilot's UAV):
    they start at their home and move by telemetry, never by a motion model."""
    problems: list[Problem] = []
    for name, node in sc.nodes.items():
        if not node.reports_position:
            continue
        section = next(k for k, v in node.sections.items()
                       if getattr(type(v), "reports_position", False))
        if node.motion is not None:
            problems.append(Problem(f"nodes.{name}.motion", f"'{name}' is moved by its "
                                    f"{section}, not by a motion model",
                                    "remove motion (its position is home)"))
        if node.position is None and node.location is None:
            problems.append(Problem(f"nodes.{name}.position", f"'{name}' has an {section} "
                                    "but no home", "add position: [x, y, z] (metres, local "
                                    "frame) or location: {lat_deg, lon_deg}"))
    return problems


def _roads(sc: Scenario) -> list[Problem]:
    """Vehicles need a road network to drive on (the network itself and the routes are
    checked when the world opens it: testbed.mobility.roads)."""
    vehicles = [n for n, node in sc.nodes.items() if node.kind is NodeKind.VEHICLE]
    if vehicles and sc.roads is None:
        return [Problem(f"nodes.{vehicles[0]}.kind", f"{len(vehicles)} vehicle(s) "
                        f"({', '.join(vehicles[:3])}...) but no road network to drive them",
                        "add a roads section, e.g. roads: {net: roads/grid5x5.net.xml}")]
    return []


def _workloads(sc: Scenario, registry: Registry) -> list[Problem]:
    apps = registry.sdn_apps()
    problems: list[Problem] = []
    if sc.services.sdn.app not in apps:
        problems.append(Problem("services.sdn.app", f"unknown SDN app '{sc.services.sdn.app}'",
                                suggest(sc.services.sdn.app, list(apps), "apps")))
    for _, check in registry.calls("check"):
        problems += check(sc)
    return problems


def _reachability(sc: Scenario) -> list[Problem]:
    g = nx.Graph()
    g.add_nodes_from(sc.nodes)
    for link in sc.links:
        hub = f"link:{link.name}"
        g.add_edges_from((hub, ep) for ep in link.endpoints)
    for acc in sc.access:
        # Generated at run time: one link per (terminal, candidate); the constellation's
        # satellites are one hub here since they join each other by ISLs or bent pipes.
        hub = f"access:{acc.name}"
        g.add_edges_from((hub, t) for t in acc.terminals)
        cands = ["constellation"] if acc.candidates == "constellation" else acc.candidates
        g.add_edges_from((hub, c) for c in cands)
    hosts = sc.hosts()
    problems = []
    for h in hosts:
        if g.degree(h) == 0:
            problems.append(Problem(f"nodes.{h}", f"node '{h}' has no link",
                                    "add a link to it or remove the node"))
    if problems or len(hosts) < 2:
        return problems
    comps = [c for c in nx.connected_components(g) if any(h in c for h in hosts)]
    if len(comps) > 1:
        groups = ["{" + ", ".join(sorted(h for h in c if h in sc.nodes)) + "}" for c in comps]
        problems.append(Problem("links", "the network is split into islands that cannot reach "
                                "each other: " + " | ".join(groups),
                                "add links so every host can reach every other"))
    return problems


def _address_space(sc: Scenario) -> list[Problem]:
    pool = ipaddress.ip_network(sc.addressing.pool)
    # one /24 is kept unused at the bottom; node addresses take 254 per /24 at the top
    total = 2 ** (24 - pool.prefixlen)
    subnets, nodes = blocks_needed(sc)
    if subnets + nodes <= total:
        return []
    layout = segments_layout(sc)
    p2p = sum(1 for _, medium, _, sws in layout if point_to_point(medium, sws))
    if sc.addressing.p2p_prefix == 24:
        bigger = "198.18.0.0/15" if pool.prefixlen > 15 else "10.0.0.0/12"
        fix = f"use a larger pool, e.g. addressing.pool: {bigger}"
        if p2p:
            fix += (f", or smaller subnets for the {p2p} point-to-point links: "
                    "addressing.p2p_prefix: 30 (64 per /24) or 31 (128 per /24)")
        return [Problem("addressing.pool", f"{subnets - 1 + nodes} /24 subnets needed (links, "
                        f"node addresses) but {pool} holds {total - 1} /24 subnets", fix)]
    return [Problem("addressing.pool", f"{subnets - 1} /24s needed for the subnets ({p2p} "
                    f"point-to-point /{sc.addressing.p2p_prefix}s, "
                    f"{len(layout) - p2p} /24s) and {nodes} for "
                    f"{len(sc.hosts())} node addresses, but {pool} holds {total - 1} /24s",
                    "use a larger pool, e.g. addressing.pool: "
                    + ("198.18.0.0/15" if pool.prefixlen > 15 else "10.0.0.0/12")
                    + (", or addressing.p2p_prefix: 31" if sc.addressing.p2p_prefix != 31
                       else ""))]
