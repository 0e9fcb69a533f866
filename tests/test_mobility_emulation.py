"""Mobility in a real emulation: a scripted flight changes the measured RTT as geometry says,
a link cut reroutes traffic and the repair brings it back, and LEO handovers keep a ping
flowing.  Each test runs a whole scenario through the runner and checks nothing is left."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from firmware.scenario import PX4_MISSING, find_px4
from testbed.mobility.report import ping_replies
from testbed.run.cleanup import leftovers
from testbed.run.runner import Run, RunOptions
from testbed.scenario import load, parse

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)"),
    pytest.mark.skipif(shutil.which("fping") is None, reason="fping missing: run `make setup`"),
]

KM = 1000.0


def haps(**extra: Any) -> dict[str, Any]:
    """gs1 and gs2 at the same spot, joined by a direct 20 ms fibre and through a
    high-altitude platform whose two radio hops take their delay from the distance.  The
    platform climbs to 20 km over gs1, holds, then flies 300 km east in 4 s and holds."""
    radio = {"model": "free-space", "freq_hz": 2.0e9, "tx_power_dbm": 40,
             "antenna_gain_dbi": 60, "bandwidth_hz": 20e6,
             "rate": {"method": "shannon", "max_rate_mbps": 50}}
    sc: dict[str, Any] = {
        "name": "emu-haps", "duration_s": 26,
        "nodes": {
            "gs1": {"kind": "ground_station", "position": [0, 0, 0]},
            "gs2": {"kind": "ground_station", "position": [0, 0, 0]},
            "haps": {"kind": "uav", "motion": {"model": "waypoints", "waypoints": [
                {"t_s": 0, "position": [0, 0, 20 * KM]},
                {"t_s": 5, "position": [0, 0, 20 * KM]},
                {"t_s": 9, "position": [300 * KM, 0, 20 * KM]}]}},
        },
        "links": [
            {"name": "up1", "kind": "air-to-ground", "medium": "p2p",
             "endpoints": ["gs1", "haps"], "channel": radio},
            {"name": "up2", "kind": "air-to-ground", "medium": "p2p",
             "endpoints": ["gs2", "haps"], "channel": radio},
            {"name": "fibre", "kind": "wired", "medium": "p2p", "endpoints": ["gs1", "gs2"],
             "delay_ms": 20, "rate_mbps": 100},
        ],
        "traffic": [{"name": "probe", "kind": "ping", "src": "gs1", "dst": "gs2",
                     "duration_s": 25, "interval_s": 0.1}],
        "timeline": [{"at_s": 14, "action": "link_down", "link": "up1"},
                     {"at_s": 19, "action": "link_up", "link": "up1"}],
        "capture": {"enabled": False}, "probes": {"link_rtt": False},
    }
    sc.update(extra)
    return sc


def rtts_between(run_dir: Path, flow: str, a: float, b: float) -> list[float]:
    t0 = json.loads((run_dir / "manifest.json").read_text())["time_zero_wall"]
    return sorted(rtt for rx, _, rtt in ping_replies(run_dir / "flows" / f"{flow}.ping.txt")
                  if a <= rx - t0 - rtt / 1000 <= b)


def median(xs: list[float]) -> float:
    assert xs, "no replies in the window"
    return xs[len(xs) // 2]


def test_scripted_flight_changes_rtt_and_link_cut_reroutes(tmp_path: Path) -> None:
    sc = parse(haps(), "emu-haps")
    res = Run(sc, "emu-haps", RunOptions(results_base=tmp_path)).execute()
    assert res.status == "done", res.error
    d = res.run_dir
    # overhead (20 km up, 20 km down, both ways): 4 * 20 km / c = 0.27 ms
    near = median(rtts_between(d, "probe", 1, 4.5))
    # 300 km away at 20 km: slant 300.7 km per hop -> 4 * 300.7 / c = 4.01 ms
    far = median(rtts_between(d, "probe", 10, 13.5))
    # up1 cut: only the 20 ms fibre is left -> 40 ms
    cut = median(rtts_between(d, "probe", 15, 18.5))
    back = median(rtts_between(d, "probe", 20.5, 24))
    assert near < 1.5, near
    assert 3.6 < far < 5.5, far
    assert 39.5 < cut < 43, cut
    assert 3.6 < back < 5.5, back
    mob = res.metrics["mobility"]
    assert mob["flows"]["probe"]["median_abs_error_ms"] < 1.0
    assert mob["late_fraction"] < 0.05
    events = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
    assert all(e["ok"] for e in events), events
    states = (d / "mobility" / "link-state.csv").read_text()
    assert "up1" in states and "up2" in states
    assert (d / "mobility" / "rtt.png").stat().st_size > 10_000
    assert not any(leftovers(res.run_dir.name.rsplit("-", 1)[-1]).values())


@pytest.mark.slow
def test_leo_handovers_keep_the_ping_flowing(tmp_path: Path) -> None:
    path = ROOT / "topologies" / "leo-handover.yaml"
    sc = load(path, cut_to_s=30)
    sc = sc.model_copy(update={"traffic": [f for f in sc.traffic if f.kind.value == "ping"],
                               "capture": sc.capture.model_copy(update={"enabled": False})})
    res = Run(sc, str(path), RunOptions(results_base=tmp_path)).execute()
    assert res.status == "done", res.error
    mob = res.metrics["mobility"]
    # the Frankfurt gateway hands over at ~7 s and the Berlin user at ~18 s of this epoch
    assert mob["handovers"] >= 2
    assert mob["max_outage_s"] <= 0.5
    assert mob["median_abs_rtt_error_ms"] < 2.0
    assert mob["route_install_ms_max"] < 200
    hands = [json.loads(x) for x in
             (res.run_dir / "mobility" / "handovers.jsonl").read_text().splitlines()]
    assert {h["terminal"] for h in hands if h["reason"] != "initial"} == {"user1", "gw1"}
    assert not any(leftovers(res.run_dir.name.rsplit("-", 1)[-1]).values())


def autopilot_scenario() -> dict[str, Any]:
    """A UAV whose autopilot (PX4 flavour) is reached by the ground station over a 50 ms,
    1 %-loss point-to-point link, and a relay 2 km north joined to the UAV by a radio link
    whose delay, rate and loss follow the distance the autopilot reports."""
    return {
        "name": "emu-autopilot", "duration_s": 75,
        "mobility": {"origin": {"lat_deg": 47.397742, "lon_deg": 8.545594, "alt_m": 488}},
        "nodes": {
            "gs": {"kind": "ground_station", "position": [0, -20, 2]},
            "uav": {"kind": "uav", "position": [0, 0, 0.2],
                    "autopilot": {"controller": "gs",
                                  "params": {"MPC_XY_CRUISE": 8, "COM_DISARM_LAND": 1}}},
            "relay": {"kind": "ground_station", "position": [0, 2000, 20]},
        },
        "links": [
            {"name": "c2", "kind": "air-to-ground", "medium": "p2p",
             "endpoints": ["gs", "uav"], "delay_ms": 50, "rate_mbps": 5, "loss_pct": 1},
            {"name": "radio", "kind": "air-to-ground", "medium": "p2p",
             "endpoints": ["uav", "relay"],
             "channel": {"model": "free-space", "freq_hz": 2.4e9, "tx_power_dbm": 30}},
        ],
        "timeline": [{"at_s": 1, "action": "exec", "node": "gs", "command":
                      "python -m controllers.fly --vehicles 1 --takeoff 10 --square 40 "
                      "--land --timeout 40"}],
        "capture": {"enabled": False}, "probes": {"link_rtt": False},
    }


@pytest.mark.slow
def test_mavsdk_flies_an_autopilot_across_a_lossy_50ms_link(tmp_path: Path) -> None:
    sc = parse(autopilot_scenario(), "emu-autopilot")
    res = Run(sc, "emu-autopilot", RunOptions(results_base=tmp_path)).execute()
    assert res.status == "done", res.error
    d = res.run_dir
    log = (d / "logs" / "gs" / "exec-1s.log").read_text(errors="replace")
    flights = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert flights and flights[0]["sysid"] == 1, log[-2000:]
    assert len(flights[0]["legs_s"]) == 4 and flights[0]["battery_used_pct"] > 0
    # the autopilot's reported positions moved the radio link's endpoint: its range to the
    # relay 2 km north shrank by the square's 40 m and came back
    with open(d / "mobility" / "link-state.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["link"] == "radio"]
    ranges = [float(r["range_km"]) * 1000 for r in rows]
    assert max(ranges) - min(ranges) > 35, (min(ranges), max(ranges))
    ap_log = (d / "logs" / "uav" / "autopilot.log").read_text()
    assert '"handler_errors": []' in ap_log
    assert not any(leftovers(d.name.rsplit("-", 1)[-1]).values())


@pytest.mark.slow
@pytest.mark.skipif(find_px4() is None, reason=PX4_MISSING)
def test_real_px4_sitl_flies_across_the_emulated_link(tmp_path: Path) -> None:
    raw = autopilot_scenario()
    raw["nodes"]["uav"]["autopilot"] = {"controller": "gs", "flavour": "px4-sitl"}
    res = Run(parse(raw, "emu-px4"), "emu-px4", RunOptions(results_base=tmp_path)).execute()
    assert res.status == "done", res.error
    log = (res.run_dir / "logs" / "gs" / "exec-1s.log").read_text(errors="replace")
    assert any(x.startswith("{") for x in log.splitlines()), log[-2000:]
