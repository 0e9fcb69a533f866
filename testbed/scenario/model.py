"""The scenario model: declarative, validated data and nothing else.

A scenario says *what* network to build (nodes, links), *what* runs on it (traffic flows,
services) and *when* things happen (the timeline).  It never says how: the plan
(testbed.net.plan) turns it into names, addresses and routes, and the network builder makes it
real.  Cross-references (a link naming a node, an event naming a flow) are checked here so
that every error is reported against the scenario file, before anything is created.
"""

from __future__ import annotations

import ipaddress
import itertools
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from testbed.channels.access import AccessSchedulerSpec
from testbed.channels.config import ChannelSpec
from testbed.devices.profiles import lookup as lookup_profile
from testbed.scenario.cluster import Cluster

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
    VEHICLE = "vehicle"  # driven by road traffic (the `roads` section: SUMO or its trace)
    RSU = "rsu"  # a roadside unit: fixed, on the backbone, the vehicles' access point


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


Xyz = tuple[float, float, float]


class Location(Strict):
    """A geodetic position (WGS84), for nodes placed on the globe (cities, gateways)."""

    lat_deg: float = Field(ge=-90.0, le=90.0)
    lon_deg: float = Field(ge=-180.0, le=180.0)
    alt_m: float = Field(default=0.0, ge=-500.0, le=100_000.0)


class Waypoint(Strict):
    t_s: float = Field(ge=0.0, description="seconds after time zero (mobility clock)")
    position: Xyz


class WaypointsMotion(Strict):
    """Piecewise-linear flight through timed waypoints (held at the last one unless loop)."""

    model: Literal["waypoints"]
    waypoints: list[Waypoint] = Field(min_length=2)
    loop: bool = False

    @model_validator(mode="after")
    def _increasing(self) -> WaypointsMotion:
        times = [w.t_s for w in self.waypoints]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("waypoint times must increase strictly")
        return self


class CircleMotion(Strict):
    """A holding pattern: constant speed on a circle (UAV loiter, relay orbit)."""

    model: Literal["circle"]
    center: Xyz
    radius_m: float = Field(gt=0.0, le=1e6)
    speed_mps: float = Field(gt=0.0, le=500.0)
    phase_deg: float = 0.0
    clockwise: bool = False


class RandomWaypointMotion(Strict):
    """Random waypoint (Johnson & Maltz): pick a point in the area, go there at a random
    speed, pause, repeat.  Deterministic under the scenario seed."""

    model: Literal["random-waypoint"]
    area: tuple[tuple[float, float], tuple[float, float]] = Field(
        description="[[x_min, y_min], [x_max, y_max]] metres")
    speed_mps: tuple[float, float] = (0.5, 1.5)
    pause_s: float = Field(default=0.0, ge=0.0)
    height_m: float = 1.5

    @model_validator(mode="after")
    def _ranges(self) -> RandomWaypointMotion:
        (x0, y0), (x1, y1) = self.area
        if x1 <= x0 or y1 <= y0:
            raise ValueError("area must be [[x_min, y_min], [x_max, y_max]] with max > min")
        lo, hi = self.speed_mps
        if not 0 < lo <= hi:
            raise ValueError("speed_mps must be [min, max] with 0 < min <= max")
        return self


class TraceMotion(Strict):
    """Positions replayed from a CSV file with columns t_s,x,y,z (metres, local frame),
    linearly interpolated; the path is relative to the scenario file and stays inside its
    folder or results/."""

    model: Literal["trace"]
    file: str
    loop: bool = False


Motion = Annotated[WaypointsMotion | CircleMotion | RandomWaypointMotion | TraceMotion,
                   Field(discriminator="model")]


class Drive(Strict):
    """How a vehicle node drives on the scenario's road network (the `roads` section)."""

    depart_s: float = Field(default=0.0, ge=0.0, description="when it enters the map")
    route: list[str] | None = Field(
        default=None, description="edge ids of the road network, in driving order; none: a "
        "random trip drawn from the scenario seed")
    cruise: bool = Field(
        default=True, description="at the end of its route, drive on to a new random "
        "destination; false: leave the map there (the node goes down)")


