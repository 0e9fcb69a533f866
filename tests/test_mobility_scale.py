"""Mobility at mega-constellation scale without an emulation: the starlink-slice expansion
(>= 1,000 nodes, >= 2,000 links) and the driver's per-tick work on it, and the numpy paths
agreeing with the per-link reference rules they replaced."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from worlds import expanded

from testbed.mobility.driver import MobilityDriver
from testbed.mobility.handover import Candidate, choose, choose_scored
from testbed.mobility.world import World

pytestmark = pytest.mark.unit

TOPO = Path(__file__).resolve().parents[1] / "topologies"


@pytest.fixture(scope="module")
def slice_world() -> World:
    return expanded("starlink-slice")


def test_starlink_slice_expands_to_a_thousand_nodes(slice_world: World):
    sc = slice_world.sc
    roles = slice_world.describe()["dynamic_links"]
    assert len(sc.nodes) >= 1000 and len(sc.links) >= 2000
    assert 900 < len(slice_world.sat_names) < 72 * 22  # include: visible cut the shell
    assert set(roles) == {"isl-intra", "isl-inter", "access"}
    names = [link.name for link in sc.links]
    assert len(names) == len(set(names)) and all(len(n) <= 32 for n in names)


def test_driver_ticks_at_scale(slice_world: World, tmp_path: Path):
    """A tick at this size computes geometry, handovers and changes for every link; changes
    follow the delay-resolution / 0.5 % / 0.05-point rule (the per-tick cost is measured by
    `make bench BENCH=scale`, not asserted here)."""
    net = types.SimpleNamespace(down_links=set(), segment_cost={}, mobility_down=set(),
                                graph=None)
    d = MobilityDriver(slice_world, net, tmp_path)  # type: ignore[arg-type]
    first = d.prepare(0.0, 0.0)
    assert len(first.changes) == len(slice_world.dyn)  # everything is sent once
    # at most one attachment per terminal (nearly all have a satellite above 25 deg)
    chosen = d.assoc.chosen_links()
    terminals = sum(len(g.links) for g in slice_world.groups)
    assert 0.9 * terminals <= len(chosen) <= terminals
    for name in chosen:
        assert first.desired[name].up and name not in first.unroutable
    for k in range(1, 21):
        p = d.prepare(k / 10, k / 10)
        d._log(p.snap, p.desired, p.unroutable, p.flipped, k / 10)
    applied = d.applied
    resolution = slice_world.sc.mobility.delay_resolution_ms
    for name, st in p.desired.items():
        assert applied[name].up == st.up
        assert abs(applied[name].delay_ms - st.delay_ms) < resolution
    d.close()
    rows = (tmp_path / "link-state.csv").read_text().splitlines()
    assert len(rows) > len(slice_world.dyn)  # the full table once a second
    pos = (tmp_path / "positions.csv").read_text().splitlines()
    assert len(pos) == 1 + 2 * len(slice_world.sc.nodes)  # t = 0 and t = 1 s


@pytest.mark.parametrize("policy", ["highest-elevation", "nearest", "strongest-signal",
                                    "longest-visibility"])
def test_choose_scored_is_choose(policy: str):
    rng = np.random.default_rng(7)
    field = {"highest-elevation": "elevation_deg", "nearest": "range_km",
             "strongest-signal": "snr_db", "longest-visibility": "remaining_s"}[policy]
    for trial in range(400):
        n = int(rng.integers(1, 8))
        names = [f"s{i}" for i in range(n)]
        vals = rng.integers(0, 5, n).astype(float)  # ties on purpose
        if trial % 50 == 0:
            vals[0] = np.nan
        ok = rng.random(n) < 0.7
        current = rng.choice([*names, None, "gone"])
        hyst = float(rng.choice([0.0, 1.0, 2.5]))
        cands = [Candidate(**{"name": nm, "eligible": bool(o), "elevation_deg": 0.0,
                              "range_km": 0.0, field: float(v)})
                 for nm, o, v in zip(names, ok, vals, strict=True)]
        scores = -vals if policy == "nearest" else vals
        assert choose_scored(policy, names, ok, scores, current, hyst) == \
            choose(policy, cands, current, hyst), (names, vals, ok, current, hyst)
