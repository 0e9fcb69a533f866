"""Vehicles on a road network: Eclipse SUMO stepped in lock-step with the mobility clock, or
a recorded drive replayed without it.

Why SUMO in-process (libsumo) rather than TraCI over a socket: 200 vehicles stepped at
10 Hz cost ~2 ms a step in-process, and there is no extra process to start, supervise or
leave behind.  The price is that libsumo holds one simulation per process; a `SumoFeed`
that loses it to a newer one (two scenarios built in one test process) replays SUMO from
the start up to its own time - SUMO is deterministic under its seed, so it sees the same
drive again.

The feed is advanced lazily: asking for a vehicle's position at mobility time t steps SUMO
up to t (the mobility driver asks once per tick, so SUMO runs in lock-step with it), and
every step's positions are kept, so earlier times are answered from the record and the
whole drive is written to the run folder (`mobility/drive.csv`).  That file, given as
`roads.trace`, replays the same traffic with no SUMO at all (on a board, in a sweep).

Vehicles enter the map at their departure and leave it at the end of their route (unless
they cruise on to new random destinations); while off the map a vehicle is parked far away
(no radio reaches it) and `present()` is false, so its links go down and come back with it.
Routes are drawn from the scenario seed with sumolib's shortest paths, so a rerun drives
the same trips.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from testbed.scenario.errors import Problem, ScenarioError
from testbed.scenario.files import RESULTS, FileProblem, finite, referenced, text_of
from testbed.scenario.model import Drive, NodeKind, Roads, Scenario

PARKED = np.array([-1.0e5, -1.0e5, 0.0])  # off the map: 141 km from the origin
TRACE_HEADER = ["t_s", "vehicle", "x", "y", "speed_mps"]
INSTALL_FIX = ("SUMO comes with the project's pinned packages: run `make setup` (it installs "
               "libsumo, sumolib and sumo-data into .venv), or replay a recorded drive with "
               "roads.trace")


@dataclass
class Drove:
    """One vehicle's record: the times it was seen and where (network metres), in order."""

    t: list[float] = field(default_factory=list)
    xy: list[tuple[float, float]] = field(default_factory=list)
    speed: list[float] = field(default_factory=list)
    gone: bool = False  # left the map for good (the record is final)


class RoadFeed(Protocol):
    step_s: float

    def record(self, vehicle: str, t: float) -> Drove:
        """The vehicle's record, complete up to mobility time t at least."""
        ...

    def save(self, path: Path) -> int:
        """Writes every vehicle's drive as a trace; returns the number of rows."""
        ...

    def close(self) -> None: ...


class VehicleTrack:
    """A vehicle's position on the road network at mobility time t (a motion Track)."""

    def __init__(self, feed: RoadFeed, vehicle: str, offset: tuple[float, float],
                 height_m: float) -> None:
        self.feed, self.vehicle = feed, vehicle
        self.offset = np.array([offset[0], offset[1], height_m])

    def present(self, t: float) -> bool:
        return self._on_map(self.feed.record(self.vehicle, t), t)

    def _on_map(self, d: Drove, t: float) -> bool:
        if not d.t or t < d.t[0] - 1e-9:
            return False
        return not (d.gone and t > d.t[-1] + self.feed.step_s / 2)

    def position(self, t: float) -> np.ndarray:
        d = self.feed.record(self.vehicle, t)
        if not self._on_map(d, t):
            return PARKED
        if abs(d.t[-1] - t) < 1e-6:  # the driver's tick: SUMO's latest step
            x, y = d.xy[-1]
            return self.offset + np.array([x, y, 0.0])
        i = max(bisect.bisect_right(d.t, t) - 1, 0)
        if t <= d.t[0]:
            x, y = d.xy[0]
        elif i >= len(d.t) - 1:
            x, y = d.xy[-1]
        else:
            f = (t - d.t[i]) / (d.t[i + 1] - d.t[i])
            (x0, y0), (x1, y1) = d.xy[i], d.xy[i + 1]
            x, y = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        return self.offset + np.array([x, y, 0.0])


def _seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) & 0x7FFFFFFF