class Node(Strict):
    kind: NodeKind
    position: Xyz | None = Field(
        default=None, description="metres, local east/north/up frame; needed on Wi-Fi links"
    )
    location: Location | None = None
    motion: Motion | None = None
    drive: Drive | None = Field(
        default=None, description="vehicles only: departure and route on the road network")
    profile: str | None = Field(
        default=None, description="device profile from testbed/devices/profiles.py (e.g. "
        "jetson-orin-nano, raspberry-pi-4, edge-server) that sets the node's CPU quota and "
        "memory limit; none: the node runs unlimited")
    description: str = ""

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str | None) -> str | None:
        if v is not None:
            lookup_profile(v)  # ValueError listing the known profiles
        return v

    @model_validator(mode="after")
    def _where(self) -> Node:
        if self.profile is not None and self.kind is NodeKind.SWITCH:
            raise ValueError("a switch cannot have a device profile: it is part of Open "
                             "vSwitch, not a computer of its own; put profile on a host node")
        if self.position is not None and self.location is not None:
            raise ValueError("give either position (local metres) or location (lat/lon), "
                             "not both")
        if self.motion is not None and self.kind in (NodeKind.SATELLITE, NodeKind.SWITCH):
            raise ValueError(f"a {self.kind.value} cannot have a motion model (satellites "
                             "move on orbits: see the constellation section)")
        if self.kind is NodeKind.VEHICLE:
            if self.motion is not None or self.position is not None or self.location is not None:
                raise ValueError("a vehicle drives on the road network (the roads section): "
                                 "remove position/location/motion, or use kind: ground_user "
                                 "for a node with its own motion model")
        elif self.drive is not None:
            raise ValueError("drive is for kind: vehicle only")
        return self

    @property
    def sections(self) -> dict[str, BaseModel]:
        """The workload sections set on this node (e.g. autopilot), by field name.  The
        fields exist on the schema built from the registry (testbed.scenario.schema)."""
        return {k: v for k in type(self).model_fields if k not in Node.model_fields
                and isinstance(v := getattr(self, k), BaseModel)}

    @property
    def reports_position(self) -> bool:
        """A section says the node's position comes from telemetry at run time (a UAV flown
        by its autopilot): it then moves by what it reports, not by a motion model."""
        return any(getattr(type(s), "reports_position", False) for s in self.sections.values())

    @property
    def placed(self) -> bool:
        return (self.position is not None or self.location is not None
                or self.motion is not None or self.kind is NodeKind.VEHICLE)



class WifiSettings(Strict):
    standard: Literal["802.11a", "802.11g", "802.11n-5GHz", "802.11p"] = "802.11a"
    data_mode: str = Field(
        default="OfdmRate24Mbps",
        description="ns-3 WifiMode for data frames (ConstantRateWifiManager); 802.11p (5.9 GHz, "
        "10 MHz, ad hoc MAC) takes the BW10MHz modes, e.g. OfdmRate6MbpsBW10MHz",
    )
    propagation: Literal["friis", "log-distance"] = "friis"
    exponent: float = Field(default=3.0, gt=1.0, le=6.0, description="log-distance only")
    tx_power_dbm: float = Field(default=16.0, ge=-10.0, le=30.0)
    mode: Literal["adhoc", "mesh", "ap"] = Field(
        default="adhoc", description="adhoc (IBSS; ns-3 and hwsim), mesh (802.11s) or ap "
        "(hostapd access points and wpa_supplicant stations, WPA2); mesh and ap need "
        "engines.wifi: hwsim")
    aps: list[Name] = Field(
        default_factory=list, description="mode ap: the endpoints that are access points "
        "(one ESS: stations roam between them); every other endpoint is a station")
    passphrase: str = Field(default="sagin-hil-wpa2", min_length=8, max_length=63,
                            description="mode ap: the WPA2-PSK passphrase")

    @model_validator(mode="after")
    def _modes(self) -> WifiSettings:
        if (self.standard == "802.11p") != self.data_mode.endswith("BW10MHz"):
            raise ValueError("802.11p uses the 10 MHz OFDM modes (OfdmRate3MbpsBW10MHz ... "
                             "OfdmRate27MbpsBW10MHz) and only 802.11p does")
        if (self.mode == "ap") != bool(self.aps):
            raise ValueError("mode: ap needs aps: [the access points] and only mode ap takes "
                             "aps")
        return self


