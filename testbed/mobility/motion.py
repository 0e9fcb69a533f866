"""Where ground users and UAVs are at mobility time t: one small class per motion model.

Positions are metres in the scenario's local east/north/up frame (anchored at
`mobility.origin`).  Every track is a pure function of t (random waypoint draws its legs
from a seeded generator, lazily and in order), so the link engine, the route predictor and
the plots all see the same positions, and a rerun with the same seed moves identically.
UAVs flown by an autopilot have a TelemetryTrack: the position their autopilot last
reported (a workload service feeds it: firmware.autopilots).
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np

from testbed.mobility.geo import LocalFrame, geodetic_to_ecef
from testbed.scenario.files import RESULTS, finite, referenced, text_of
from testbed.scenario.model import (
    CircleMotion,
    Node,
    RandomWaypointMotion,
    TraceMotion,
    WaypointsMotion,
)


class Track(Protocol):
    def position(self, t: float) -> np.ndarray:
        """ENU metres at mobility time t (seconds since time zero)."""
        ...


class Static:
    def __init__(self, xyz: tuple[float, float, float] | np.ndarray) -> None:
        self.xyz = np.asarray(xyz, dtype=float)

    def position(self, t: float) -> np.ndarray:
        return self.xyz


class Polyline:
    """Linear interpolation through (t, xyz) samples; optionally periodic."""

    def __init__(self, times: list[float], points: list[tuple[float, float, float]],
                 loop: bool) -> None:
        if len(times) < 2:
            raise ValueError("a track needs at least two samples")
        self.t = times
        self.p = np.asarray(points, dtype=float)
        self.loop = loop

    def position(self, t: float) -> np.ndarray:
        t0, t1 = self.t[0], self.t[-1]
        if self.loop and t > t1:
            t = t0 + (t - t0) % (t1 - t0)
        if t <= t0:
            return self.p[0]
        if t >= t1:
            return self.p[-1]
        i = bisect.bisect_right(self.t, t) - 1
        f = (t - self.t[i]) / (self.t[i + 1] - self.t[i])
        return self.p[i] + f * (self.p[i + 1] - self.p[i])


class Circle:
    def __init__(self, m: CircleMotion) -> None:
        self.c = np.asarray(m.center, dtype=float)
        self.r = m.radius_m
        self.omega = m.speed_mps / m.radius_m * (-1.0 if m.clockwise else 1.0)
        self.phase = math.radians(m.phase_deg)

    def position(self, t: float) -> np.ndarray:
        a = self.phase + self.omega * t
        return self.c + np.array([self.r * math.cos(a), self.r * math.sin(a), 0.0])


class RandomWaypoint:
    """Legs are drawn on demand and cached: position(t) is deterministic for any order of
    queries."""

    def __init__(self, m: RandomWaypointMotion, seed: int) -> None:
        self.m = m
        self.rng = np.random.default_rng(seed)
        start = self._draw_point()
        self.times = [0.0]
        self.points = [start]

    def _draw_point(self) -> tuple[float, float, float]:
        (x0, y0), (x1, y1) = self.m.area
        return (float(self.rng.uniform(x0, x1)), float(self.rng.uniform(y0, y1)),
                self.m.height_m)

    def _extend(self, t: float) -> None:
        while self.times[-1] <= t:
            here = self.points[-1]
            there = self._draw_point()
            speed = float(self.rng.uniform(*self.m.speed_mps))
            dist = math.dist(here, there)
            arrive = self.times[-1] + max(dist / speed, 1e-3)
            self.times.append(arrive)
            self.points.append(there)
            if self.m.pause_s > 0:
                self.times.append(arrive + self.m.pause_s)
                self.points.append(there)

    def position(self, t: float) -> np.ndarray:
        self._extend(t)
        return Polyline(self.times, self.points, loop=False).position(t)


class TelemetryTrack:
    """A node's position as its telemetry reports it (local frame, metres): a UAV flown by
    its autopilot."""

    def __init__(self, initial: np.ndarray, frame: LocalFrame) -> None:
        self.xyz = np.asarray(initial, dtype=float)
        self.frame = frame
        self.updates = 0

    def update(self, lat: float, lon: float, alt_amsl_m: float) -> None:
        self.xyz = self.frame.from_ecef(geodetic_to_ecef(lat, lon, alt_amsl_m / 1000.0))
        self.updates += 1

    def position(self, t: float) -> np.ndarray:
        return self.xyz


# a recorded flight: 10 Hz for hours is a few MB; a file this big is the wrong file
MAX_TRACE_BYTES = 64 << 20


def read_trace(path: Path) -> tuple[list[float], list[tuple[float, float, float]]]:
    """CSV with a header t_s,x,y,z; times strictly increasing.  Errors name the line."""
    times: list[float] = []
    points: list[tuple[float, float, float]] = []
    reader = csv.DictReader(io.StringIO(text_of(path, MAX_TRACE_BYTES, "CSV"), newline=""))
    if not reader.fieldnames or not {"t_s", "x", "y", "z"} <= set(reader.fieldnames):
        raise ValueError(f"{path}: header must have columns t_s,x,y,z")
    for row in reader:
        line = reader.line_num
        try:
            t = finite(row["t_s"])
            p = (finite(row["x"]), finite(row["y"]), finite(row["z"]))
        except (TypeError, ValueError):
            raise ValueError(f"{path}:{line}: not a finite number in {row}") from None
        if times and t <= times[-1]:
            raise ValueError(f"{path}:{line}: t_s must increase ({t} after {times[-1]})")
        times.append(t)
        points.append(p)
    if len(times) < 2:
        raise ValueError(f"{path}: a trace needs at least two rows")
    return times, points


def node_seed(seed: int, node: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(node.encode())) & 0x7FFFFFFF


def track_for(name: str, node: Node, seed: int, base_dir: Path,
              initial: np.ndarray | None = None) -> Track | None:
    """The node's track, or None when it has no place at all.  `initial` is its static
    position in the local frame (from `position` or a converted `location`)."""
    m = node.motion
    if isinstance(m, WaypointsMotion):
        return Polyline([w.t_s for w in m.waypoints], [w.position for w in m.waypoints], m.loop)
    if isinstance(m, CircleMotion):
        return Circle(m)
    if isinstance(m, RandomWaypointMotion):
        return RandomWaypoint(m, node_seed(seed, name))
    if isinstance(m, TraceMotion):
        path = referenced(m.file, [base_dir], [base_dir, RESULTS])
        if path is None:
            raise ValueError(f"no trace file {base_dir / m.file}")
        times, points = read_trace(path)
        return Polyline(times, points, m.loop)
    if initial is not None:
        return Static(initial)
    return None