class Trips:
    """Routes on the network, drawn or checked with sumolib (no simulation needed)."""

    def __init__(self, net_path: Path) -> None:
        import sumolib

        self.net = sumolib.net.readNet(str(net_path))
        self.edges = sorted((e for e in self.net.getEdges() if e.allows("passenger")),
                            key=lambda e: e.getID())
        if not self.edges:
            raise ValueError("the network has no edge open to passenger cars")

    def random(self, rng: np.random.Generator, start: str | None = None,
               min_edges: int = 4) -> list[str]:
        """A shortest path between two random edges (from `start` when given), at least
        min_edges long when the network allows."""
        first = self.net.getEdge(start) if start else None
        best: list[str] = []
        for _ in range(50):
            a = first or self.edges[int(rng.integers(len(self.edges)))]
            b = self.edges[int(rng.integers(len(self.edges)))]
            path, _cost = self.net.getShortestPath(a, b)
            if path and len(path) > len(best):
                best = [e.getID() for e in path]
            if len(best) >= min_edges:
                break
        return best

    def check(self, route: list[str]) -> str | None:
        """Why a user's route cannot be driven, or None."""
        for i, e in enumerate(route):
            if not self.net.hasEdge(e):
                return f"route[{i}]: no edge '{e}' in the network"
        for i, (a, b) in enumerate(itertools.pairwise(route)):
            if self.net.getEdge(b) not in self.net.getEdge(a).getOutgoing():
                return f"route[{i + 1}]: edge '{b}' does not follow '{a}'"
        return None


class SumoFeed:
    """SUMO (libsumo) advanced on demand; every step's positions kept."""

    _active: ClassVar[SumoFeed | None] = None  # libsumo runs one simulation per process

    def __init__(self, net_path: Path, roads: Roads, drives: dict[str, Drive], seed: int,
                 routes: dict[str, list[str]], trips: Trips) -> None:
        self.net_path, self.roads, self.seed = net_path, roads, seed
        self.step_s = roads.step_s
        self.drives, self.routes, self.trips = drives, routes, trips
        self.records: dict[str, Drove] = {}
        self.t = 0.0  # SUMO time reached (all records complete up to it)
        self.steps = 0
        self._lock = threading.Lock()  # the driver's tick and a workload may both ask

    # ---- the simulation --------------------------------------------------------------------
    def _start(self) -> None:
        try:
            import libsumo
        except ImportError:
            raise RuntimeError(f"SUMO is not installed: {INSTALL_FIX}") from None
        if SumoFeed._active is not None:
            libsumo.close()
            SumoFeed._active._lost()
        libsumo.start(["sumo", "-n", str(self.net_path), "--step-length", str(self.step_s),
                       "--seed", str(self.seed), "--no-step-log", "true",
                       "--no-warnings", "true", "--collision.action", "warn",
                       "--time-to-teleport", "-1"])
        SumoFeed._active = self
        self._rngs = {v: np.random.default_rng(_seed(self.seed, v)) for v in self.drives}
        self._route_len: dict[str, int] = {}
        for v, drive in self.drives.items():
            libsumo.route.add(f"route-{v}", self.routes[v])
            libsumo.vehicle.add(v, f"route-{v}", depart=f"{drive.depart_s:.3f}")
            self._route_len[v] = len(self.routes[v])
        rng = np.random.default_rng(_seed(self.seed, "background"))
        for k in range(self.roads.background_vehicles):
            name = f"bg{k}"
            libsumo.route.add(f"route-{name}", self.trips.random(rng))
            depart = float(rng.uniform(0.0, self.roads.depart_spread_s))
            libsumo.vehicle.add(name, f"route-{name}", depart=f"{depart:.3f}")
        self._lib = libsumo
        self._sim_t = 0.0

    def _lost(self) -> None:
        """Another feed took libsumo: the next step replays from the start."""
        self._lib = None  # type: ignore[assignment]

    def _step(self, record: bool) -> None:
        lib = self._lib
        c = lib.constants
        lib.simulationStep()
        self._sim_t = round(self._sim_t + self.step_s, 9)
        for v in lib.simulation.getDepartedIDList():
            lib.vehicle.subscribe(v, [c.VAR_POSITION, c.VAR_SPEED, c.VAR_ROUTE_INDEX])
        arrived = lib.simulation.getArrivedIDList()
        results = lib.vehicle.getAllSubscriptionResults()
        for v, res in results.items():
            if v in self.drives and self.drives[v].cruise and \
                    res[c.VAR_ROUTE_INDEX] >= self._route_len[v] - 1:
                edge = lib.vehicle.getRoadID(v)
                if edge.startswith(":"):  # inside a junction: choose on the next edge
                    continue
                nxt = self.trips.random(self._rngs[v], start=edge)
                if len(nxt) > 1:
                    lib.vehicle.setRoute(v, nxt)
                    self._route_len[v] = len(nxt)
            if record:
                d = self.records.setdefault(v, Drove())
                x, y = res[c.VAR_POSITION]
                d.t.append(self._sim_t)
                d.xy.append((float(x), float(y)))
                d.speed.append(float(res[c.VAR_SPEED]))
        if record:
            for v in arrived:
                self.records.setdefault(v, Drove()).gone = True

    def advance(self, t: float) -> None:
        while self.t + self.step_s / 2 <= t:
            if getattr(self, "_lib", None) is None:
                self._start()
                while self._sim_t + self.step_s / 2 <= self.t:  # replay to where we were
                    self._step(record=False)
            self._step(record=True)
            self.t = self._sim_t
            self.steps += 1

    # ---- RoadFeed ----------------------------------------------------------------------------
    def record(self, vehicle: str, t: float) -> Drove:
        if t > self.t:
            with self._lock:
                self.advance(t)
        return self.records.get(vehicle) or Drove()

    def save(self, path: Path) -> int:
        with self._lock:
            return write_trace(path, self.records)

    def close(self) -> None:
        if SumoFeed._active is self and getattr(self, "_lib", None) is not None:
            self._lib.close()
            SumoFeed._active = None
        self._lib = None  # type: ignore[assignment]


