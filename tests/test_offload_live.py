"""The live offloading controller: its pieces (unit) and the sagin-offload scenario end to end
(emulation: namespaces, ns-3, autopilots, payload agents)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from controllers.offload import OffloadConfig, OffloadModel, load_config
from controllers.offload.baselines import greedy_delay
from controllers.offload.live import Layout, _report, live_config, simulate

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "topologies" / "sagin-offload.yaml"
MIRROR = ROOT / "topologies" / "sagin-offload.offload.yaml"


@pytest.mark.unit
def test_layout_maps_the_scenario_onto_the_model():
    layout = Layout.from_scenario(SCENARIO, "sat1", "cloud1")
    assert layout.users == [f"user{i}" for i in range(1, 9)]
    assert layout.uavs == ["uav1", "uav2", "uav3", "uav4"] and layout.sysids == [1, 2, 3, 4]
    config = live_config(load_config(MIRROR), layout, slots=30)
    assert (config.n_users, config.n_uavs, config.episode_slots) == (8, 4, 30)
    assert (layout.user_xy >= 0).all() and (layout.user_xy <= config.area_m).all()
    model = OffloadModel(config)
    assert layout.target(model, 0) == "local" and layout.target(model, 2) == "uav2"
    assert layout.target(model, 5) == "sat1" and layout.target(model, 6) == "cloud1"
    lat0, lon0 = layout.origin
    assert layout.local_xyz(lat0, lon0, 60.0) == pytest.approx((0.0, 0.0, 60.0))
    with pytest.raises(SystemExit, match="no node 'sat9'"):
        Layout.from_scenario(SCENARIO, "sat9", "cloud1")


@pytest.mark.unit
def test_report_compares_measurement_with_prediction(tmp_path):
    layout = Layout.from_scenario(SCENARIO, "sat1", "cloud1")
    config = live_config(OffloadConfig(area_m=400.0), layout, slots=5)
    model = OffloadModel(config, seed=2)
    rows, slot_rows = {}, []
    for s in range(5):
        decision = greedy_delay(model)
        deadline = model.task_deadline_s.copy()
        metrics, info = model.step(decision)
        slot_rows.append({"slot": s, **metrics})
        for i in np.flatnonzero(info["active"]):
            pred = float(info["delay_s"][i])
            row = {"id": f"{s}-{i}", "slot": s, "user": layout.users[i], "mode": int(
                info["mode"][i]), "target": "x", "cycles": 1e9, "deadline_s": deadline[i],
                "admitted": bool(info["admitted"][i]), "predicted_delay_s": pred,
                "t_decided": 100.0 + s}
            if row["admitted"]:  # measured: 10 ms of control, then the predicted delay + 5 ms
                row |= {"ok": True, "t_got": row["t_decided"] + 0.01,
                        "t_result": row["t_decided"] + 0.01 + pred + 0.005}
            rows[row["id"]] = row
    args = argparse.Namespace(algo="greedy_delay", seed=2)
    summary = _report(tmp_path, config, rows, slot_rows, {"profit": 0.0}, args, "heuristic")
    assert summary["delay_gap_s"]["median"] == pytest.approx(0.005, abs=1e-6)
    assert summary["measured"]["mean_control_s"] == pytest.approx(0.01, abs=1e-6)
    mirror = summary["mirror_predicted"]
    assert summary["measured"]["tasks"] == mirror["tasks"]
    assert summary["measured"]["mean_delay_s"] == pytest.approx(mirror["mean_delay_s"] + 0.005,
                                                                abs=1e-6)
    with open(tmp_path / "tasks.csv") as fh:
        assert len(list(csv.DictReader(fh))) == mirror["tasks"]
    assert (tmp_path / "delay.png").stat().st_size > 0


@pytest.mark.unit
def test_simulated_prediction_is_deterministic():
    layout = Layout.from_scenario(SCENARIO, "sat1", "cloud1")
    config = live_config(OffloadConfig(area_m=400.0), layout, slots=20)
    a = simulate(greedy_delay, config, 4, layout, 60.0)
    b = simulate(greedy_delay, config, 4, layout, 60.0)
    assert a == b and a["tasks"] > 0


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)")
@pytest.mark.skipif(shutil.which("fping") is None, reason="fping missing: run `make setup`")
@pytest.mark.parametrize("variant", ["muecrs", "cmaddpg-distributed"])
def test_live_offloading_runs_tasks_on_remote_agents(tmp_path: Path, variant: str) -> None:
    """sagin-offload (MUECRS on the ground station) and sagin-offload-cmaddpg (clusters from
    the satellite node, decisions by the UAVs' head services), 12 slots each."""
    from testbed.run.cleanup import leftovers
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import load

    source = SCENARIO if variant == "muecrs" else SCENARIO.with_name("sagin-offload-cmaddpg.yaml")
    raw = yaml.safe_load(source.read_text())
    raw["include"] = str(ROOT / "topologies" / raw["include"])
    raw["duration_s"] = 90
    raw["capture"] = {"enabled": False}
    for ev in raw["timeline"]:
        ev["command"] = ev["command"].replace("--slots 60", "--slots 12").replace(
            "topologies/", f"{ROOT}/topologies/")
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = Run(load(path), raw["name"], RunOptions(results_base=tmp_path)).execute()
    assert res.status == "done", res.error
    d = res.run_dir
    log = (d / "logs" / "gs1" / "exec-1s.log").read_text(errors="replace")
    summary_path = d / "offload" / "summary.json"
    assert summary_path.is_file(), log[-3000:]
    summary = json.loads(summary_path.read_text())
    measured = summary["measured"]
    assert measured["tasks"] > 15 and measured["served"] > 0.5 * measured["tasks"], summary
    with open(d / "offload" / "tasks.csv") as fh:
        tasks = list(csv.DictReader(fh))
    remote = [t for t in tasks if t["ok"] == "True" and t["node"] in
              ("uav1", "uav2", "uav3", "uav4", "sat1", "cloud1")]
    assert remote, "no task ran on a remote payload agent"
    # the task crossed the emulated links: uploads take time, results come back later
    for t in remote:
        assert float(t["t_got"]) <= float(t["t_sent"]) < float(t["t_recv"])
        assert float(t["t_done"]) <= float(t["t_result"])
    assert summary["delay_gap_s"]["n"] > 0
    if variant != "muecrs":
        # decisions came from the heads, after a trip gs1 -> UAV -> user
        assert summary["distributed"]["undecided_tasks"] < 0.2 * measured["tasks"], summary
        assert summary["measured"]["mean_control_s"] > 0.0
    assert not any(leftovers(d.name.rsplit("-", 1)[-1]).values())


@pytest.mark.unit
def test_a_head_rebuilds_the_slot_from_the_state_message():
    from controllers.offload.live import (
        SatelliteClusters,
        apply_state,
        clustering_from,
        model_state,
    )

    config = OffloadConfig.default()
    model = OffloadModel(config, seed=6)
    for _ in range(7):
        model.step(greedy_delay(model))
    model.set_batteries(np.r_[0.0, model.battery_j[1:]])  # one UAV down
    copy = OffloadModel(config, seed=99)
    apply_state(copy, json.loads(json.dumps(model_state(model))))
    np.testing.assert_allclose(copy.delay_table(), model.delay_table())
    np.testing.assert_array_equal(greedy_delay(copy).mode, greedy_delay(model).mode)
    assert not copy.alive[0] and copy.t == model.t
    sat = SatelliteClusters()
    msg = {"t": 0, "uav_xy": model.uav_xyz[:, :2].tolist(), "n_clusters": 2, "every": 10}
    c = clustering_from(json.loads(json.dumps(sat.reply(msg))))
    assert sorted(set(c.labels.tolist())) == [0, 1] and all(c.labels[c.heads] == [0, 1])
