"""Health checks before time zero: services alive, switches programmed, every node reaching
every other node and every one-hop neighbour.  A failure stops the run with the list of
unreachable pairs; nothing starts on a half-working network."""

from __future__ import annotations

import subprocess
import time

import networkx as nx

from testbed.lifecycle.sh import in_netns
from testbed.net.network import Network


class HealthError(RuntimeError):
    pass


ALL_PAIRS_MAX_HOSTS = 30
ANCHORS = 3
PARALLEL = 8


def targets(net: Network) -> dict[str, dict[str, str]]:
    """node -> {ip: what}: every one-hop neighbour, and every other node's primary address.

    Above ALL_PAIRS_MAX_HOSTS hosts the all-pairs part is replaced by a few anchor nodes
    (the first hosts of the scenario): n^2 pings crossing up to a dozen simulated hops would
    overload the (debug-build) ns-3 process and measure the check instead of the network.
    Neighbours plus anchors still prove every link and every node's routes."""
    plan = net.plan
    out: dict[str, dict[str, str]] = {}
    hosts = list(plan.primary_ip)
    peers = hosts if len(hosts) <= ALL_PAIRS_MAX_HOSTS else hosts[:ANCHORS]
    # Links that are down now (a satellite not in view, a timeline link_down) are not
    # checked, nor node pairs that today's geometry leaves disconnected.
    down = net.down_segments()
    island = {n: i for i, comp in enumerate(nx.connected_components(net.routing_graph()))
              for n in comp}
    with net.lock:  # Wi-Fi pairs that cannot hear each other now (hwsim engine)
        apart = {plan.segment_of(link).name: pairs for link, pairs in net.apart.items()}
    for node in plan.namespaces:
        t = {plan.primary_ip[o]: f"{o} (primary)" for o in peers
             if o != node and island[o] == island[node]}
        if len(hosts) > ALL_PAIRS_MAX_HOSTS and node in peers:
            t.update({ip: f"{o} (primary)" for o, ip in plan.primary_ip.items()
                      if o != node and island[o] == island[node]})
        for seg in plan.segments:
            if seg.name not in down and any(m.node == node for m in seg.members):
                for m in seg.members:
                    if m.node != node and frozenset((node, m.node)) not in apart.get(
                            seg.name, ()):
                        t[m.ip] = f"{m.node} on {seg.name}"
        out[node] = t
    return out


def reachability(net: Network, timeout: float = 30.0) -> dict[str, float | int]:
    """fping from every node in parallel, retrying until all answer or `timeout`."""
    want = targets(net)
    pending = {n: set(t) for n, t in want.items()}
    t0 = time.monotonic()
    rounds = 0
    while True:
        rounds += 1
        todo = [(node, ips) for node, ips in pending.items() if ips]
        for i in range(0, len(todo), PARALLEL):
            procs = {
                node: subprocess.Popen(
                    in_netns(net.plan.namespaces[node],
                             ["fping", "-a", "-r", "2", "-t", "500", "-i", "5", *sorted(ips)]),
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for node, ips in todo[i:i + PARALLEL]
            }
            for node, p in procs.items():
                out, _ = p.communicate(timeout=120)
                pending[node] -= set(out.split())
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