class TraceFeed:
    """A recorded drive (`roads.trace`): final records, no SUMO."""

    def __init__(self, path: Path) -> None:
        self.records, self.step_s = read_trace(path)

    def record(self, vehicle: str, t: float) -> Drove:
        return self.records.get(vehicle) or Drove()

    def save(self, path: Path) -> int:
        return write_trace(path, self.records)

    def close(self) -> None:
        pass


def write_trace(path: Path, records: dict[str, Drove]) -> int:
    rows = sorted((t, v, x, y, s) for v, d in records.items()
                  for t, (x, y), s in zip(d.t, d.xy, d.speed, strict=True))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRACE_HEADER)
        for t, v, x, y, s in rows:
            w.writerow([f"{t:.3f}", v, f"{x:.2f}", f"{y:.2f}", f"{s:.2f}"])
    return len(rows)


# a recorded drive (rows per vehicle per step): 5000 vehicles at 10 Hz for 10 min is ~1.5 GB,
# far past what one host replays; 256 MB is ~5 M rows
MAX_DRIVE_BYTES = 256 << 20


def read_trace(path: Path) -> tuple[dict[str, Drove], float]:
    """A drive trace: rows t_s,vehicle,x,y,speed_mps.  A vehicle is on the map from its
    first row to its last; the step is the smallest time increment seen."""
    records: dict[str, Drove] = {}
    reader = csv.DictReader(io.StringIO(text_of(path, MAX_DRIVE_BYTES, "CSV"), newline=""))
    if not reader.fieldnames or not set(TRACE_HEADER) <= set(reader.fieldnames):
        raise ValueError(f"{path}: header must have columns {','.join(TRACE_HEADER)}")
    for row in reader:
        try:
            t, x, y = finite(row["t_s"]), finite(row["x"]), finite(row["y"])
            s = finite(row["speed_mps"])
        except (TypeError, ValueError):
            raise ValueError(f"{path}:{reader.line_num}: not a finite number in {row}") from None
        d = records.setdefault(row["vehicle"], Drove())
        if d.t and t <= d.t[-1]:
            raise ValueError(f"{path}:{reader.line_num}: time goes back for vehicle "
                             f"{row['vehicle']} ({t} after {d.t[-1]})")
        d.t.append(t)
        d.xy.append((x, y))
        d.speed.append(s)
    if not records:
        raise ValueError(f"{path}: no rows")
    steps = [b - a for d in records.values() for a, b in itertools.pairwise(d.t)]
    step = min(steps) if steps else 0.1
    for d in records.values():
        d.gone = True
    return records, step


