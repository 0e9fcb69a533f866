"""The IoV simulator's inputs: SUMO city drives (controllers.iov.traces) and the radio
network model over them (controllers.iov.netmodel)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from controllers.iov.netmodel import RadioNet, default_v2v_range_m
from controllers.iov.traces import CityDrive, city_drive, from_run, rsu_grid
from testbed.mobility.roads import Drove, VehicleTrack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sumo_drive() -> CityDrive:
    return city_drive(20, 30.0, seed=5)


def line(t0: float, t1: float, p0: tuple[float, float], p1: tuple[float, float],
         step: float = 0.5) -> Drove:
    """A vehicle driving straight from p0 to p1 between t0 and t1."""
    ts = np.arange(t0, t1 + 1e-9, step)
    f = (ts - t0) / (t1 - t0)
    xy = [(p0[0] + a * (p1[0] - p0[0]), p0[1] + a * (p1[1] - p0[1])) for a in f]
    return Drove(t=ts.tolist(), xy=xy, speed=[1.0] * len(ts), gone=True)


def synthetic(records: dict[str, Drove], rsus: dict[str, tuple[float, float]] | None = None,
              duration: float = 60.0) -> CityDrive:
    return CityDrive.from_records(records, sorted(records),
                                  rsu_grid(4) if rsus is None else rsus, 0.5, duration)


# ---- drives ------------------------------------------------------------------------------
def test_sumo_drive_is_deterministic_and_cached(sumo_drive: CityDrive, tmp_path: Path) -> None:
    again = city_drive(20, 30.0, seed=5, cache_dir=tmp_path)
    assert again.vehicles == sumo_drive.vehicles == [f"v{i:03d}" for i in range(20)]
    assert np.array_equal(again.grid_x, sumo_drive.grid_x)
    assert np.array_equal(again.t_first, sumo_drive.t_first)
    for t in (3.3, 12.0, 29.9):
        assert again.positions_at(t).keys() == sumo_drive.positions_at(t).keys()
    cached = city_drive(20, 30.0, seed=5, cache_dir=tmp_path)
    assert cached.build_s == 0.0  # read back, no SUMO
    assert np.allclose(cached.grid_x, sumo_drive.grid_x, atol=0.006)
    other = city_drive(20, 30.0, seed=6)
    assert not np.array_equal(other.grid_x, sumo_drive.grid_x)


class _Feed:
    def __init__(self, records: dict[str, Drove], step_s: float) -> None:
        self.records, self.step_s = records, step_s

    def record(self, vehicle: str, t: float) -> Drove:
        return self.records.get(vehicle) or Drove()


def test_presence_and_positions_follow_sumo(sumo_drive: CityDrive) -> None:
    d = sumo_drive
    feed = _Feed(d.records, d.step_s)
    assert len(d.rsus) == 4 and d.present("rsu1", 0.0)
    for i, v in enumerate(d.vehicles):
        assert d.t_first[i] >= 10.0 * i / 20  # not before its departure
        track = VehicleTrack(feed, v, (0.0, 0.0), 0.0)  # what the live emulation uses
        for t in np.arange(0.0, 30.0, 0.35):
            assert d.present(v, t) == track.present(t), (v, t)
            p = d.position(v, t)
            if p is None:
                assert d.velocity(v, t) == (0.0, 0.0)
                continue
            if t > d.t_first[i] + 1e-9:  # VehicleTrack answers its *last* xy at t == first
                assert np.allclose(p, track.position(t)[:2], atol=1e-6), (v, t)
            else:
                assert p == pytest.approx(d.records[v].xy[0])
        vx, vy = d.velocity(v, 25.0)
        assert math.hypot(vx, vy) < 20.0  # a city car, m/s
    assert d.position("v019", 0.2) is None
    snap = d.positions_at(20.0)
    assert set(snap) == {n for n in d.nodes if d.present(n, 20.0)}
    assert np.allclose(snap["v000"], d.position("v000", 20.0))


def test_vehicles_leave_at_their_trip_end() -> None:
    d = synthetic({"a": line(0.5, 10.0, (0, 0), (100, 0)), "b": line(5.0, 60.0, (0, 0), (0, 1))})
    assert d.present("a", 10.0) and not d.present("a", 10.5) and d.position("a", 11) is None
    assert not d.present("b", 4.9) and d.present("b", 5.0)
    assert d.position("a", 5.25) == pytest.approx((50.0, 0.0))
    assert d.velocity("a", 5.25) == pytest.approx((100 / 9.5, 0.0))
    assert set(d.positions_at(12.0)) == {"b", "rsu1", "rsu2", "rsu3", "rsu4"}


def test_save_load_round_trip(sumo_drive: CityDrive, tmp_path: Path) -> None:
    path = sumo_drive.save(tmp_path / "drive.csv")
    back = CityDrive.load(path)
    assert back.vehicles == sumo_drive.vehicles and back.rsus == sumo_drive.rsus
    assert back.step_s == sumo_drive.step_s and back.duration_s == sumo_drive.duration_s
    for t in (0.0, 4.2, 17.7, 30.0):
        a, b = sumo_drive.positions_at(t), back.positions_at(t)
        assert a.keys() == b.keys()
        assert all(np.allclose(a[k], b[k], atol=0.006) for k in a)


def test_rsu_grid_matches_the_scenario() -> None:
    sc = yaml.safe_load((ROOT / "topologies" / "iov-drdst.yaml").read_text())
    want = {n: tuple(float(x) for x in v["position"][:2])
            for n, v in sc["nodes"].items() if v["kind"] == "rsu"}
    assert rsu_grid(4) == want
    for n in (1, 9, 16, 6):
        g = rsu_grid(n)
        assert list(g) == [f"rsu{i + 1}" for i in range(n)]
        assert all(0 < x < 1000 and 0 < y < 1000 for x, y in g.values())
        assert len(set(g.values())) == n


def test_from_run_reads_the_recorded_drive(tmp_path: Path) -> None:
    sc = {"name": "x", "duration_s": 20, "roads": {"net": "n", "step_s": 0.5},
          "nodes": {"core": {"kind": "switch"}, "rsu1": {"kind": "rsu", "position": [1, 2, 6]},
                    "v01": {"kind": "vehicle"}, "v02": {"kind": "vehicle"}}}
    (tmp_path / "scenario.resolved.yaml").write_text(yaml.safe_dump(sc))
    (tmp_path / "mobility").mkdir()
    rows = ["t_s,vehicle,x,y,speed_mps"]
    rows += [f"{t:.3f},v01,{10 * t:.2f},0.00,10.00" for t in np.arange(0.5, 10.01, 0.5)]
    rows += [f"{t:.3f},bg0,0.00,0.00,0.00" for t in np.arange(0.5, 10.01, 0.5)]
    (tmp_path / "mobility" / "drive.csv").write_text("\n".join(rows) + "\n")
    d = from_run(tmp_path)
    assert d.vehicles == ["v01", "v02"] and d.rsus == {"rsu1": (1.0, 2.0)}
    assert d.position("v01", 2.25) == pytest.approx((22.5, 0.0))
    assert not d.present("v02", 5.0) and not d.present("v01", 15.0)


# ---- the network -------------------------------------------------------------------------
def test_serving_rsu_is_in_range_and_strongest(sumo_drive: CityDrive) -> None:
    net = RadioNet(sumo_drive)
    seen = 0
    for t in np.arange(0.0, 30.0, 0.5):
        for v in sumo_drive.vehicles:
            s = net.serving(v, t)
            if not sumo_drive.present(v, t):
                assert s is None
                continue
            assert s is not None  # 4 RSUs cover the whole 1 km grid
            x, y = sumo_drive.position(v, t)
            dist = {r: math.hypot(x - rx, y - ry) for r, (rx, ry) in sumo_drive.rsus.items()}
            assert dist[s] <= 450.0
            # strongest or within the hysteresis of it: at most 1.6x the nearest's distance
            assert dist[s] <= 1.6 * min(dist.values()) + 10.0
            seen += 1
    assert seen > 300


def test_hysteresis_avoids_ping_pong() -> None:
    wobble = Drove(gone=True)
    for k in range(120):  # back and forth across the midpoint between rsu1 and rsu2
        wobble.t.append(0.5 * (k + 1))
        wobble.xy.append((500.0 + (15.0 if k % 4 < 2 else -15.0), 250.0))
        wobble.speed.append(0.0)
    cross = line(0.5, 60.0, (260.0, 250.0), (740.0, 250.0))
    d = synthetic({"cross": cross, "wobble": wobble})

    def changes(net: RadioNet, v: str) -> tuple[int, float]:
        out, last, when = 0, None, math.nan
        for t in np.arange(0.5, 60.0, 0.5):
            s = net.serving(v, t)
            if last is not None and s != last:
                out, when = out + 1, d.position(v, t)[0]
            last = s
        return out, when

    net = RadioNet(d)
    n, x = changes(net, "cross")
    assert n == 1 and x > 530.0  # past the midpoint: 3 dB later
    assert net.serving("cross", 1.0) == "rsu1" and net.serving("cross", 59.0) == "rsu2"
    assert changes(net, "wobble")[0] == 0
    assert changes(RadioNet(d, hysteresis_db=0.0), "wobble")[0] > 10


def test_route_kinds() -> None:
    d = synthetic({"a": line(0.5, 60, (240, 250), (260, 250)),     # at rsu1
                   "b": line(0.5, 60, (260, 260), (260, 240)),     # at rsu1
                   "c": line(0.5, 60, (740, 760), (760, 740)),     # at rsu4
                   "late": line(30.0, 60, (740, 250), (760, 250))})
    net = RadioNet(d)
    assert [h.kind for h in net.route("a", "c", 10)] == ["v2i", "backbone", "backbone", "v2i"]
    hops = net.route("a", "c", 10)
    assert (hops[0].a, hops[0].b, hops[-1].a, hops[-1].b) == ("a", "rsu1", "rsu4", "c")
    assert [h.kind for h in net.route("a", "b", 10)] == ["v2i", "v2i"]
    assert [h.kind for h in net.route("a", "rsu2", 10)] == ["v2i", "backbone", "backbone"]
    assert [h.kind for h in net.route("rsu1", "a", 10)] == ["v2i"]
    assert [h.kind for h in net.route("rsu1", "rsu3", 10)] == ["backbone", "backbone"]
    assert net.route("a", "late", 10) == [] and net.route("late", "a", 10) == []
    assert net.route("a", "late", 40)[0].kind == "v2i"
    assert net.route("a", "nobody", 10) == []
    assert math.isinf(net.latency_ms("a", "late", 10))
    assert 0.1 < net.latency_ms("a", "c", 10) < 1.0

    # no RSU in reach: V2V when close enough, else nothing
    far = {"rsu1": (5000.0, 5000.0)}
    d2 = synthetic({"a": line(0.5, 60, (0, 0), (0, 1)), "b": line(0.5, 60, (100, 0), (100, 1)),
                    "z": line(0.5, 60, (900, 0), (900, 1))}, far)
    net2 = RadioNet(d2)
    assert net2.serving("a", 10) is None
    (hop,) = net2.route("a", "b", 10)
    assert hop.kind == "v2v" and hop.rate_mbps == 6.0 and hop.loss < 1e-3
    assert 250.0 < default_v2v_range_m() < 350.0
    assert net2.route("a", "z", 10) == [] and net2.route("rsu1", "a", 10) == []


def test_deliver_timing_queueing_and_loss() -> None:
    d = synthetic({"a": line(0.5, 60, (240, 250), (260, 250)),
                   "c": line(0.5, 60, (740, 760), (760, 740))})
    rng = random.Random(1)
    net = RadioNet(d)
    small = net.deliver("a", "c", 100, 10_000.0, rng)
    net.reset()
    big = net.deliver("a", "c", 10_000, 10_000.0, rng)
    assert small is not None and big is not None and 10_000.0 < small < big
    assert big - 10_000.0 == pytest.approx(net.latency_ms("a", "c", 10.0, 10_000))
    net.reset()
    burst = [net.deliver("a", "c", 1000, 20_000.0, rng) for _ in range(10)]
    assert all(x is not None for x in burst)
    gaps = np.diff(np.array(burst, dtype=float))
    ser = 1000 * 8 / (net.route("a", "c", 20.0)[0].rate_mbps * 1e3)
    assert np.all(gaps > 0) and gaps.mean() == pytest.approx(ser, rel=1e-6)
    # near an RSU nothing is lost
    assert all(h.loss == 0.0 for h in net.route("a", "c", 30.0))
    net.reset()
    got = [net.deliver("a", "c", 300, 30_000.0 + k, rng) for k in range(500)]
    assert None not in got
    st = net.stats()
    assert st["delivered"] == 500 and st["lost"] == 0 and st["v2i"] == 1000
    assert st["backbone"] == 1000
    assert net.deliver("a", "nobody", 300, 30_000.0, rng) is None
    assert net.stats()["unreachable"] == 1


def test_lossy_v2v_edge_loses_some() -> None:
    far = {"rsu1": (5000.0, 5000.0)}
    r = default_v2v_range_m()
    d = synthetic({"a": line(0.5, 60, (0, 0), (0, 1)),
                   "b": line(0.5, 60, (r - 5.0, 0), (r - 5.0, 1))}, far)
    net = RadioNet(d)
    (hop,) = net.route("a", "b", 10.0)
    assert 0.05 < hop.loss < 0.5
    rng = random.Random(3)
    got = [net.deliver("a", "b", 200, 10_000.0 + k, rng) for k in range(400)]
    lost = sum(x is None for x in got)
    assert 0 < lost < 400 and net.stats()["lost_v2v"] == lost
