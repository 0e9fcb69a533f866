"""Link probes: one fping per probing node, pinging each of its links' peers in a loop for the
whole run.  Gives every link a measured RTT and loss to set beside its configured values;
one process per node (not per link) keeps 100-link scenarios cheap."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from testbed.lifecycle.supervisor import Managed, Supervisor
from testbed.net.network import Network
from testbed.scenario.model import Medium

# fping -l -D: "[t] ip : [seq], 84 bytes, 1.23 ms (...)" or "[t] ip : [seq], timed out (...)";
# fping pads the address column to its longest target, so any run of spaces precedes ":"
_LINE = re.compile(r"^\[(\d+\.\d+)\] (\S+)\s+: \[(\d+)\], (?:\d+ bytes, ([\d.]+) ms|timed out)")
PROBE_IP_BYTES = 84  # fping's default 56-byte payload + ICMP + IPv4 headers


def probe_pairs(net: Network) -> dict[str, list[tuple[str, str, str]]]:
    """node -> [(link, peer node, peer ip)]: the first member of each link probes the rest."""
    pairs: dict[str, list[tuple[str, str, str]]] = {}
    for seg in net.plan.segments:
        if seg.switches:
            # A switched LAN: the first host probes every other host across the switches;
            # the sample is filed under the far host's access link.
            src = seg.members[0]
            for m in seg.members[1:]:
                pairs.setdefault(src.node, []).append((m.link, m.node, m.ip))
            continue
        for link in seg.links:
            members = [m for m in seg.members if m.link == link]
            if len(members) < 2:
                continue
            src = members[0]
            for m in members[1:]:
                pairs.setdefault(src.node, []).append((link, m.node, m.ip))
    return pairs


class Probes:
    def __init__(self, net: Network, sup: Supervisor, out_dir: Path, interval_s: float) -> None:
        self.net, self.sup, self.dir, self.interval = net, sup, out_dir, interval_s
        self.dir.mkdir(parents=True, exist_ok=True)
        # (a multi-host run's share: only its own nodes probe; the others are probed there)
        self.pairs = {n: v for n, v in probe_pairs(net).items() if n in net.plan.namespaces}
        self.procs: list[Managed] = []

    def start(self) -> None:
        period_ms = str(int(self.interval * 1000))
        for node, items in self.pairs.items():
            self.procs.append(self.sup.start(
                f"probe-{node}", ["fping", "-l", "-D", "-p", period_ms, "-t", "2000",
                                  *[ip for _, _, ip in items]],
                netns=self.net.plan.namespaces[node], stdout=self.dir / f"{node}.txt",
                log=self.sup.log_dir / node / "probe.log"))

    def stop(self) -> None:
        self.sup.stop_many(self.procs)

    def samples(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(link, peer) -> {t: [...], rtt: [...], sent: n}."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for node, items in self.pairs.items():
            by_ip = {ip: (link, peer) for link, peer, ip in items}
            path = self.dir / f"{node}.txt"
            text = path.read_text() if path.exists() else ""
            for line in text.splitlines():
                m = _LINE.match(line)
                if not m or m.group(2) not in by_ip:
                    continue
                rec = out.setdefault(by_ip[m.group(2)], {"t": [], "rtt": [], "max_seq": -1})
                rec["max_seq"] = max(rec["max_seq"], int(m.group(3)))
                if m.group(4) is not None:  # a reply (not a timeout)
                    rec["t"].append(float(m.group(1)))
                    rec["rtt"].append(float(m.group(4)))
        return out


def expected_rtt_ms(net: Network, link: str) -> float | None:
    """Configured RTT of a fping probe: two propagation delays plus two serialisations."""
    lk = net.sc.link(link)
    if lk.carried_by is Medium.WIFI:
        return None
    delay = lk.delay_ms or 0.0
    if not lk.rate_mbps:
        return 2 * delay
    overhead = 2 if lk.carried_by is Medium.P2P else 14  # PPP header vs Ethernet header
    return 2 * delay + 2 * (PROBE_IP_BYTES + overhead) * 8 / (lk.rate_mbps * 1e3)


def summarise(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    return {"median": round(statistics.median(s), 3),
            "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 3),
            "min": round(s[0], 3), "max": round(s[-1], 3)}
