"""The LinkEngine interface: whatever carries the emulated wireless and satellite links.

The network builder hands an engine the links it carries (EngineLink, pure data from the plan)
and the engine makes each endpoint appear as an interface named `root_name` inside the node's
namespace, down and unconfigured; the builder then names, addresses and raises it like any
other interface.  Runtime changes (the timeline, mobility) go through `apply`, as a batch, so
an engine can apply many changes at the same instant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from testbed.scenario.model import Medium


class EngineUnavailable(RuntimeError):
    """The engine cannot run on this host; the message says why and what to do."""


@dataclass
class EngineEnd:
    node: str
    netns: str
    root_name: str
    ifname: str
    position: tuple[float, float, float] | None = None


@dataclass
class EngineLink:
    name: str
    medium: Medium
    ends: list[EngineEnd]
    delay_ms: float = 0.0
    rate_mbps: float = 0.0  # both directions, or ends[0] -> ends[1] with rate_back_mbps
    rate_back_mbps: float | None = None  # p2p: ends[1] -> ends[0]; None: rate_mbps
    loss_pct: float = 0.0
    queue_packets: int = 100
    wifi: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    """One runtime change. kind: 'set' (delay/rate/loss/up on a link, or one Wi-Fi member's
    radio when node is given) or 'position' (node moves; Wi-Fi links follow).  rate_mbps sets
    both directions of a point-to-point link; rate_back_mbps, applied after it, sets the
    second end's sending rate alone (an asymmetric link is one change with both)."""

    kind: str
    link: str | None = None
    node: str | None = None
    delay_ms: float | None = None
    rate_mbps: float | None = None
    rate_back_mbps: float | None = None
    loss_pct: float | None = None
    up: bool | None = None
    xyz: tuple[float, float, float] | None = None

    def as_op(self) -> dict[str, Any]:
        op: dict[str, Any] = {"op": self.kind}
        for k in ("link", "node", "delay_ms", "rate_mbps", "rate_back_mbps", "loss_pct", "up"):
            v = getattr(self, k)
            if v is not None:
                op[k] = v
        if self.xyz is not None:
            op["xyz"] = list(self.xyz)
        return op


class LinkEngine(Protocol):
    name: str

    def carries(self) -> set[Medium]:
        """Media this engine can carry on this host."""
        ...

    def start(self, state_dir: Path) -> None:
        """Begin slow preparation (e.g. the ns-3 import) before namespaces exist."""
        ...

    def attach(self, links: list[EngineLink], seed: int) -> dict[str, str]:
        """Create every endpoint inside its namespace; return root_name -> MAC that the
        interface must carry (empty when the engine does not care)."""
        ...

    def static_neighbours(self) -> bool:
        """True when point-to-point endpoints need static ARP entries."""
        ...

    def configured(self) -> None:
        """Called once the builder has named, addressed and raised every interface."""
        ...

    def apply(self, changes: list[Change], at: float | None = None) -> float | None:
        """Apply a batch at one instant: at wall time `at` (time.time()) when given, now
        otherwise; return the wall time it took effect, if known.  Engines that cannot
        schedule wait until `at` (wait_until)."""
        ...

    def check(self) -> None:
        """Raise with a clear message if the engine is no longer healthy."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


def wait_until(at: float | None) -> None:
    """Sleep until wall time `at` (for engines that apply changes the moment they are told)."""
    if at is not None:
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
