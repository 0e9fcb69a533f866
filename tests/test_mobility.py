"""Mobility without an emulation: handover policies, motion models, the expansion of
constellations and access groups into links, geometry of the link states, route diffs and
the outage measure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from worlds import expanded

from testbed import scenario
from testbed.mobility.geo import C_KM_S, geodetic_to_ecef
from testbed.mobility.handover import Candidate, choose
from testbed.mobility.motion import Circle, Polyline, RandomWaypoint, read_trace
from testbed.mobility.report import outage_s
from testbed.mobility.world import World, ray_min_altitude_km
from testbed.net.plan import Route
from testbed.net.routing import diff
from testbed.scenario import ScenarioError
from testbed.scenario.model import CircleMotion, RandomWaypointMotion

pytestmark = pytest.mark.unit

TOPO = Path(__file__).resolve().parents[1] / "topologies"


def cand(name: str, el: float, ok: bool = True, rng: float = 1000.0, snr: float = 0.0,
         remaining: float = 0.0) -> Candidate:
    return Candidate(name, ok, el, rng, snr, remaining)


# --- handover policies ----------------------------------------------------------------------

def test_highest_elevation_with_hysteresis():
    cs = [cand("a", 40), cand("b", 41.5)]
    assert choose("highest-elevation", cs, None, 2.0) == "b"  # nothing attached: best
    assert choose("highest-elevation", cs, "a", 2.0) == "a"  # better by < 2 degrees: stay
    cs = [cand("a", 40), cand("b", 42.5)]
    assert choose("highest-elevation", cs, "a", 2.0) == "b"


def test_current_lost_switches_and_nothing_eligible_is_none():
    assert choose("highest-elevation", [cand("a", 20, ok=False), cand("b", 30)], "a") == "b"
    assert choose("highest-elevation", [cand("a", 20, ok=False)], "a") is None


def test_longest_visibility_keeps_until_set():
    cs = [cand("a", 30, remaining=10), cand("b", 60, remaining=300)]
    assert choose("longest-visibility", cs, None) == "b"
    assert choose("longest-visibility", cs, "a") == "a"
    cs = [cand("a", 30, ok=False), cand("b", 60, remaining=300)]
    assert choose("longest-visibility", cs, "a") == "b"


def test_nearest_and_strongest_signal():
    cs = [cand("a", 10, rng=5.0, snr=10), cand("b", 10, rng=3.0, snr=25)]
    assert choose("nearest", cs, "a", 1.0) == "b"
    assert choose("nearest", cs, "a", 3.0) == "a"
    assert choose("strongest-signal", cs, "a", 3.0) == "b"
    with pytest.raises(ValueError):
        choose("random", cs, None)


# --- motion -----------------------------------------------------------------------------------

def test_polyline_interpolates_holds_and_loops():
    p = Polyline([0, 10], [(0, 0, 0), (100, 0, 0)], loop=False)
    assert p.position(5)[0] == pytest.approx(50)
    assert p.position(20)[0] == pytest.approx(100)
    q = Polyline([0, 10, 20], [(0, 0, 0), (100, 0, 0), (0, 0, 0)], loop=True)
    assert q.position(25)[0] == pytest.approx(50)


def test_circle_speed_and_radius():
    c = Circle(CircleMotion(model="circle", center=(10, 20, 100), radius_m=50, speed_mps=5))
    a, b = c.position(3.0), c.position(3.1)
    assert np.linalg.norm(a - np.array([10, 20, 100])) == pytest.approx(50)
    assert np.linalg.norm(b - a) / 0.1 == pytest.approx(5, rel=1e-3)


def test_random_waypoint_is_deterministic_and_bounded():
    m = RandomWaypointMotion(model="random-waypoint", area=((0, 0), (100, 50)),
                             speed_mps=(1, 2), pause_s=1)
    a, b = RandomWaypoint(m, 3), RandomWaypoint(m, 3)
    times = np.arange(0, 300, 0.7)
    pa = np.array([a.position(t) for t in times])
    pb = np.array([b.position(t) for t in reversed(times)])[::-1]  # any query order
    assert np.allclose(pa, pb)
    assert (pa[:, 0] >= 0).all() and (pa[:, 0] <= 100).all()
    assert (pa[:, 1] >= 0).all() and (pa[:, 1] <= 50).all()
    speeds = np.linalg.norm(np.diff(pa, axis=0), axis=1) / 0.7
    assert speeds.max() <= 2.0 + 1e-6
    assert not np.allclose(pa, RandomWaypoint(m, 4).position(10.0))


def test_trace_errors_name_the_line(tmp_path: Path):
    good = tmp_path / "t.csv"
    good.write_text("t_s,x,y,z\n0,0,0,1\n10,100,0,1\n")
    times, points = read_trace(good)
    assert times == [0.0, 10.0] and points[1] == (100.0, 0.0, 1.0)
    bad = tmp_path / "b.csv"
    bad.write_text("t_s,x,y,z\n0,0,0,1\n0,5,0,1\n")
    with pytest.raises(ValueError, match=r"b\.csv:3: t_s must increase"):
        read_trace(bad)
    (tmp_path / "h.csv").write_text("time,x,y\n0,0,0\n")
    with pytest.raises(ValueError, match="header"):
        read_trace(tmp_path / "h.csv")


# --- geometry ----------------------------------------------------------------------------------

def test_ray_through_the_earth_is_blocked():
    ground = geodetic_to_ecef(0.0, 0.0, 0.0)
    zenith = geodetic_to_ecef(0.0, 0.0, 550.0)
    antipode = geodetic_to_ecef(0.0, 180.0, 550.0)
    assert ray_min_altitude_km(ground, zenith) == math.inf  # climbs away: the mask decides
    assert ray_min_altitude_km(zenith, antipode) < 0


# --- expansion of leo-handover -------------------------------------------------------------

@pytest.fixture(scope="module")
def leo() -> World:
    return expanded("leo-handover")


def test_leo_expansion(leo: World):
    sc = leo.sc
    sats = [n for n, node in sc.nodes.items() if node.kind.value == "satellite"]
    assert set(sats) == leo.sat_names and 5 < len(sats) < 200  # only the visible part
    names = [link.name for link in sc.links]
    assert len(names) == len(set(names)) and all(len(n) <= 32 for n in names)
    roles = {d.role for d in leo.dyn.values()}
    assert roles == {"isl-intra", "isl-inter", "access"}
    for d in leo.dyn.values():
        assert {d.a, d.b} <= set(sc.nodes)
        if d.role.startswith("isl"):
            assert {d.a, d.b} <= leo.sat_names
    g = leo.groups[0]
    assert set(g.links) == {"user1", "gw1"} and all(g.links.values())
    # the expanded scenario is a valid network: plan builds, every subnet distinct
    from testbed.net import plan as planner

    plan = planner.build(sc, "ab12")
    assert len({s.subnet for s in plan.segments}) == len(plan.segments)


def test_leo_link_states_follow_geometry(leo: World):
    snap = leo.snapshot(0.0)
    for name, st in snap.links.items():
        d = leo.dyn[name]
        rng = float(np.linalg.norm(snap.ecef[d.a] - snap.ecef[d.b]))
        assert st.range_km == pytest.approx(rng)
        assert st.delay_ms == pytest.approx(rng / C_KM_S * 1e3)
        if d.role == "isl-intra":
            # neighbours in a plane of 20 at ~6928 km: chord 2 r sin(9 deg), J2 wobble aside
            assert rng == pytest.approx(2 * 6928 * math.sin(math.radians(9)), rel=0.01)
        if d.role == "access":
            assert snap.eligible[name] == (st.elevation_deg >= 25.0)
            assert st.range_km >= 550
            if snap.eligible[name]:  # slant range at 25 degrees from ~550 km (J2 wobble): ~1125 km
                assert st.range_km <= 1150 and st.loss_pct < 1.0
    # at least one satellite serves each terminal at time zero
    for term, cands in leo.groups[0].links.items():
        assert any(snap.eligible[link] for link in cands.values()), term
    # 60 mobility seconds later every satellite moved ~7.6 km/s * 60 s
    later = leo.snapshot(60.0)
    for s in leo.sat_names:
        moved = np.linalg.norm(later.ecef[s] - snap.ecef[s])
        assert 400 < moved < 480, s


def test_remaining_visibility_counts_down(leo: World):
    cands = next(iter(leo.groups[0].links.values()))
    snap = leo.snapshot(0.0)
    link = next(link for link in cands.values() if snap.eligible[link])
    r0, r10 = leo.remaining_visibility(link, 0.0), leo.remaining_visibility(link, 10.0)
    assert r0 > 0 and r10 == pytest.approx(r0 - 10.0, abs=2.1)


def test_missing_tle_file_is_a_scenario_error(tmp_path: Path):
    raw = {"name": "t", "nodes": {"u": {"kind": "ground_user",
                                         "location": {"lat_deg": 52, "lon_deg": 13}}},
           "constellation": {"tle": {"file": "nope.tle"}, "isl": None},
           "access": [{"name": "g", "terminals": ["u"], "candidates": "constellation"}]}
    sc = scenario.parse(raw, "t.yaml")
    with pytest.raises(ScenarioError) as info:
        World.build(sc, str(tmp_path / "t.yaml"))
    assert info.value.problems[0].path == "constellation.tle.file"


def test_tle_constellation_expands():
    raw = {"name": "t", "duration_s": 600,
           "mobility": {"epoch": "2020-05-06T14:00:00Z"},
           "nodes": {"u": {"kind": "ground_user", "location": {"lat_deg": 40, "lon_deg": -3}},
                     "g": {"kind": "ground_station", "location": {"lat_deg": 41, "lon_deg": 2}}},
           "constellation": {"tle": {"file": "starlink-sample.tle"}, "isl": None,
                             "include": "all"},
           "access": [{"name": "gsl", "terminals": ["u", "g"], "candidates": "constellation",
                       "min_elevation_deg": 10}]}
    w = World.build(scenario.parse(raw, "t"), "")
    assert len(w.sat_names) == 60
    assert all(d.role == "access" for d in w.dyn.values())


def test_uav_relay_expansion():
    path = TOPO / "uav-relay.yaml"
    w = World.build(scenario.load(path), str(path))
    assert len(w.dyn) == 6 * 3
    assert w.wifi_moving == ["uav1", "uav2", "uav3"]
    assert {"user5", "user6"} <= w.moving
    snap = w.snapshot(0.0)
    for st in snap.links.values():
        assert 0 <= st.rate_mbps <= 86.7 * 0.7 + 1e-9 and st.delay_ms < 0.01
        assert (st.rate_mbps == 0) == (st.loss_pct == 100.0) == (not st.up)
    assert sum(snap.eligible.values()) >= 6  # every user has a UAV in reach


# --- routes and outage -------------------------------------------------------------------------

def test_route_diff_replaces_then_deletes():
    old = [Route("10.0.1.0/24", "10.0.0.2", "eth0", "1.1.1.1"),
           Route("10.0.2.0/24", "10.0.0.2", "eth0", "1.1.1.1")]
    new = [Route("10.0.1.0/24", "10.0.9.2", "eth1", "1.1.1.1"),
           Route("10.0.3.0/24", "10.0.0.2", "eth0", "1.1.1.1")]
    lines, changed, removed = diff(old, new)
    assert lines == ["route replace 10.0.1.0/24 via 10.0.9.2 dev eth1 src 1.1.1.1",
                     "route replace 10.0.3.0/24 via 10.0.0.2 dev eth0 src 1.1.1.1",
                     "route del 10.0.2.0/24"]
    assert (changed, removed) == (2, 1)
    assert diff(new, new) == ([], 0, 0)


def test_outage_is_the_longest_unanswered_run_near_the_handover():
    sent = {i: i * 0.1 for i in range(100)}
    answered = set(range(100)) - {50, 51, 52, 80}
    assert outage_s(sent, answered, 5.0, 0.1) == pytest.approx(0.3)
    assert outage_s(sent, answered, 2.0, 0.1) == 0.0


def test_predicted_schedule_of_leo_handover(leo: World):
    from testbed.mobility.association import predict

    sched = predict(leo)
    initial = [h for h in sched if h["reason"] == "initial"]
    moves = [h for h in sched if h["reason"] != "initial"]
    assert {h["terminal"] for h in initial} == {"user1", "gw1"}
    assert len(moves) >= 6  # the scenario promises several handovers in 120 s
    assert all(h["from"] != h["to"] for h in moves)
    times = [h["t_s"] for h in sched]
    assert times == sorted(times) and times[-1] <= leo.sc.duration_s
