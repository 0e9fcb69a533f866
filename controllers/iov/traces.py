"""SUMO drives for the IoV simulator: where every vehicle and RSU is, at any time.

Why a separate drive object: the discrete-event simulator runs the same DRDST protocol code
as the live emulation, and the comparison is only fair if both see the same traffic.  So a
drive comes either from SUMO (`city_drive`, driven through the project's own `SumoFeed`, the
code the emulation steps) or from a live run's recorded `mobility/drive.csv` (`from_run`),
and is then frozen into dense numpy arrays: the simulator asks for positions ~10^5 times,
which must not touch SUMO or Python-level per-vehicle records.

Layout: one common time grid `k * step_s` (k = 0..K-1), arrays X/Y of shape (K, N) filled
by interpolating each vehicle's own samples onto the grid and holding its first/last
position outside its time on the map, plus per-vehicle `t_first`/`t_last`.  Presence is
decided from those two times only, with the same rule as `VehicleTrack.present` (on the map
from the first sample until half a step after the last one), so a vehicle that leaves the
map (trip's end, `cruise: false`) or has not yet departed is absent.  Note that a vehicle
that cruises is also absent after the drive's end: there is no data beyond it.

Files: the vehicles are the project's drive trace (`write_trace`/`read_trace`: rows
t_s,vehicle,x,y,speed_mps), so a drive made here can be replayed live as `roads.trace`; the
RSUs, the step, the duration and the full vehicle list (a vehicle SUMO never managed to
insert has no rows) go to a JSON sidecar next to it, `<stem>.rsus.json`.  A trace without
a sidecar loads too (no RSUs; step from the trace).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.mobility.roads import Drove, SumoFeed, Trips, read_trace, write_trace
from testbed.scenario.model import Drive, Roads

ROOT = Path(__file__).resolve().parents[2]
GRID_NET = ROOT / "topologies" / "roads" / "grid5x5.net.xml"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.stem + ".rsus.json")


@dataclass
class CityDrive:
    """Vehicles (from SUMO or a trace) and fixed RSUs, queryable at any time t (seconds).

    Build with `from_records` (or `city_drive`/`from_run`/`load`); the dataclass fields
    after `duration_s` are the frozen arrays (internal)."""

    vehicles: list[str]
    rsus: dict[str, tuple[float, float]]
    step_s: float
    duration_s: float
    grid_x: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    grid_y: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    t_first: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    t_last: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    records: dict[str, Drove] = field(repr=False, default_factory=dict)
    build_s: float = 0.0  # wall time SUMO took (0 for a loaded drive)

    def __post_init__(self) -> None:
        self.index = {v: i for i, v in enumerate(self.vehicles)}
        self.rsu_names = list(self.rsus)
        self.rsu_xy = np.array([self.rsus[r] for r in self.rsu_names], dtype=float).reshape(-1, 2)
        self.nodes = [*self.vehicles, *self.rsu_names]
        self._cols = np.arange(len(self.vehicles))

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: dict[str, Drove], vehicles: list[str],
                     rsus: dict[str, tuple[float, float]], step_s: float,
                     duration_s: float | None = None,
                     offset: tuple[float, float] = (0.0, 0.0)) -> CityDrive:
        """Freezes per-vehicle records onto the common grid (vehicles without records stay
        absent all the time).  `offset` shifts network metres into the scenario frame."""
        last = max((d.t[-1] for v in vehicles if (d := records.get(v)) and d.t), default=0.0)
        dur = float(duration_s if duration_s is not None else last)
        k = int(math.floor(max(dur, last) / step_s + 1e-6)) + 2
        grid_t = np.arange(k) * step_s
        n = len(vehicles)
        gx, gy = np.zeros((k, n)), np.zeros((k, n))
        t0, t1 = np.full(n, np.inf), np.full(n, -np.inf)
        for i, v in enumerate(vehicles):
            d = records.get(v)
            if d is None or not d.t:
                continue
            t = np.asarray(d.t, dtype=float)
            xy = np.asarray(d.xy, dtype=float) + np.asarray(offset, dtype=float)
            gx[:, i] = np.interp(grid_t, t, xy[:, 0])  # holds the end values outside
            gy[:, i] = np.interp(grid_t, t, xy[:, 1])
            t0[i], t1[i] = t[0], t[-1]
        kept = {v: records[v] for v in vehicles if v in records}
        return cls(list(vehicles), dict(rsus), float(step_s), dur, gx, gy, t0, t1, kept)

    # ---- queries -------------------------------------------------------------------------
    def _present_mask(self, t: float) -> np.ndarray:
        return (t >= self.t_first - 1e-9) & (t <= self.t_last + self.step_s / 2)

    def _interp(self, t: np.ndarray | float, cols: np.ndarray | int) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """Positions of vehicle columns at (per-column) times, clamped into their span."""
        tc = np.clip(t, self.t_first[cols], self.t_last[cols])
        tc = np.where(np.isfinite(tc), tc, 0.0)
        u = tc / self.step_s
        i = np.clip(np.floor(u).astype(int), 0, self.grid_x.shape[0] - 2)
        f = u - i
        x = self.grid_x[i, cols] * (1 - f) + self.grid_x[i + 1, cols] * f
        y = self.grid_y[i, cols] * (1 - f) + self.grid_y[i + 1, cols] * f
        return x, y

    def present(self, name: str, t: float) -> bool:
        """On the map at t (RSUs always are; unknown names never are)."""
        if name in self.rsus:
            return True
        i = self.index.get(name)
        if i is None:
            return False
        return bool(t >= self.t_first[i] - 1e-9 and t <= self.t_last[i] + self.step_s / 2)

    def position(self, name: str, t: float) -> tuple[float, float] | None:
        """(x, y) metres at t, linearly interpolated between samples; None when off the map."""
        if name in self.rsus:
            return self.rsus[name]
        if not self.present(name, t):
            return None
        x, y = self._interp(t, self.index[name])
        return float(x), float(y)

    def velocity(self, name: str, t: float) -> tuple[float, float]:
        """(vx, vy) m/s from the grid segment around t; RSUs and absent vehicles: (0, 0)."""
        if name in self.rsus or not self.present(name, t):
            return (0.0, 0.0)
        c = self.index[name]
        tc = min(max(t, self.t_first[c]), self.t_last[c])
        i = min(max(int(math.floor(tc / self.step_s)), 0), self.grid_x.shape[0] - 2)
        return (float(self.grid_x[i + 1, c] - self.grid_x[i, c]) / self.step_s,
                float(self.grid_y[i + 1, c] - self.grid_y[i, c]) / self.step_s)

    def vehicle_arrays(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(xy (N, 2), present (N,)) for every vehicle in `vehicles` order at t; absent
        vehicles get their nearest on-map position (callers mask them).  The fast path."""
        x, y = self._interp(np.full(len(self.vehicles), float(t)), self._cols)
        return np.stack([x, y], axis=1), self._present_mask(t)

    def positions_at(self, t: float) -> dict[str, np.ndarray]:
        """{name: array([x, y])} for every present vehicle and every RSU at t."""
        xy, ok = self.vehicle_arrays(t)
        names = self.vehicles
        out = dict(zip([names[i] for i in np.flatnonzero(ok).tolist()], xy[ok], strict=True))
        out.update(zip(self.rsu_names, self.rsu_xy, strict=True))
        return out

    # ---- files ---------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Writes the drive trace at `path` and the RSUs etc. to `<stem>.rsus.json`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_trace(path, self.records)
        meta = {"vehicles": self.vehicles, "rsus": {k: list(v) for k, v in self.rsus.items()},
                "step_s": self.step_s, "duration_s": self.duration_s}
        _sidecar(path).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> CityDrive:
        """A drive written by `save` (or any drive trace; then no RSUs)."""
        path = Path(path)
        records, step = read_trace(path)
        side = _sidecar(path)
        if side.is_file():
            meta = json.loads(side.read_text())
            rsus = {k: (float(v[0]), float(v[1])) for k, v in meta["rsus"].items()}
            return cls.from_records(records, list(meta["vehicles"]), rsus,
                                    float(meta["step_s"]), float(meta["duration_s"]))
        return cls.from_records(records, sorted(records), {}, step)


