"""The scenario model: declarative, validated data and nothing else.

A scenario says *what* network to build (nodes, links), *what* runs on it (traffic flows,
services) and *when* things happen (the timeline).  It never says how: the plan
(testbed.plan) turns it into names, addresses and routes, and the network builder makes it
real.  Cross-references (a link naming a node, an event naming a flow) are checked here so
that every error is reported against the scenario file, before anything is created.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    """Base for every scenario section: unknown fields are errors (typos must not pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeKind(StrEnum):
    GROUND_USER = "ground_user"
    UAV = "uav"
    SATELLITE = "satellite"
    GROUND_STATION = "ground_station"
    EDGE_SERVER = "edge_server"
    CLOUD = "cloud"
    SWITCH = "switch"


class LinkKind(StrEnum):
    AIR_TO_GROUND = "air-to-ground"
    AIR_TO_AIR = "air-to-air"
    SATELLITE = "satellite"
    WIRED = "wired"


class Medium(StrEnum):
    """How a link is carried. `wifi` and `p2p` go through a link engine (ns-3 here);
    `ethernet` is a veth, through Open vSwitch when a switch is an endpoint."""

    WIFI = "wifi"
    P2P = "p2p"
    ETHERNET = "ethernet"


DEFAULT_MEDIUM = {
    LinkKind.AIR_TO_GROUND: Medium.WIFI,
    LinkKind.AIR_TO_AIR: Medium.WIFI,
    LinkKind.SATELLITE: Medium.P2P,
    LinkKind.WIRED: Medium.ETHERNET,
}


class Node(Strict):
    kind: NodeKind
    position: tuple[float, float, float] | None = Field(
        default=None, description="metres, local east/north/up frame; needed on Wi-Fi links"
    )
    description: str = ""


class WifiSettings(Strict):
    standard: Literal["802.11a", "802.11g", "802.11n-5GHz"] = "802.11a"
    data_mode: str = Field(
        default="OfdmRate24Mbps",
        description="ns-3 WifiMode for data frames (ConstantRateWifiManager)",
    )
    propagation: Literal["friis", "log-distance"] = "friis"
    exponent: float = Field(default=3.0, gt=1.0, le=6.0, description="log-distance only")
    tx_power_dbm: float = Field(default=16.0, ge=-10.0, le=30.0)


class Link(Strict):
    name: Name
    kind: LinkKind
    endpoints: list[Name] = Field(min_length=2)
    medium: Medium | None = None
    delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0, description="one way")
    rate_mbps: float | None = Field(default=None, gt=0.0, le=10_000.0)
    loss_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    queue_packets: int | None = Field(default=None, ge=1, le=100_000)
    wifi: WifiSettings | None = None

    @property
    def carried_by(self) -> Medium:
        return self.medium or DEFAULT_MEDIUM[self.kind]

    @model_validator(mode="after")
    def _medium_rules(self) -> Link:
        medium = self.carried_by
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError("endpoints must be different nodes")
        if medium is Medium.WIFI:
            for field in ("delay_ms", "rate_mbps", "loss_pct"):
                if getattr(self, field) is not None:
                    raise ValueError(
                        f"{field} cannot be set on a Wi-Fi link: its delay, rate and loss come "
                        "from the radio model (positions, wifi.data_mode, wifi.tx_power_dbm); "
                        "use medium: p2p for a fixed-parameter link"
                    )
        else:
            if len(self.endpoints) != 2:
                raise ValueError(f"a {medium.value} link joins exactly 2 endpoints")
            if self.wifi is not None:
                raise ValueError("wifi settings are only for medium: wifi")
        if medium is Medium.P2P and (self.rate_mbps is None or self.delay_ms is None):
            raise ValueError(
                "a point-to-point link needs rate_mbps and delay_ms (e.g. rate_mbps: 50, "
                "delay_ms: 6 for a LEO hop)"
            )
        return self


class FlowKind(StrEnum):
    PING = "ping"
    TCP = "tcp"
    UDP = "udp"


