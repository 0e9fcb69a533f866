"""The moving world of a scenario: where every node is at mobility time t, and what that
does to every geometry-driven link.

`World.build` expands the declarative scenario into the concrete network the builder makes:
the constellation's satellites become nodes, inter-satellite links and one point-to-point
link per (terminal, candidate) pair of each access group become links.  It never touches
the host, so `make check` shows exactly what a run would build, and the same World drives
the live links (testbed.mobility.driver) and predicts end-to-end delays from geometry.

Time: mobility time t is seconds since time zero on the mobility clock (real seconds times
`mobility.time_scale`); the orbits are at `epoch + t`.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from testbed.channels import Channel, build_channel
from testbed.mobility.geo import (
    C_KM_S,
    EARTH_RADIUS_KM,
    LocalFrame,
    ecef_to_geodetic,
    enu_matrix,
)
from testbed.mobility.motion import Static, TelemetryTrack, Track, track_for
from testbed.mobility.orbits import Constellation, walker_isl_pairs
from testbed.mobility.roads import RoadFeed, VehicleTrack, open_roads
from testbed.mobility.roads import describe as describe_roads
from testbed.scenario.errors import Problem, ScenarioError
from testbed.scenario.files import FileProblem, referenced
from testbed.scenario.model import (
    Access,
    Link,
    LinkKind,
    Medium,
    Node,
    NodeKind,
    Scenario,
)

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SAMPLE_STEP_S = 10.0  # orbit sampling for candidate selection at build time
CANDIDATE_MARGIN_DEG = 5.0  # keep satellites that come this close to the mask as candidates
MIN_RAY_ALTITUDE_KM = 80.0  # a link whose straight line dips below this is blocked


def parse_epoch(text: str | None) -> float:
    if text is None:
        return time.time()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class DynLink:
    """A link whose state follows geometry."""

    name: str
    a: str
    b: str
    role: str  # isl-intra | isl-inter | access | channel
    group: str | None = None
    channel: Channel | None = None
    rate_mbps: float = 0.0


@dataclass
class LinkState:
    up: bool
    delay_ms: float
    rate_mbps: float
    loss_pct: float
    range_km: float
    elevation_deg: float
    snr_db: float = float("nan")


@dataclass
class LinkTable:
    """Every dynamic link's state at one instant as columns, row k = World.link_names[k]
    (what the snapshot computes in numpy; `LinkState`s are made only when one is read)."""

    names: list[str]
    index: dict[str, int]
    up: np.ndarray
    delay_ms: np.ndarray
    rate_mbps: np.ndarray
    loss_pct: np.ndarray
    range_km: np.ndarray
    elevation_deg: np.ndarray
    snr_db: np.ndarray
    # the back direction (second endpoint -> first) where it differs, NaN elsewhere (only
    # access schedulers make a link asymmetric)
    rate_back_mbps: np.ndarray

    def state(self, k: int) -> LinkState:
        return LinkState(bool(self.up[k]), float(self.delay_ms[k]), float(self.rate_mbps[k]),
                         float(self.loss_pct[k]), float(self.range_km[k]),
                         float(self.elevation_deg[k]), float(self.snr_db[k]))


class LinkStates(Mapping[str, LinkState]):
    """Link name -> LinkState, read off a LinkTable (a dict's interface, no per-link
    objects until asked)."""

    def __init__(self, table: LinkTable) -> None:
        self.table = table

    def __getitem__(self, name: str) -> LinkState:
        return self.table.state(self.table.index[name])

    def __contains__(self, name: object) -> bool:
        return name in self.table.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.names)

    def __len__(self) -> int:
        return len(self.table.names)


class Eligibility(Mapping[str, bool]):
    """Access link name -> eligible now (above its group's mask, within range, not blocked):
    the candidates' visibility before the handover policy.  Other links are not keys."""

    def __init__(self, table: LinkTable, ok: np.ndarray, access: list[int]) -> None:
        self.table, self.ok, self.access = table, ok, access

    def __getitem__(self, name: str) -> bool:
        k = self.table.index[name]
        if not self._is_access(k):
            raise KeyError(name)
        return bool(self.ok[k])

    def _is_access(self, k: int) -> bool:
        i = bisect.bisect_left(self.access, k)
        return i < len(self.access) and self.access[i] == k

    def __contains__(self, name: object) -> bool:
        k = self.table.index.get(name) if isinstance(name, str) else None
        return k is not None and self._is_access(k)

    def __iter__(self) -> Iterator[str]:
        return (self.table.names[k] for k in self.access)

    def __len__(self) -> int:
        return len(self.access)


def _empty_table() -> LinkTable:
    z = np.zeros(0)
    return LinkTable([], {}, np.zeros(0, dtype=bool), z, z, z, z, z, z, z)


@dataclass
class Snapshot:
    t: float
    ecef: dict[str, np.ndarray]
    links: Mapping[str, LinkState]
    # visibility of candidates, per access link: eligible by mask/range (before the policy)
    eligible: Mapping[str, bool] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()  # vehicles off the road map: all their links down
    table: LinkTable = field(default_factory=_empty_table)  # `links` as columns
    eligible_ok: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # ECEF, km


@dataclass
class AccessGroup:
    spec: Access
    min_elevation_deg: float
    links: dict[str, dict[str, str]]  # terminal -> candidate -> link name


class World:
    def __init__(self, sc: Scenario, original: Scenario, frame: LocalFrame, epoch_unix: float,
                 tracks: dict[str, Track], const: Constellation | None,
                 dyn: dict[str, DynLink], groups: list[AccessGroup],
                 roads: RoadFeed | None = None) -> None:
        self.sc, self.original, self.frame = sc, original, frame
        self.roads = roads
        self.vehicles = {n: tr for n, tr in tracks.items() if isinstance(tr, VehicleTrack)}
        self.epoch_unix = epoch_unix
        self.time_scale = sc.mobility.time_scale
        self.tracks = tracks
        self.const = const
        self.sat_names = set(const.names) if const is not None else set()
        self.dyn = dyn
        self.groups = groups
        self.moving = {n for n, tr in tracks.items() if not isinstance(tr, Static)}
        wifi_nodes = {ep for link in sc.links if link.carried_by is Medium.WIFI
                      for ep in link.endpoints}
        self.wifi_moving = sorted(self.moving & wifi_nodes)
        self._remaining_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ---- build ----------------------------------------------------------------------------
    @classmethod
    def build(cls, sc: Scenario, source: str, epoch_unix: float | None = None,
              base_dir: Path | None = None) -> World:
        base = base_dir or (Path(source).parent if source else TOPOLOGIES)
        mob = sc.mobility
        epoch = epoch_unix if epoch_unix is not None else parse_epoch(mob.epoch)
        frame = LocalFrame(mob.origin.lat_deg, mob.origin.lon_deg, mob.origin.alt_m / 1000.0)
        tracks: dict[str, Track] = {}
        roads = open_roads(sc, source, base, TOPOLOGIES)
        for name, node in sc.nodes.items():
            if node.kind is NodeKind.VEHICLE and roads is not None and sc.roads is not None:
                tracks[name] = VehicleTrack(roads, name, sc.roads.offset,
                                            sc.roads.antenna_height_m)
                continue
            initial = None
            if node.position is not None:
                initial = np.asarray(node.position, dtype=float)
            elif node.location is not None:
                loc = node.location
                from testbed.mobility.geo import geodetic_to_ecef

                initial = frame.from_ecef(geodetic_to_ecef(loc.lat_deg, loc.lon_deg,
                                                           loc.alt_m / 1000.0))
            if node.reports_position and initial is not None:
                tracks[name] = TelemetryTrack(initial, frame)
                continue
            try:
                tr = track_for(name, node, sc.seed, base, initial)
            except FileProblem as exc:
                raise ScenarioError(source, [Problem(f"nodes.{name}.motion.file", exc.message,
                                                     exc.fix)]) from None
            except (OSError, ValueError) as exc:
                raise ScenarioError(source, [Problem(f"nodes.{name}.motion", str(exc),
                                                     "fix the trace file")]) from None
            if tr is not None:
                tracks[name] = tr
        const = _constellation(sc, source, base, epoch) if sc.constellation else None
        return _Expander(sc, source, frame, epoch, tracks, const, roads).run()

    # ---- geometry -------------------------------------------------------------------------
    def orbit_time(self, t: float) -> float:
        return self.epoch_unix + t

    def place(self, node: str, xyz: tuple[float, float, float]) -> None:
        """A timeline `move`: the node now stands at xyz (local frame) for good."""
        self.tracks[node] = Static(xyz)
        wifi_nodes = {ep for link in self.sc.links if link.carried_by is Medium.WIFI
                      for ep in link.endpoints}
        if node in wifi_nodes and node not in self.wifi_moving:
            self.wifi_moving = sorted([*self.wifi_moving, node])

    def enu(self, node: str, t: float) -> tuple[float, float, float]:
        x, y, z = self.tracks[node].position(t)
        return (float(x), float(y), float(z))

    def _index(self) -> None:
        """Array layout of the links for the vectorised snapshot (built once)."""
        names = ([*self.const.names] if self.const is not None else []) + list(self.tracks)
        self._nodes = names
        pos = {n: i for i, n in enumerate(names)}
        self._links = list(self.dyn)
        dyn = [self.dyn[n] for n in self._links]
        self._ia = np.array([pos[d.a] for d in dyn], dtype=int)
        self._ib = np.array([pos[d.b] for d in dyn], dtype=int)
        self._isl = np.array([d.role.startswith("isl") for d in dyn], dtype=bool)
        self._inter = np.array([d.role == "isl-inter" for d in dyn], dtype=bool)
        groups: dict[int, tuple[Channel, list[int]]] = {}
        for k, d in enumerate(dyn):
            if d.channel is not None and not self._isl[k]:
                groups.setdefault(id(d.channel), (d.channel, []))[1].append(k)
        self._chan_groups = [(ch, np.array(idx, dtype=int)) for ch, idx in groups.values()]
        self._link_pos = {n: k for k, n in enumerate(self._links)}
        self._access_rows = [k for k, d in enumerate(dyn) if d.role == "access"]
        self._access = np.zeros(len(dyn), dtype=bool)
        self._access[self._access_rows] = True
        self._plain_rate = np.array([d.rate_mbps for d in dyn], dtype=float)
        by_group = {g.spec.name: g for g in self.groups}
        self._min_el = np.full(len(dyn), -np.inf)
        self._max_range = np.full(len(dyn), np.inf)
        for k in self._access_rows:
            g = by_group[dyn[k].group or ""]
            self._min_el[k] = g.min_elevation_deg
            if g.spec.max_range_km is not None:
                self._max_range[k] = g.spec.max_range_km
        self._vehicle_rows = {n: i for i, n in enumerate(names) if n in self.vehicles}
        isl = self.sc.constellation.isl if self.sc.constellation else None
        self._isl_range = isl.max_range_km if isl else np.inf
        self._isl_lat = isl.max_latitude_deg if isl else 90.0

    @property
    def link_names(self) -> list[str]:
        """The dynamic links in the row order of every snapshot's LinkTable."""
        if not hasattr(self, "_nodes"):
            self._index()
        return self._links

    @property
    def access_mask(self) -> np.ndarray:
        """Per LinkTable row: an access group's link."""
        if not hasattr(self, "_nodes"):
            self._index()
        return self._access

    def _positions_array(self, t: float) -> np.ndarray:
        parts = []
        if self.const is not None:
            parts.append(self.const.positions_ecef(self.orbit_time(t)))
        if self.tracks:
            enu = np.array([tr.position(t) for tr in self.tracks.values()], dtype=float)
            parts.append(self.frame.to_ecef(enu))
        return np.concatenate(parts) if parts else np.zeros((0, 3))

    def snapshot(self, t: float) -> Snapshot:
        """Every dynamic link's state at mobility time t, computed for all links at once
        (a few milliseconds for 200 links)."""
        if not hasattr(self, "_nodes"):
            self._index()
        p = self._positions_array(t)
        ecef = {n: p[i] for i, n in enumerate(self._nodes)}
        absent = frozenset(n for n, tr in self.vehicles.items() if not tr.present(t))
        if not self._links:
            return Snapshot(t, ecef, {}, {}, absent, positions=p)
        lat, lon, alt = (np.atleast_1d(x) for x in ecef_to_geodetic(p))
        pa, pb = p[self._ia], p[self._ib]
        d = pb - pa
        rng = np.linalg.norm(d, axis=1)
        delay = rng / C_KM_S * 1e3
        # elevation of the higher end seen from the lower end (geodetic vertical)
        a_low = alt[self._ia] <= alt[self._ib]
        low = np.where(a_low, self._ia, self._ib)
        sign = np.where(a_low, 1.0, -1.0)
        la, lo = np.radians(lat[low]), np.radians(lon[low])
        up = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sin_el = np.clip(np.einsum("ij,ij->i", up, d) * sign / rng, -1.0, 1.0)
            el = np.where(rng > 0, np.degrees(np.arcsin(sin_el)), 90.0)
            # the straight line dips into the Earth or the atmosphere between its ends?
            s = -np.einsum("ij,ij->i", pa, d) / np.einsum("ij,ij->i", d, d)
        interior = (s > 0.0) & (s < 1.0)
        closest = pa + np.clip(np.nan_to_num(s), 0.0, 1.0)[:, None] * d
        blocked = interior & (np.linalg.norm(closest, axis=1) - EARTH_RADIUS_KM
                              < MIN_RAY_ALTITUDE_KM)
        isl_up = ~blocked & (rng <= self._isl_range) & (
            ~self._inter | (np.maximum(np.abs(lat[self._ia]), np.abs(lat[self._ib]))
                            <= self._isl_lat))
        q_rate, q_loss = self._plain_rate.copy(), np.zeros(len(self._links))
        q_snr = np.full(len(self._links), np.nan)
        for ch, idx in self._chan_groups:  # every link of a channel in one numpy pass
            q_snr[idx], q_rate[idx], q_loss[idx] = ch.sample_many(rng[idx] * 1000.0, el[idx])
        up = ~blocked & (q_loss < 100.0)
        if absent:
            gone = np.zeros(len(self._nodes), dtype=bool)
            gone[[self._vehicle_rows[n] for n in absent]] = True
            up &= ~(gone[self._ia] | gone[self._ib])
        up = np.where(self._isl, isl_up, up)
        ok = self._access & up & (el >= self._min_el) & (rng <= self._max_range)
        table = LinkTable(self._links, self._link_pos, up, delay, q_rate, q_loss, rng, el,
                          q_snr, np.full(len(self._links), np.nan))
        return Snapshot(t, ecef, LinkStates(table), Eligibility(table, ok, self._access_rows),
                        absent, table, ok, p)

    def _group(self, name: str | None) -> AccessGroup:
        return next(g for g in self.groups if g.spec.name == name)

    def remaining_visibility(self, link: str, t: float) -> float:
        """Seconds (mobility time) this access link stays eligible from t, from a 2 s
        sampled lookahead computed once per link (bounded by the run's end + 10 min)."""
        if link not in self._remaining_cache:
            d = self.dyn[link]
            g = self._group(d.group)
            horizon = self.sc.duration_s * self.time_scale + 600.0
            ts = np.arange(0.0, horizon, 2.0)
            ok = np.array([self._eligible_at(d, g, float(x)) for x in ts])
            self._remaining_cache[link] = (ts, ok)
        ts, ok = self._remaining_cache[link]
        i = int(np.searchsorted(ts, t))
        rest = np.nonzero(~ok[i:])[0]
        return float(ts[i + rest[0]] - t) if len(rest) else float(ts[-1] - t)

    def _eligible_at(self, d: DynLink, g: AccessGroup, t: float) -> bool:
        pa, pb = self._pos(d.a, t), self._pos(d.b, t)
        alt_a = float(ecef_to_geodetic(pa)[2])
        alt_b = float(ecef_to_geodetic(pb)[2])
        low, high = (pa, pb) if alt_a <= alt_b else (pb, pa)
        if elevation_deg(low, high) < g.min_elevation_deg:
            return False
        return g.spec.max_range_km is None or float(np.linalg.norm(pb - pa)) <= \
            g.spec.max_range_km

    def _pos(self, node: str, t: float) -> np.ndarray:
        if node in self.sat_names:
            assert self.const is not None
            return self.const.positions_ecef(self.orbit_time(t))[self.const.index_of(node)]
        return self.frame.to_ecef(self.tracks[node].position(t))

    def passes(self) -> dict[str, list[tuple[str, float, float, float]]]:
        """Satellite passes above each constellation terminal's mask during the run, in real
        seconds after time zero: (satellite, rise, set, max elevation).  Static terminals
        only (a moving terminal has no fixed sky)."""
        from testbed.mobility.visibility import visibility_windows

        out: dict[str, list[tuple[str, float, float, float]]] = {}
        if self.const is None:
            return out
        span = self.sc.duration_s * self.time_scale
        for g in self.groups:
            if g.spec.candidates != "constellation":
                continue
            for term in g.links:
                if term in self.moving:
                    continue
                lat, lon, alt = ecef_to_geodetic(self.frame.to_ecef(self.tracks[term]
                                                                    .position(0.0)))
                wins = visibility_windows(self.const, float(lat), float(lon), float(alt),
                                          self.epoch_unix, self.epoch_unix + span,
                                          g.min_elevation_deg, step_s=5.0)
                out[term] = sorted(
                    (self.const.names[w.sat], (w.rise_unix - self.epoch_unix) / self.time_scale,
                     (w.set_unix - self.epoch_unix) / self.time_scale, w.max_elevation_deg)
                    for w in wins)
        return out

    def describe(self) -> dict[str, object]:
        roles: dict[str, int] = {}
        for d in self.dyn.values():
            roles[d.role] = roles.get(d.role, 0) + 1
        return {"epoch_unix": self.epoch_unix,
                "epoch": datetime.fromtimestamp(self.epoch_unix).astimezone().isoformat(),
                "time_scale": self.time_scale,
                "satellites": sorted(self.sat_names), "dynamic_links": roles,
                "moving_nodes": sorted(self.moving),
                "access": {g.spec.name: g.links for g in self.groups},
                "links": {n: {"ends": [d.a, d.b], "role": d.role} for n, d in self.dyn.items()},
                **describe_roads(self.roads)}


def elevation_deg(low: np.ndarray, high: np.ndarray) -> float:
    """Elevation of `high` seen from `low` against `low`'s geodetic vertical."""
    lat, lon, _ = ecef_to_geodetic(low)
    up = enu_matrix(float(lat), float(lon))[2]
    d = high - low
    n = float(np.linalg.norm(d))
    if n == 0.0:
        return 90.0
    return math.degrees(math.asin(max(-1.0, min(1.0, float(up @ d) / n))))


def ray_min_altitude_km(a: np.ndarray, b: np.ndarray) -> float:
    """Lowest altitude (over a spherical Earth) of the straight segment a-b between its
    ends: below ~80 km the Earth or its atmosphere is in the way.  Infinite when the segment
    only climbs away from both ends (a ground terminal's own altitude does not block it; its
    elevation mask decides)."""
    d = b - a
    dd = float(d @ d)
    s = 0.0 if dd == 0.0 else -float(a @ d) / dd
    if not 0.0 < s < 1.0:
        return math.inf
    closest = a + s * d
    return float(np.linalg.norm(closest)) - EARTH_RADIUS_KM


def _constellation(sc: Scenario, source: str, base: Path, epoch: float) -> Constellation:
    spec = sc.constellation
    assert spec is not None
    if spec.walker is not None:
        w = spec.walker
        return Constellation.walker_delta(w.planes, w.per_plane, w.altitude_km,
                                          w.inclination_deg, w.phasing, epoch,
                                          w.raan_spread_deg, spec.name_prefix)
    assert spec.tle is not None
    tried = [base, TOPOLOGIES, TOPOLOGIES / "tle"]
    try:
        path = referenced(spec.tle.file, tried, [base, TOPOLOGIES])
    except FileProblem as exc:
        raise ScenarioError(source, [Problem("constellation.tle.file", exc.message,
                                             exc.fix)]) from None
    if path is None:
        looked = ", ".join(str(t / spec.tle.file) for t in tried)
        raise ScenarioError(source, [Problem("constellation.tle.file",
                                             f"no TLE file '{spec.tle.file}'",
                                             f"looked in: {looked}")])
    try:
        return Constellation.from_tle(path, names=spec.tle.names, limit=spec.tle.limit)
    except ValueError as exc:
        raise ScenarioError(source, [Problem("constellation.tle", str(exc),
                                             "use a valid 2- or 3-line TLE file")]) from None


class _Expander:
    """Turns constellation and access sections into nodes and links (one use)."""

    def __init__(self, sc: Scenario, source: str, frame: LocalFrame, epoch: float,
                 tracks: dict[str, Track], const: Constellation | None,
                 roads: RoadFeed | None) -> None:
        self.sc, self.source, self.frame, self.epoch = sc, source, frame, epoch
        self.tracks, self.const, self.roads = tracks, const, roads
        self.nodes: dict[str, Node] = dict(sc.nodes)
        self.links: list[Link] = list(sc.links)
        self.dyn: dict[str, DynLink] = {}
        self.groups: list[AccessGroup] = []
        self.taken = set(sc.nodes) | {link.name for link in sc.links}

    def fail(self, path: str, message: str, fix: str) -> ScenarioError:
        return ScenarioError(self.source, [Problem(path, message, fix)])

    def run(self) -> World:
        sc = self.sc
        span = sc.duration_s * sc.mobility.time_scale
        self.sample_t = np.arange(-30.0, span + 30.0 + SAMPLE_STEP_S, SAMPLE_STEP_S)
        if self.const is not None:
            self._satellites()
        for i, link in enumerate(sc.links):
            if link.channel is not None:
                self.dyn[link.name] = DynLink(link.name, *link.endpoints, role="channel",
                                              channel=build_channel(link.channel))
                _ = i
        for i, acc in enumerate(sc.access):
            self._access(i, acc)
        # initial positions for Wi-Fi (ns-3 needs one) and for the record
        nodes = {}
        for name, node in self.nodes.items():
            if name in self.tracks and node.kind is not NodeKind.SATELLITE:
                x, y, z = self.tracks[name].position(0.0)
                node = node.model_copy(update={"position": (float(x), float(y), float(z)),
                                               "location": None})
            nodes[name] = node
        expanded = sc.model_copy(update={"nodes": nodes, "links": self.links})
        self._check_addresses(expanded)
        world = World(expanded, sc, self.frame, self.epoch, self.tracks, self.const, self.dyn,
                      self.groups, self.roads)
        self._initial_delays(world)
        return world

    def _satellites(self) -> None:
        const = self.const
        spec = self.sc.constellation
        assert const is not None and spec is not None
        clash = sorted(set(const.names) & set(self.sc.nodes))
        if clash:
            raise self.fail("constellation.name_prefix", f"generated satellite names clash "
                            f"with scenario nodes: {clash[:5]}", "choose another name_prefix")
        keep = np.ones(len(const), dtype=bool)
        if spec.include == "visible":
            terminals = {t for acc in self.sc.access if acc.candidates == "constellation"
                         for t in acc.terminals}
            if terminals:
                keep = self._ever_visible(sorted(terminals), spec.include_min_elevation_deg)
        idx = [i for i in range(len(const)) if keep[i]]
        if not idx:
            raise self.fail("constellation", "no satellite of the constellation rises above "
                            "the horizon of any access terminal during the run",
                            "check the terminals' locations, the epoch, or use include: all")
        sub = Constellation([const.satellites[i] for i in idx], [const.satrecs[i] for i in idx],
                            const.walker)
        if spec.isl is not None:
            pairs = walker_isl_pairs(const)
            kept = {const.satellites[i].name for i in idx}
            for i, j, kind in pairs:
                a, b = const.satellites[i].name, const.satellites[j].name
                if a in kept and b in kept:
                    name = self._name(f"isl-{a}-{b}", "isl")
                    self.links.append(Link(name=name, kind=LinkKind.SATELLITE,
                                           endpoints=[a, b], medium=Medium.P2P,
                                           delay_ms=1.0, rate_mbps=spec.isl.rate_mbps))
                    self.dyn[name] = DynLink(name, a, b, role=f"isl-{kind}",
                                             rate_mbps=spec.isl.rate_mbps)
        for s in sub.satellites:
            self.nodes[s.name] = Node(kind=NodeKind.SATELLITE,
                                      description=f"{spec.name_prefix} constellation")
        self.const = sub

    def _ever_visible(self, terminals: list[str], mask_deg: float) -> np.ndarray:
        """Which satellites rise above mask_deg for any terminal at any sample time."""
        const = self.const
        assert const is not None
        seen = np.zeros(len(const), dtype=bool)
        sats = const.positions_ecef(self.epoch + self.sample_t)  # (T, N, 3)
        for term in terminals:
            for k, t in enumerate(self.sample_t):
                p = self.frame.to_ecef(self.tracks[term].position(max(0.0, float(t))))
                lat, lon, _ = ecef_to_geodetic(p)
                up = enu_matrix(float(lat), float(lon))[2]
                d = sats[k] - p
                el = np.degrees(np.arcsin((d @ up) / np.linalg.norm(d, axis=1)))
                seen |= el >= mask_deg
        return seen

    def _name(self, wanted: str, prefix: str) -> str:
        name = wanted if len(wanted) <= 32 else f"{prefix}-{len(self.taken)}"
        while name in self.taken:
            name = f"{prefix}-{len(self.taken)}-{len(name)}"
        self.taken.add(name)
        return name

    def _access(self, i: int, acc: Access) -> None:
        sats = acc.candidates == "constellation"
        mask = acc.min_elevation_deg if acc.min_elevation_deg is not None else (
            25.0 if sats else 0.0)
        group = AccessGroup(acc, mask, {})
        channel = build_channel(acc.channel) if acc.channel is not None else None
        for term in acc.terminals:
            if term not in self.tracks:
                raise self.fail(f"access[{i}].terminals", f"'{term}' has no position",
                                "give it a position, location or motion")
            if sats:
                assert self.const is not None
                seen = self._ever_visible([term], mask - CANDIDATE_MARGIN_DEG)
                cands = [s.name for s, ok in zip(self.const.satellites, seen, strict=True)
                         if ok]
            else:
                assert isinstance(acc.candidates, list)
                cands = list(acc.candidates)
            group.links[term] = {}
            for cand in cands:
                name = self._name(f"{acc.name}-{term}-{cand}", acc.name)
                kind = LinkKind.SATELLITE if sats else LinkKind.AIR_TO_GROUND
                self.links.append(Link(name=name, kind=kind, endpoints=[term, cand],
                                       medium=Medium.P2P, delay_ms=1.0,
                                       rate_mbps=acc.rate_mbps,
                                       queue_packets=acc.queue_packets))
                self.dyn[name] = DynLink(name, term, cand, role="access", group=acc.name,
                                         channel=channel, rate_mbps=acc.rate_mbps)
                group.links[term][cand] = name
        self.groups.append(group)

    def _check_addresses(self, sc: Scenario) -> None:
        from testbed.scenario.references import _address_space

        problems = _address_space(sc)
        if problems:
            raise ScenarioError(self.source, problems)

    def _initial_delays(self, world: World) -> None:
        """Generated links start with the delay and rate of time zero, so the network is
        right before the first mobility tick."""
        snap = world.snapshot(0.0)
        links = []
        for link in world.sc.links:
            st = snap.links.get(link.name)
            if st is not None and link.channel is None:
                link = link.model_copy(update={"delay_ms": round(st.delay_ms, 6),
                                               "rate_mbps": max(st.rate_mbps, 0.01)})
            links.append(link)
        world.sc = world.sc.model_copy(update={"links": links})
