"""Health checks before time zero: services alive, switches programmed, every node reaching
every other node and every one-hop neighbour.  A failure stops the run with the list of
unreachable pairs; nothing starts on a half-working network."""

from __future__ import annotations

import subprocess
import time

from testbed.network import Network
from testbed.sh import in_netns


class HealthError(RuntimeError):
    pass


def targets(net: Network) -> dict[str, dict[str, str]]:
    """node -> {ip: what} for all other nodes' primary addresses and one-hop neighbours."""
    plan = net.plan
    out: dict[str, dict[str, str]] = {}
    for node in plan.namespaces:
        t = {ip: f"{other} (primary)" for other, ip in plan.primary_ip.items() if other != node}
        for seg in plan.segments:
            if any(m.node == node for m in seg.members):
                for m in seg.members:
                    if m.node != node:
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
        procs = {
            node: subprocess.Popen(
                in_netns(net.plan.namespaces[node],
                         ["fping", "-a", "-r", "2", "-t", "300", "-i", "2", *sorted(ips)]),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for node, ips in pending.items() if ips
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


def services(net: Network) -> None:
    net.check()
    if net.ovs is not None:
        states = net.ovs.connected()
        if not states or not all(states.values()):
            raise HealthError(f"Open vSwitch bridges not connected to os-ken: {states}")