class Flow(Strict):
    name: Name
    kind: FlowKind
    src: Name
    dst: Name
    start_s: float = Field(default=0.0, ge=0.0)
    duration_s: float = Field(gt=0.0)
    rate_mbps: float | None = Field(default=None, gt=0.0, le=10_000.0)
    interval_s: float = Field(default=0.2, ge=0.01, le=60.0, description="ping only")
    packet_bytes: int = Field(default=1200, ge=16, le=65000, description="udp only")

    @model_validator(mode="after")
    def _rules(self) -> Flow:
        if self.src == self.dst:
            raise ValueError("src and dst must be different nodes")
        if self.kind is FlowKind.UDP and self.rate_mbps is None:
            raise ValueError("a udp flow needs rate_mbps")
        return self


class EventAction(StrEnum):
    LINK_DOWN = "link_down"
    LINK_UP = "link_up"
    SET_LINK = "set_link"
    MOVE = "move"
    NODE_CRASH = "node_crash"
    NODE_RESTART = "node_restart"
    START_FLOW = "start_flow"
    STOP_FLOW = "stop_flow"
    EXEC = "exec"


class Event(Strict):
    """One timeline entry: at `at_s` seconds after time zero, do `action`."""

    at_s: float = Field(ge=0.0)
    action: EventAction
    link: Name | None = None
    node: Name | None = None
    flow: Name | None = None
    delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0)
    rate_mbps: float | None = Field(default=None, gt=0.0, le=10_000.0)
    loss_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    position: tuple[float, float, float] | None = None
    command: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> Event:
        a = self.action
        need: dict[EventAction, tuple[str, ...]] = {
            EventAction.LINK_DOWN: ("link",),
            EventAction.LINK_UP: ("link",),
            EventAction.SET_LINK: ("link",),
            EventAction.MOVE: ("node", "position"),
            EventAction.NODE_CRASH: ("node",),
            EventAction.NODE_RESTART: ("node",),
            EventAction.START_FLOW: ("flow",),
            EventAction.STOP_FLOW: ("flow",),
            EventAction.EXEC: ("node", "command"),
        }
        missing = [f for f in need[a] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"action {a.value} needs {', '.join(missing)}")
        if a is EventAction.SET_LINK and all(
            getattr(self, f) is None for f in ("delay_ms", "rate_mbps", "loss_pct")
        ):
            raise ValueError("set_link needs at least one of delay_ms, rate_mbps, loss_pct")
        return self


class Capture(Strict):
    enabled: bool = True
    snaplen: int = Field(default=256, ge=64, le=262144)
    links: Literal["all"] | list[Name] = "all"


class Probes(Strict):
    """Background measurements of every link, the source of metrics.json's `measured`."""

    link_rtt: bool = True
    interval_s: float = Field(default=1.0, ge=0.1, le=60.0)


class Addressing(Strict):
    pool: str = Field(
        default="198.18.0.0/15",
        description="RFC 2544 benchmarking range: never routed, never collides with a LAN",
    )

    @field_validator("pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)
        if net.version != 4 or net.prefixlen > 22:
            raise ValueError("pool must be an IPv4 network of /22 or larger")
        return v


class Engines(Strict):
    """Which link engine carries which medium.  `auto` picks what this host supports."""

    p2p: Literal["auto", "ns3", "netem"] = "auto"
    wifi: Literal["auto", "ns3", "mininet-wifi"] = "auto"


class Sdn(Strict):
    app: Literal["l2-proactive"] = "l2-proactive"


class Services(Strict):
    sdn: Sdn = Sdn()


class Scenario(Strict):
    name: Name
    description: str = ""
    seed: int = Field(default=1, ge=0, le=2**31 - 1)
    duration_s: float = Field(default=60.0, gt=0.0, le=86_400.0)
    nodes: dict[Name, Node] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    traffic: list[Flow] = Field(default_factory=list)
    timeline: list[Event] = Field(default_factory=list)
    capture: Capture = Capture()
    probes: Probes = Probes()
    addressing: Addressing = Addressing()
    engines: Engines = Engines()
    services: Services = Services()

    def switches(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind is NodeKind.SWITCH]

    def hosts(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind is not NodeKind.SWITCH]

    def link(self, name: str) -> Link:
        return next(link for link in self.links if link.name == name)

    def flow(self, name: str) -> Flow:
        return next(flow for flow in self.traffic if flow.name == name)
