"""Health checks before time zero: services alive, switches programmed, every node reaching
every other node and every one-hop neighbour.  A failure stops the run with the list of
unreachable pairs; nothing starts on a half-working network."""

from __future__ import annotations

import subprocess
import time
from collections import deque

import networkx as nx

from testbed.lifecycle.sh import in_netns
from testbed.net.network import Network
from testbed.net.plan import routed_nodes


class HealthError(RuntimeError):
    pass


ALL_PAIRS_MAX_HOSTS = 30
ANCHORS = 3
PARALLEL = 8  # fping processes at a time (each one fping per namespace, many targets)
PARALLEL_LARGE = 24  # above ALL_PAIRS_MAX_HOSTS: one-hop checks are short and independent


def targets(net: Network) -> dict[str, dict[str, str]]:
    """node -> {ip: what}: one-hop neighbours, and other nodes' node addresses.

    Node addresses: only those routes lead to (testbed.net.plan.routed_nodes: every node, or
    with addressing.routes_to: ground the nodes that are not satellites), pinged only from
    routed nodes (a satellite's echo request would carry a source nobody routes back to).
    Up to ALL_PAIRS_MAX_HOSTS routed nodes every pair is checked; above that a few anchor
    nodes (the first routed hosts of the scenario) ping every routed node and every routed
    node pings them: n^2 pings crossing up to a dozen simulated hops would overload the
    (debug-build) ns-3 process and measure the check instead of the network.  One-hop
    neighbours: every member of every up segment pings the others; in a large network a
    point-to-point segment is pinged from one end only (the echo and its reply cross the link
    both ways).  Neighbours plus anchors still prove every link and every routed node's
    routes, in O(links + nodes) pings."""
    plan = net.plan
    out: dict[str, dict[str, str]] = {n: {} for n in plan.namespaces}
    routed = routed_nodes(net.sc, plan)
    large = len(plan.namespaces) > ALL_PAIRS_MAX_HOSTS
    peers = routed if len(routed) <= ALL_PAIRS_MAX_HOSTS else routed[:ANCHORS]
    # Links that are down now (a satellite not in view, a timeline link_down) are not
    # checked, nor node pairs that today's geometry leaves disconnected.
    down = net.down_segments()
    island = {n: i for i, comp in enumerate(nx.connected_components(net.routing_graph()))
              for n in comp}
    with net.lock:  # Wi-Fi pairs that cannot hear each other now (hwsim engine)
        apart = {plan.segment_of(link).name: pairs for link, pairs in net.apart.items()}
    for node in routed:
        if node not in out:  # another host's node (a share of a multi-host run)
            continue
        t = out[node]
        t.update({plan.primary_ip[o]: f"{o} (primary)" for o in peers
                  if o != node and island[o] == island[node]})
        if len(routed) > ALL_PAIRS_MAX_HOSTS and node in peers:
            t.update({plan.primary_ip[o]: f"{o} (primary)" for o in routed
                      if o != node and island[o] == island[node]})
    for seg in plan.segments:
        if seg.name in down:
            continue
        pinging = seg.members[:1] if large and len(seg.members) == 2 else seg.members
        for a in pinging:
            if a.node not in out:
                continue
            for m in seg.members:
                if m.node != a.node and frozenset((a.node, m.node)) not in apart.get(
                        seg.name, ()):
                    out[a.node][m.ip] = f"{m.node} on {seg.name}"
    return out


def reachability(net: Network, timeout: float = 30.0) -> dict[str, float | int]:
    """fping from every node, PARALLEL namespaces at a time (a rolling window: the next one
    starts as soon as the oldest one ends), retrying until all answer or `timeout`."""
    want = targets(net)
    pending = {n: set(t) for n, t in want.items()}
    width = PARALLEL_LARGE if len(want) > ALL_PAIRS_MAX_HOSTS else PARALLEL
    t0 = time.monotonic()
    rounds = 0
    while True:
        rounds += 1
        todo = [(node, ips) for node, ips in pending.items() if ips]
        running: deque[tuple[str, subprocess.Popen[str]]] = deque()
        for k in range(len(todo) + width):
            if k >= width or k >= len(todo):
                if not running:
                    break
                node, p = running.popleft()
                out, _ = p.communicate(timeout=120)
                pending[node] -= set(out.split())
            if k < len(todo):
                node, ips = todo[k]
                running.append((node, subprocess.Popen(
                    in_netns(net.plan.namespaces[node],
                             ["fping", "-a", "-r", "2", "-t", "500", "-i", "5", *sorted(ips)]),
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
        if not any(pending.values()):
            return {"reachability_s": round(time.monotonic() - t0, 3), "rounds": rounds,
                    "pairs": sum(len(t) for t in want.values())}
        net.check()
        if time.monotonic() - t0 > timeout:
            lines = [f"  {node} -> {want[node][ip]} ({ip})"
                     for node, ips in sorted(pending.items()) for ip in sorted(ips)]
            raise HealthError(f"unreachable after {timeout:.0f} s:\n" + "\n".join(lines[:40]))
        time.sleep(0.5)


def services(net: Network, timeout: float = 12.0) -> None:
    """ovs-vswitchd refreshes a controller's is_connected column in its database only every
    few seconds, so a controller that programmed its switches within milliseconds can still
    read as disconnected: poll instead of checking once."""
    net.check()
    if net.ovs is not None and "sdn_ready_s" not in net.timings:
        # (a ready line is written only after the switch answered a barrier: stronger proof)
        t0 = time.monotonic()
        while True:
            states = net.ovs.connected()
            if states and all(states.values()):
                return
            if time.monotonic() - t0 > timeout:
                raise HealthError(f"Open vSwitch bridges not connected to os-ken: {states}")
            net.check()
            time.sleep(0.25)
