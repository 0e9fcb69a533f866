"""Road traffic in a real emulation: SUMO-driven vehicles attach to a roadside unit over V2X
links that follow their distance, talk to each other over ns-3's 802.11p Wi-Fi, enter and
leave the map (their links going up and down), and run chain nodes whose transactions
commit through the emulated radio; nothing is left behind."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from controllers.iov.workload import summary_of
from testbed.mobility.roads import read_trace
from testbed.run.cleanup import leftovers
from testbed.run.runner import Run, RunOptions
from testbed.scenario import parse

ROOT = Path(__file__).resolve().parents[1]
SOURCE = str(ROOT / "topologies" / "emu-roads.yaml")

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)"),
    pytest.mark.skipif(shutil.which("fping") is None, reason="fping missing: run `make setup`"),
]


def roads_scenario(config: Path) -> dict[str, Any]:
    vehicles = ["v1", "v2", "v3", "v4"]
    live = f"python -m controllers.iov.live node --config {config}"
    return {
        "name": "emu-roads", "duration_s": 45, "seed": 3,
        "nodes": {"rsu1": {"kind": "rsu", "position": [500, 500, 6]},
                  "rsu2": {"kind": "rsu", "position": [250, 250, 6]},
                  "sw": {"kind": "switch"},
                  "v1": {"kind": "vehicle", "drive": {"depart_s": 0}},
                  "v2": {"kind": "vehicle", "drive": {"depart_s": 1}},
                  "v3": {"kind": "vehicle", "drive": {"depart_s": 2}},
                  # enters at 10 s, leaves the map at the end of one 250 m block
                  "v4": {"kind": "vehicle", "drive": {"depart_s": 10, "cruise": False,
                                                      "route": ["B2B3"]}}},
        "roads": {"net": "roads/grid5x5.net.xml"},
        "access": [{"name": "v2i", "terminals": vehicles, "candidates": ["rsu1", "rsu2"],
                    "policy": "strongest-signal", "max_range_km": 0.9, "hysteresis": 3,
                    "channel": {"model": "v2x"}}],
        "links": [{"name": "bb1", "kind": "wired", "endpoints": ["sw", "rsu1"]},
                  {"name": "bb2", "kind": "wired", "endpoints": ["sw", "rsu2"]},
                  {"name": "v2v", "kind": "air-to-air", "endpoints": ["v1", "v2", "v3"],
                   "wifi": {"standard": "802.11p", "data_mode": "OfdmRate6MbpsBW10MHz",
                            "propagation": "log-distance", "exponent": 2.0,
                            "tx_power_dbm": 23}}],
        "traffic": [{"name": "v1-rsu1", "kind": "ping", "src": "v1", "dst": "rsu1",
                     "start_s": 3, "duration_s": 30, "interval_s": 0.2}],
        "timeline": [{"at_s": 0, "action": "exec", "node": n, "command": live}
                     for n in ("rsu1", "rsu2", "v1", "v2", "v3", "v4")],
        "capture": {"enabled": False},
    }


def test_sumo_vehicles_drive_links_and_a_chain(tmp_path: Path) -> None:
    config = tmp_path / "chain.yaml"
    config.write_text("method: drdst\nport: 7711\nchain: {epoch_s: 12, first_epoch_s: 3, "
                      "beacon_s: 1, tick_ms: 100, tx_rate: 1.0, shards: 1, seed: 3}\n")
    sc = parse(roads_scenario(config), SOURCE)
    res = Run(sc, SOURCE, RunOptions(results_base=tmp_path, analyze=False)).execute()
    assert res.status == "done", res.error
    mob = res.run_dir / "mobility"
    with open(mob / "vehicles.csv") as f:
        events = [(r["vehicle"], r["event"], float(r["t_s"])) for r in csv.DictReader(f)]
    enters = {v: t for v, e, t in events if e == "enter"}
    assert set(enters) == {"v1", "v2", "v3", "v4"} and enters["v4"] >= 9.5, events
    assert ("v4", "leave") in {(v, e) for v, e, _ in events}, events  # left the map
    # the drive was recorded and replays: v4's record ends where it left
    records, _ = read_trace(mob / "drive.csv")
    assert {"v1", "v2", "v3", "v4"} <= set(records)
    with open(mob / "link-state.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["link"].startswith("v2i-v4")]
    assert {r["up"] for r in rows} == {"0", "1"}  # v4's links went up, then down
    # the V2I rate followed the distance to the RSU
    with open(mob / "link-state.csv") as f:
        rates = {float(r["rate_mbps"]) for r in csv.DictReader(f)
                 if r["link"].startswith("v2i-v1") and r["up"] == "1"}
    assert len(rates) >= 1
    flows = json.loads((res.run_dir / "metrics.json").read_text())["flows"]
    assert flows["v1-rsu1"]["received"] > 100
    # the chain: epochs formed from beacons over the radio, transactions committed
    s = summary_of(res.run_dir)
    assert s is not None
    assert s["epochs"] >= 2 and s["committed"] > 10, s
    assert s["vehicle_events"]["leave"] >= 1
    assert not any(leftovers(res.run_dir.name.rsplit("-", 1)[-1]).values())