def rsu_grid(n_rsu: int, size_m: float = 1000.0) -> dict[str, tuple[float, float]]:
    """rsu1..rsuN at the cell centres of a near-square lattice over the map, row by row from
    the south-west (4 gives the iov-drdst scenario's (250,250),(750,250),(250,750),(750,750)):
    even coverage, so every RSU serves about the same area."""
    if n_rsu < 1:
        raise ValueError("n_rsu must be at least 1")
    cols = math.ceil(math.sqrt(n_rsu))
    rows = math.ceil(n_rsu / cols)
    out: dict[str, tuple[float, float]] = {}
    for k in range(n_rsu):
        r, c = divmod(k, cols)
        out[f"rsu{k + 1}"] = (size_m * (c + 0.5) / cols, size_m * (r + 0.5) / rows)
    return out


def default_rsus(n_vehicles: int) -> int:
    """4 RSUs up to 100 vehicles, 9 up to 300, 16 above: ~25-35 vehicles per cell."""
    return 4 if n_vehicles <= 100 else 9 if n_vehicles <= 300 else 16


def _cache_name(n: int, duration_s: float, seed: int, step_s: float, net: Path,
                leave_fraction: float) -> str:
    return (f"city-n{n}-d{duration_s:g}-s{seed}-st{step_s:g}-{net.name.split('.')[0]}"
            f"-lf{leave_fraction:g}.csv")