def locate(base: Path, name: str, shared: Path | None = None) -> Path | None:
    """`name` relative to the scenario's folder, else to the shared topologies folder; a
    name leading outside both (and outside results/, where recorded drives lie) is a
    FileProblem."""
    folders = [base] + ([shared] if shared is not None else [])
    return referenced(name, folders, [*folders, RESULTS])


def _locate(base: Path, name: str, shared: Path | None, field: str,
            fail: Callable[[str, str, str], ScenarioError]) -> Path | None:
    try:
        return locate(base, name, shared)
    except FileProblem as exc:
        raise fail(field, exc.message, exc.fix) from None


def open_roads(sc: Scenario, source: str, base: Path,
               shared: Path | None = None) -> RoadFeed | None:
    """The scenario's road feed, every input checked first (errors name the field)."""
    roads = sc.roads
    if roads is None:
        return None
    vehicles = {n: node.drive or Drive() for n, node in sc.nodes.items()
                if node.kind is NodeKind.VEHICLE}

    def fail(path: str, message: str, fix: str) -> ScenarioError:
        return ScenarioError(source, [Problem(path, message, fix)])

    if roads.trace is not None:
        path = _locate(base, roads.trace, shared, "roads.trace", fail)
        if path is None:
            raise fail("roads.trace", f"no trace file '{roads.trace}'",
                       "give a drive recorded by a run (results/<run>/mobility/drive.csv)")
        try:
            feed = TraceFeed(path)
        except (OSError, ValueError) as exc:
            raise fail("roads.trace", str(exc), "use a drive.csv written by a run") from None
        missing = sorted(set(vehicles) - set(feed.records))
        if missing:
            raise fail("roads.trace", f"vehicles {missing[:5]} never appear in the trace",
                       "record the drive with the same vehicle names, or remove them")
        return feed
    net = _locate(base, roads.net, shared, "roads.net", fail)
    if net is None:
        raise fail("roads.net", f"no road network '{roads.net}'",
                   "give a SUMO .net.xml relative to the scenario file or topologies/")
    try:
        import libsumo  # noqa: F401
        import sumolib  # noqa: F401
    except ImportError:
        raise fail("roads", "SUMO (libsumo, sumolib) is not installed", INSTALL_FIX) from None
    try:
        trips = Trips(net)
    except Exception as exc:  # noqa: BLE001 - sumolib raises SAX and value errors alike
        raise fail("roads.net", f"{net.name} is not a SUMO road network: {exc}",
                   "give a .net.xml written by netconvert/netgenerate") from None
    routes: dict[str, list[str]] = {}
    for v, drive in vehicles.items():
        if drive.route is not None:
            why = trips.check(drive.route) if drive.route else "route: empty"
            if why is not None:
                raise fail(f"nodes.{v}.drive.{why.split(':')[0]}", why.split(": ", 1)[1],
                           "list connected edge ids of the network in driving order, or "
                           "drop route for a random trip")
            routes[v] = list(drive.route)
        else:
            routes[v] = trips.random(np.random.default_rng(_seed(sc.seed, v)))
            if not routes[v]:
                raise fail(f"nodes.{v}.drive", "no route could be drawn on the network",
                           "check that the network's edges are connected")
    return SumoFeed(net, roads, vehicles, sc.seed, routes, trips)


def describe(feed: RoadFeed | None) -> dict[str, Any]:
    if feed is None:
        return {}
    kind = "sumo" if isinstance(feed, SumoFeed) else "trace"
    return {"roads": kind, "step_s": feed.step_s}
