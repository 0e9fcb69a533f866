"""A synthetic run for the view's frame-rate benchmark: N nodes (two thirds satellites on
inclined circular orbits, the rest ground nodes) and M links, with 10 frames a second of moving
satellites, flickering link states, loads, probe RTTs and a handover now and then.  Seeded, so
two measurements draw the same scene; no emulation behind it - it exercises the page only.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any


class SyntheticFeed:
    live = True
    series: list[dict[str, Any]] = []  # no workload behind it

    def __init__(self, nodes: int = 200, links: int = 500, rate_hz: float = 10.0,
                 seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.rate = rate_hz
        n_sat = nodes * 2 // 3
        self.sats = [f"sat{i:03d}" for i in range(n_sat)]
        self.ground = [f"gnd{i:03d}" for i in range(nodes - n_sat)]
        planes = max(1, int(math.sqrt(n_sat)))
        self.orbit = {s: (360.0 * (i % planes) / planes, 360.0 * (i // planes) / (n_sat / planes))
                      for i, s in enumerate(self.sats)}
        self.gpos = {g: [self.rng.uniform(-55, 60), self.rng.uniform(-170, 170), 0.0]
                     for g in self.ground}
        pairs: set[tuple[str, str]] = set()
        everyone = self.sats + self.ground
        while len(pairs) < links:
            a, b = self.rng.sample(everyone, 2)
            pairs.add((min(a, b), max(a, b)))
        self.links = [(f"l{i:04d}", a, b) for i, (a, b) in enumerate(sorted(pairs))]
        self.t0 = time.time()
        self.emitted = 0.0

    def _sat(self, s: str, t: float) -> list[float]:
        raan, phase = self.orbit[s]
        u = math.radians(phase + t * 360.0 / 95.0)  # a 95 s orbit: everything moves visibly
        inc = math.radians(53.0)
        lat = math.degrees(math.asin(math.sin(inc) * math.sin(u)))
        lon = (raan + math.degrees(math.atan2(math.cos(inc) * math.sin(u), math.cos(u)))
               - t * 0.5 + 180.0) % 360.0 - 180.0
        return [round(lat, 4), round(lon, 4), 550.0]

    def run_info(self) -> dict[str, Any]:
        return {"scenario": "synthetic", "run_id": f"{len(self.sats) + len(self.ground)}x"
                f"{len(self.links)}", "live": True, "status": "running", "phase": "running",
                "duration_s": None, "time_scale": 1.0, "epoch_unix": None, "headline": []}

    def topology(self) -> dict[str, Any]:
        nodes = [{"name": s, "kind": "satellite", "pos": self._sat(s, 0.0), "moving": True,
                  "ip": None} for s in self.sats]
        nodes += [{"name": g, "kind": "ground_station", "pos": p, "moving": False, "ip": None}
                  for g, p in self.gpos.items()]
        links = [{"name": n, "medium": "p2p", "ends": [a, b],
                  "role": "isl-intra" if b.startswith("sat") else "access",
                  "configured": {"delay_ms": 5.0, "rate_mbps": 100.0, "loss_pct": 0.0},
                  "dynamic": True} for n, a, b in self.links]
        return {"run": self.run_info(), "frame": "geo", "origin": [0.0, 0.0], "nodes": nodes,
                "links": links, "flows": [], "series": self.series,
                "footprint_min_elevation_deg": 25.0}

    def now(self) -> float:
        return round(time.time() - self.t0, 3)

    def ended(self) -> bool:
        return False

    def poll(self) -> list[dict[str, Any]]:
        out = []
        now = self.now()
        while self.emitted + 1.0 / self.rate <= now:
            self.emitted = round(self.emitted + 1.0 / self.rate, 3)
            t = self.emitted
            rng = self.rng
            frame: dict[str, Any] = {"t": t, "pos": {s: self._sat(s, t) for s in self.sats}}
            frame["links"] = {n: {"state": rng.choice(["up", "up", "up", "unusable", "down"])}
                              for n, _, _ in rng.sample(self.links, min(20, len(self.links)))}
            frame["load"] = {n: round(rng.expovariate(0.2), 2) for n, _, _ in self.links}
            frame["rtt"] = {n: round(rng.uniform(5, 40), 2)
                            for n, _, _ in rng.sample(self.links, min(50, len(self.links)))}
            if rng.random() < 0.05:
                g = rng.choice(self.ground)
                a, b = rng.sample(self.sats, 2)
                frame["handovers"] = [{"group": "gsl", "terminal": g, "from": a, "to": b}]
            out.append(frame)
        return out