class Link(Strict):
    name: Name
    kind: LinkKind
    endpoints: list[Name] = Field(min_length=2)
    medium: Medium | None = None
    delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0, description="one way")
    rate_mbps: float | None = Field(
        default=None, gt=0.0, le=10_000.0,
        description="both directions, or, with rate_back_mbps, the first endpoint's sending rate")
    rate_back_mbps: float | None = Field(
        default=None, gt=0.0, le=10_000.0,
        description="p2p only: rate from the second endpoint to the first (an asymmetric link, "
        "e.g. a satellite terminal's upload); default: rate_mbps")
    loss_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    queue_packets: int | None = Field(default=None, ge=1, le=100_000)
    wifi: WifiSettings | None = None
    channel: ChannelSpec | None = Field(
        default=None, description="p2p only: delay from geometry, rate and loss from this "
        "channel model, updated as the endpoints move")

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
        if self.wifi is not None:
            stray = [a for a in self.wifi.aps if a not in self.endpoints]
            if stray:
                raise ValueError(f"wifi.aps names {stray[0]}, which is not an endpoint of "
                                 "this link")
            if len(self.wifi.aps) == len(self.endpoints):
                raise ValueError("mode ap needs at least one station: an endpoint not in aps")
        if self.rate_back_mbps is not None and (medium is not Medium.P2P or
                                                 self.channel is not None):
            raise ValueError("rate_back_mbps is for point-to-point links with a fixed rate "
                             "(medium: p2p, rate_mbps set, no channel); a channel model or an "
                             "access scheduler sets each direction itself")
        if self.channel is not None:
            if medium is not Medium.P2P:
                raise ValueError("a channel model drives medium: p2p links only (Wi-Fi links "
                                 "take their channel from ns-3's radio model)")
            for field in ("delay_ms", "rate_mbps", "loss_pct"):
                if getattr(self, field) is not None:
                    raise ValueError(f"{field} cannot be set together with channel: delay "
                                     "comes from the distance, rate and loss from the model")
        elif medium is Medium.P2P and (self.rate_mbps is None or self.delay_ms is None):
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
    rate_mbps: float | None = Field(default=None, gt=0.0, le=10_000.0,
                                    description="set_link: both directions (then rate_back_mbps)")
    rate_back_mbps: float | None = Field(
        default=None, gt=0.0, le=10_000.0,
        description="set_link on a point-to-point link: the second endpoint's sending rate")
    loss_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    position: tuple[float, float, float] | None = None
    command: str | None = None
    restart: int | None = Field(
        default=None, ge=1, le=100, description="exec only: the command is a service, started "
        "again whenever it ends (a crash), up to this many times; after that its end fails the "
        "run (failed: exec-<node>-<at_s>)")

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
        if self.restart is not None and a is not EventAction.EXEC:
            raise ValueError("restart is for exec events only")
        if a is EventAction.SET_LINK and all(
            getattr(self, f) is None for f in ("delay_ms", "rate_mbps", "rate_back_mbps",
                                               "loss_pct")
        ):
            raise ValueError("set_link needs at least one of delay_ms, rate_mbps, "
                             "rate_back_mbps, loss_pct")
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
    """Where the plan's addresses come from (testbed.net.plan) and which ones are routed."""

    pool: str = Field(
        default="198.18.0.0/15",
        description="RFC 2544 benchmarking range: never routed, never collides with a LAN",
    )
    p2p_prefix: Literal[24, 29, 30, 31] = Field(
        default=24, description="prefix length of the subnet of every point-to-point segment "
        "(a p2p link, or an Ethernet link without a switch: exactly 2 members); 30 or 31 "
        "packs 64 or 128 links into one /24, for networks with thousands of links (Wi-Fi "
        "cells and switched LANs keep a /24)")
    routes_to: Literal["all", "ground"] = Field(
        default="all", description="all: every host routes every other node's address and "
        "every subnet; ground: only the node addresses of nodes that are not satellites (no "
        "routes to remote link subnets), satellites are pure transit (Hypatia/StarryNet "
        "style; mega-constellations), traffic to or from a satellite is refused")

    @field_validator("pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)
        if net.version != 4 or net.prefixlen > 22:
            raise ValueError("pool must be an IPv4 network of /22 or larger")
        return v


class Engines(Strict):
    """Which link engine carries which medium.  `auto` picks what this host supports."""

    p2p: Literal["auto", "ns3", "netem"] = Field(
        default="auto", description="auto: tc netem where the kernel has sch_netem, else ns-3")
    wifi: Literal["auto", "ns3", "hwsim"] = Field(
        default="auto", description="auto: ns-3 (one engine for every host, the results the "
        "README reports); hwsim: real 802.11 radios (mac80211_hwsim), shaped per station "
        "pair by the channel model")
    switch: Literal["auto", "kernel", "userspace"] = Field(
        default="auto", description="Open vSwitch datapath: kernel (datapath_type=system) "
        "where the openvswitch module loads, else userspace (netdev)")
    delay_compensation: Literal["auto", "off"] | float = Field(
        default="auto", description="ms subtracted from every ns-3 point-to-point delay to "
        "cancel the emulator's own per-hop processing time; auto measures it before time zero")

    @field_validator("delay_compensation")
    @classmethod
    def _comp(cls, v: str | float) -> str | float:
        if isinstance(v, float | int) and not 0.0 <= v <= 2.0:
            raise ValueError("delay_compensation must be auto, off or 0..2 ms")
        return v


class Sdn(Strict):
    app: str = Field(
        default="l2-proactive", description="the os-ken app: l2-proactive (the whole L2 "
        "table at connect) or one a workload registers (cpn: LLDP discovery, service VIP "
        "steering and a mapping API); checked against the registry when the file loads")


class Services(Strict):
    sdn: Sdn = Sdn()


class Mobility(Strict):
    """The mobility clock and how often it updates the emulated links."""

    rate_hz: float = Field(default=10.0, ge=0.5, le=50.0)
    time_scale: float = Field(
        default=1.0, gt=0.0, le=1000.0,
        description="mobility seconds per real second; packets always run in real time")
    epoch: str | None = Field(
        default=None, description="ISO 8601 UTC time of the orbits at time zero; default: "
        "the wall clock when the run starts (recorded in the manifest)")
    origin: Location = Field(
        default=Location(lat_deg=0.0, lon_deg=0.0),
        description="where the local east/north/up frame of `position` is anchored")
    reroute_interval_s: float = Field(
        default=1.0, ge=0.1, le=3600.0,
        description="besides every link up/down, routes follow changing delays this often")
    handover_guard_ms: float = Field(
        default=50.0, ge=0.0, le=5000.0,
        description="make-before-break: the old link stays up this long after routes moved")
    delay_resolution_ms: float = Field(
        default=0.001, ge=0.0, le=1.0,
        description="a link's delay is re-sent to its engine once it moved by at least this "
        "much; 0.01 cuts a mega-constellation's updates ~5x for <= 10 us of error per hop")

    @field_validator("epoch")
    @classmethod
    def _epoch(cls, v: str | None) -> str | None:
        if v is not None:
            from datetime import datetime

            try:
                datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("epoch must be ISO 8601, e.g. 2026-11-26T12:00:00Z") from None
        return v


class Walker(Strict):
    """Walker-Delta i:T/P/F (T = planes x per_plane)."""

    planes: int = Field(ge=1, le=100)
    per_plane: int = Field(ge=1, le=100)
    altitude_km: float = Field(ge=160.0, le=40_000.0)
    inclination_deg: float = Field(ge=0.0, le=180.0)
    phasing: int = Field(default=1, ge=0)
    raan_spread_deg: float = Field(default=360.0, gt=0.0, le=360.0)

    @model_validator(mode="after")
    def _phasing(self) -> Walker:
        if self.phasing >= self.planes:
            raise ValueError("phasing must be in 0 .. planes-1")
        return self


class TleSource(Strict):
    file: str = Field(description="TLE file, relative to the scenario file or topologies/")
    names: list[str] | None = None
    limit: int | None = Field(default=None, ge=1)


class Isl(Strict):
    """Inter-satellite links of a Walker shell (+Grid: ring in each plane, same-index
    neighbours across planes)."""

    intra_plane: bool = True
    inter_plane: bool = True
    max_latitude_deg: float = Field(
        default=75.0, ge=0.0, le=90.0,
        description="inter-plane links switch off while either satellite is above this "
        "latitude (antennas cannot track across the pole)")
    max_range_km: float = Field(default=5000.0, gt=0.0)
    rate_mbps: float = Field(default=100.0, gt=0.0, le=10_000.0)


class Constellation(Strict):
    walker: Walker | None = None
    tle: TleSource | None = None
    name_prefix: str = Field(default="sat", pattern=r"^[a-z][a-z0-9]{0,7}$")
    include: Literal["visible", "all"] = Field(
        default="visible", description="visible: only satellites that rise above "
        "include_min_elevation_deg for some access terminal during the run (and the links "
        "between them)")
    include_min_elevation_deg: float = Field(default=10.0, ge=-5.0, le=90.0)
    isl: Isl | None = Isl()

    @model_validator(mode="after")
    def _source(self) -> Constellation:
        if (self.walker is None) == (self.tle is None):
            raise ValueError("give exactly one of walker (parameters) or tle (file)")
        if self.tle is not None and self.isl is not None:
            raise ValueError("inter-satellite links need the plane structure of a walker "
                             "shell; for a TLE set use isl: null (bent pipe)")
        return self


class Access(Strict):
    """Terminals that attach to one of several moving candidates at a time (satellites or
    UAVs), chosen by a handover policy.  One point-to-point link is emulated per
    (terminal, candidate) pair; only the chosen one carries traffic."""

    name: Name
    terminals: list[Name] = Field(min_length=1)
    candidates: Literal["constellation"] | list[Name]
    policy: Literal["highest-elevation", "longest-visibility", "nearest",
                    "strongest-signal"] = "highest-elevation"
    min_elevation_deg: float | None = Field(
        default=None, ge=-5.0, le=90.0,
        description="default 25 for satellites, 0 for other candidates")
    max_range_km: float | None = Field(default=None, gt=0.0)
    hysteresis: float = Field(
        default=0.0, ge=0.0,
        description="switch only if the new candidate is better by this much (degrees, "
        "km or dB, by policy)")
    channel: ChannelSpec | None = None
    rate_mbps: float = Field(default=50.0, gt=0.0, le=10_000.0,
                             description="when no channel model is given")
    queue_packets: int | None = Field(default=None, ge=1, le=100_000)
    make_before_break: bool = True
    scheduler: AccessSchedulerSpec | None = Field(
        default=None, description="access model on top of geometry: {model: starlink} re-assigns "
        "every terminal on a synchronised slot schedule and shares cell capacity "
        "(testbed.channels.access, docs/realism.md)")

    @model_validator(mode="after")
    def _policy(self) -> Access:
        if self.policy == "longest-visibility" and self.candidates != "constellation":
            raise ValueError("longest-visibility needs orbits: use candidates: constellation")
        if self.policy == "strongest-signal" and self.channel is None:
            raise ValueError("strongest-signal needs a channel model (channel: {...})")
        return self


class Roads(Strict):
    """The road network vehicles drive on, and who drives them: Eclipse SUMO stepped in
    lock-step with the mobility clock, or a recorded drive replayed without SUMO."""

    net: str = Field(description="SUMO network (.net.xml), relative to the scenario file or "
                     "topologies/")
    step_s: float = Field(default=0.1, ge=0.01, le=1.0, description="SUMO's step length")
    offset: tuple[float, float] = Field(
        default=(0.0, 0.0), description="where the network's (0, 0) lies in the local "
        "east/north frame, metres")
    antenna_height_m: float = Field(default=1.5, ge=0.0, le=50.0)
    background_vehicles: int = Field(
        default=0, ge=0, le=5000, description="extra SUMO traffic that is not a node: it "
        "congests the roads, and is recorded in the drive")
    depart_spread_s: float = Field(
        default=0.0, ge=0.0, description="background vehicles enter uniformly over this")
    trace: str | None = Field(
        default=None, description="replay this recorded drive (a run's mobility/drive.csv) "
        "instead of running SUMO; relative to the scenario file, inside its folder, topologies/ "
        "or results/")


class Compute(Strict):
    """How device profiles map onto this host's CPU (docs/device-profiles.md)."""

    reference_speed: Literal["auto"] | float = Field(
        default=1.0, description="one host core's speed in reference cores: 1.0 takes a host "
        "core for a reference core (devices faster than the host are capped); a larger value "
        "scales every profiled node down by the same factor, keeping their relative speeds; "
        "auto picks the smallest value with no node capped")

    @field_validator("reference_speed")
    @classmethod
    def _positive(cls, v: str | float) -> str | float:
        if not isinstance(v, str) and not 0.01 <= v <= 1000:
            raise ValueError("reference_speed must be auto or a number in 0.01..1000")
        return v


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
    compute: Compute = Compute()
    mobility: Mobility = Mobility()
    constellation: Constellation | None = None
    access: list[Access] = Field(default_factory=list)
    roads: Roads | None = None
    cluster: Cluster | None = None  # several hosts (testbed.cluster, docs/multi-host.md)

    def switches(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind is NodeKind.SWITCH]

    def hosts(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind is not NodeKind.SWITCH]

    def link(self, name: str) -> Link:
        """A link by name, through an index (a constellation expands to thousands of links:
        no linear search each).  The index is tied to this very list of links: a copy with
        other links (model_copy(update=...), as expansions make) builds its own."""
        cached = self.__dict__.get("_link_index")
        if cached is None or cached[0] is not self.links:
            cached = (self.links, {link.name: link for link in self.links})
            self.__dict__["_link_index"] = cached
        return cached[1][name]

    def flow(self, name: str) -> Flow:
        return next(flow for flow in self.traffic if flow.name == name)
