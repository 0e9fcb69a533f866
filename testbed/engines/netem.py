"""NetemEngine: point-to-point links as veth pairs shaped by `tc netem` (delay, loss, rate).

Used automatically for p2p links where the kernel has sch_netem (stock Debian, Ubuntu and
Fedora kernels); the build host's kernel has none, so there it is detected as absent and ns-3
carries those links (its tests run in testbed.vm).
Cheaper than ns-3 (no user-space copy).  netem shapes what leaves an interface, so each
end's qdisc carries its own direction's rate (an asymmetric link: rate_back_mbps on the
second end); Wi-Fi cannot be expressed with it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from testbed.engines import features
from testbed.engines.base import Change, EngineLink, EngineUnavailable, wait_until
from testbed.lifecycle.sh import ip_batch, run
from testbed.scenario.model import Medium


def netem_args(delay_ms: float, rate_mbps: float, loss_pct: float, limit: int) -> list[str]:
    args = ["netem", "delay", f"{delay_ms:.3f}ms"]
    if loss_pct > 0:
        args += ["loss", f"{loss_pct:.4f}%"]
    if rate_mbps > 0:
        args += ["rate", f"{rate_mbps * 1000:.0f}kbit"]
    return [*args, "limit", str(limit)]


class NetemEngine:
    name = "netem"

    def __init__(self) -> None:
        self.links: dict[str, EngineLink] = {}
        self.state: dict[str, dict[str, Any]] = {}

    def carries(self) -> set[Medium]:
        return {Medium.P2P}

    def static_neighbours(self) -> bool:
        return False

    def start(self, state_dir: Path) -> None:
        if not features.has_netem():
            raise EngineUnavailable(
                "tc netem is not available in this kernel (no sch_netem); point-to-point links "
                "use ns-3 instead (engines: {p2p: ns3} or auto)")

    def attach(self, links: list[EngineLink], seed: int) -> dict[str, str]:
        for link in links:
            a, b = link.ends
            ip_batch([f"link add {a.root_name} netns {a.netns} type veth peer name "
                      f"{b.root_name} netns {b.netns}"])
            self.links[link.name] = link
            self.state[link.name] = {"delay_ms": link.delay_ms, "rate_mbps": link.rate_mbps,
                                     "rate_back_mbps": link.rate_back_mbps,
                                     "loss_pct": link.loss_pct, "up": True}
        return {}

    def shape(self, links: list[EngineLink], verb: str) -> None:
        """One `tc -batch` per namespace for all the links' ends (a mobility tick changes
        many links at once; one tc process per change would cost more than the change)."""
        batches: dict[str, list[str]] = {}
        for link in links:
            st = self.state[link.name]
            loss = 100.0 if not st["up"] else st["loss_pct"]
            # each end's qdisc shapes what that end sends: ends[1] sends at rate_back_mbps
            rates = (st["rate_mbps"], st["rate_back_mbps"] or st["rate_mbps"])
            for end, rate in zip(link.ends, rates, strict=True):
                args = " ".join(netem_args(st["delay_ms"], rate, loss, link.queue_packets))
                batches.setdefault(end.netns, []).append(
                    f"qdisc {verb} dev {end.ifname} root {args}")
        for netns, lines in batches.items():
            run(["tc", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n")

    def configured(self) -> None:
        self.shape(list(self.links.values()), "add")

    def apply(self, changes: list[Change], at: float | None = None) -> float | None:
        wait_until(at)
        touched: dict[str, EngineLink] = {}
        for ch in changes:
            if ch.kind != "set" or ch.link not in self.links:
                raise ValueError(f"netem engine cannot apply {ch}")
            st = self.state[ch.link]
            if ch.rate_mbps is not None:  # both directions (Change), then rate_back_mbps
                st["rate_back_mbps"] = None
            for k in ("delay_ms", "rate_mbps", "rate_back_mbps", "loss_pct", "up"):
                v = getattr(ch, k)
                if v is not None:
                    st[k] = v
            touched[ch.link] = self.links[ch.link]
        self.shape(list(touched.values()), "change")
        return time.time()

    def check(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"links": len(self.links)}

    def stop(self) -> None:
        return None  # the veths disappear with their namespaces