def city_drive(n_vehicles: int, duration_s: float, seed: int, *, n_rsu: int | None = None,
               net: Path = GRID_NET, step_s: float = 0.5, depart_spread_s: float = 10.0,
               leave_fraction: float = 0.1, cache_dir: Path | None = None) -> CityDrive:
    """`n_vehicles` SUMO vehicles (v000, v001, ...) driving random shortest-path trips on
    `net` for `duration_s`, with RSUs from `rsu_grid`.

    Departures are evenly spread over `depart_spread_s` (SUMO may insert a vehicle later
    when its first edge is full).  round(leave_fraction * n) vehicles, drawn from the seed,
    leave the map at the end of their trip (`cruise=False`, trips of >= 2 edges rather than
    4, so most leave within a couple of minutes) so the chain sees nodes go; the
    others cruise on to new random destinations (seeded per vehicle by SumoFeed).  Everything
    is drawn from `seed`, so the same arguments give the same drive; with `cache_dir` the
    drive is kept as a CSV (+ sidecar) and reloaded instead of running SUMO again."""
    net = Path(net)
    rsus = rsu_grid(n_rsu if n_rsu is not None else default_rsus(n_vehicles))
    cached: Path | None = None
    if cache_dir is not None:
        cached = Path(cache_dir) / _cache_name(n_vehicles, duration_s, seed, step_s, net,
                                               leave_fraction)
        if cached.is_file() and _sidecar(cached).is_file():
            d = CityDrive.load(cached)
            return CityDrive.from_records(d.records, d.vehicles, rsus, d.step_s, d.duration_s)
    t_start = time.perf_counter()
    rng = np.random.default_rng([seed, n_vehicles])
    names = [f"v{i:03d}" for i in range(n_vehicles)]
    leaving = set(rng.permutation(n_vehicles)[:round(leave_fraction * n_vehicles)].tolist())
    drives = {v: Drive(depart_s=round(depart_spread_s * i / max(n_vehicles, 1), 3),
                       cruise=i not in leaving) for i, v in enumerate(names)}
    trips = Trips(net)
    # leavers get shorter trips (>= 2 edges, not 4) so they leave within a short run
    routes = {v: trips.random(np.random.default_rng([seed, i, 17]),
                              min_edges=2 if i in leaving else 4)
              for i, v in enumerate(names)}
    roads = Roads(net=str(net), step_s=step_s)
    feed = SumoFeed(net, roads, drives, seed, routes, trips)
    try:
        feed.advance(duration_s)
        records = dict(feed.records)
    finally:
        feed.close()
    drive = CityDrive.from_records(records, names, rsus, step_s, duration_s)
    drive.build_s = time.perf_counter() - t_start
    if cached is not None:
        drive.save(cached)
    return drive


def from_run(run_dir: Path) -> CityDrive:
    """The drive a live run recorded (`mobility/drive.csv`), with its RSUs (nodes of kind
    rsu in `scenario.resolved.yaml`), vehicles (kind vehicle: background SUMO traffic in the
    trace is left out) and the roads offset, so the simulator replays exactly that run."""
    import yaml

    run_dir = Path(run_dir)
    sc = yaml.safe_load((run_dir / "scenario.resolved.yaml").read_text())
    nodes = sc.get("nodes") or {}
    rsus = {n: (float(v["position"][0]), float(v["position"][1]))
            for n, v in nodes.items() if v.get("kind") == "rsu" and v.get("position")}
    records, step = read_trace(run_dir / "mobility" / "drive.csv")
    vehicles = [n for n, v in nodes.items() if v.get("kind") == "vehicle"] or sorted(records)
    roads = sc.get("roads") or {}
    step = float(roads.get("step_s", step))
    offset = tuple(float(x) for x in roads.get("offset", (0.0, 0.0)))
    return CityDrive.from_records(records, vehicles, rsus, step,
                                  float(sc.get("duration_s", 0.0)) or None,
                                  offset=(offset[0], offset[1]))
