"""Vehicles on roads: SUMO stepped by the world (lock-step, deterministic under the seed), the
drive written as a trace and replayed without SUMO, presence taking links down, the V2X
channel and the 802.11p MCS table, and bad road inputs refused with the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testbed.channels import build_channel
from testbed.channels.rate import mcs_rate_bps
from testbed.mobility.roads import PARKED, read_trace
from testbed.mobility.world import World
from testbed.scenario import ScenarioError, parse

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
SOURCE = str(ROOT / "topologies" / "roads-test.yaml")  # resolves roads/ under topologies/


def scenario(**roads: Any) -> dict[str, Any]:
    vehicles = {f"v{i}": {"kind": "vehicle", "drive": {"depart_s": i * 1.0}} for i in range(4)}
    vehicles["v3"]["drive"]["cruise"] = False
    return {
        "name": "roads-test", "duration_s": 60, "seed": 5,
        "nodes": {"rsu1": {"kind": "rsu", "position": [500, 500, 6]}, **vehicles},
        "roads": {"net": "roads/grid5x5.net.xml", **roads},
        "access": [{"name": "v2i", "terminals": list(vehicles), "candidates": ["rsu1"],
                    "policy": "strongest-signal", "max_range_km": 0.45,
                    "channel": {"model": "v2x"}}],
    }


def drive(world: World, until: float, step: float = 0.1) -> list[Any]:
    return [world.snapshot(k * step) for k in range(int(until / step) + 1)]


def test_sumo_drives_vehicles_deterministically_in_lock_step(tmp_path: Path) -> None:
    w1 = World.build(parse(scenario(), SOURCE), SOURCE)
    snaps = drive(w1, 20.0)
    feed = w1.roads
    assert feed is not None and feed.steps == 200  # stepped exactly to the last query
    # before its departure a vehicle is parked off the map with every link down
    assert "v3" in snaps[10].absent and np.allclose(w1.enu("v3", 1.0), PARKED)
    assert all(not st.up for name, st in snaps[10].links.items() if "v3" in name)
    assert "v0" not in snaps[50].absent
    x, y, z = w1.enu("v0", 10.0)
    assert 0 <= x <= 1000 and 0 <= y <= 1000 and z == pytest.approx(1.5)
    moved = np.linalg.norm(np.subtract(w1.enu("v0", 15.0), w1.enu("v0", 10.0)))
    assert 0 < moved <= 5.0 * 13.89 + 1  # at most the speed limit
    # a second world (same seed) drives the same; libsumo moves over to it, and the first
    # one, asked again past its end, replays SUMO from the start to carry on
    w2 = World.build(parse(scenario(), SOURCE), SOURCE)
    drive(w2, 20.0)
    assert np.allclose(w2.enu("v1", 17.3), w1.enu("v1", 17.3))
    assert np.allclose(w1.enu("v1", 25.0), w2.enu("v1", 25.0))
    # the drive as a trace, replayed without SUMO
    trace = tmp_path / "drive.csv"
    rows = feed.save(trace)
    records, step = read_trace(trace)
    assert rows > 0 and step == pytest.approx(0.1) and set(records) >= {"v0", "v1", "v2"}
    beside = str(tmp_path / "roads-test.yaml")  # a scenario reads the files beside it
    w3 = World.build(parse(scenario(trace="drive.csv"), beside), beside)
    assert w3.roads is not None and w3.roads.step_s == pytest.approx(0.1)
    for t in (3.0, 12.35, 19.9):
        assert np.allclose(w3.enu("v2", t), w1.enu("v2", t), atol=0.01)
        assert w3.snapshot(t).absent == w1.snapshot(t).absent


def test_v2x_channel_and_80211p_table() -> None:
    # 802.11p at 10 MHz: 3 ... 27 Mbit/s; BPSK 1/2 needs -85 dBm sensitivity -> 9 dB SNR
    assert mcs_rate_bps(8.9, 10e6, "802.11p") == 0.0
    assert mcs_rate_bps(9.0, 10e6, "802.11p") / 1e6 == pytest.approx(3.0)
    assert mcs_rate_bps(40.0, 10e6, "802.11p") / 1e6 == pytest.approx(27.0)
    near, far = (build_channel({"model": "v2x", "environment": "urban-nlos"}).sample(d, 0.0)
                 for d in (50.0, 600.0))
    assert near.rate_mbps > far.rate_mbps and near.snr_db - far.snr_db == pytest.approx(
        30.0 * np.log10(600 / 50), abs=0.01)  # NLOS: 30 dB a decade


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"roads": {"net": "roads/nope.net.xml"}}, "roads.net", "no road network"),
    ({"roads": {"net": "roads/README.md"}}, "roads.net", "not a SUMO road network"),
    ({"nodes.v0.drive": {"route": ["nope"]}}, "nodes.v0.drive.route[0]", "no edge"),
    ({"roads": None}, "nodes.v0.kind", "no road network to drive them"),
    ({"nodes.v0.drive": {"route": ["A0A1", "C3C4"]}}, "nodes.v0.drive.route[1]",
     "does not follow"),
])
def test_bad_road_input_names_the_field(change: dict[str, Any], field: str,
                                        words: str) -> None:
    sc = scenario()
    for key, value in change.items():
        if key.startswith("nodes."):
            sc["nodes"][key.split(".")[1]]["drive"] = value
        elif value is None:
            del sc[key]
        else:
            sc[key] = value
    with pytest.raises(ScenarioError) as exc:
        World.build(parse(sc, SOURCE), SOURCE)
    p = exc.value.problems[0]
    assert p.path == field and words in p.message and p.fix


def test_vehicles_cannot_have_their_own_motion() -> None:
    sc = scenario()
    sc["nodes"]["v0"]["position"] = [0, 0, 0]
    with pytest.raises(ScenarioError) as exc:
        parse(sc, SOURCE)
    assert "drives on the road network" in str(exc.value)


def test_sumo_missing_names_the_install_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "libsumo", None)  # `import libsumo` raises ImportError
    with pytest.raises(ScenarioError) as exc:
        World.build(parse(scenario(), SOURCE), SOURCE)
    p = exc.value.problems[0]
    assert p.path == "roads" and "not installed" in p.message and "make setup" in p.fix
