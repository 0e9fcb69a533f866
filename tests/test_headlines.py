"""Every workload's headline on the console summary (issue 22): each headline function on a
minimal run folder holding the files its workload writes, and the summary that ends with them."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from testbed.run import summary
from testbed.workloads import Registry

pytestmark = pytest.mark.unit


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _summary_after_records(run: Path, folder: str, data: dict[str, Any]) -> None:
    """A summary.json newer than the nodes' records, as a finished run leaves it (older
    records would make fresh_output rebuild it from them)."""
    rec = _write(run / folder / "node1.jsonl", "{}\n")
    out = _write(run / folder / "summary.json", data)
    os.utime(rec, (1, 1))
    os.utime(out, (2, 2))


def test_every_workload_with_run_results_has_a_headline() -> None:
    named = {w.name for w, _ in Registry.installed().calls("headline")}
    assert {"offload", "cpn", "llm", "consensus", "training", "iov", "drones"} <= named


def test_headlines_are_silent_on_a_run_that_is_not_theirs(tmp_path: Path) -> None:
    """quickstart's folder has none of the workloads' files: no line, no error."""
    (tmp_path / "logs" / "user1").mkdir(parents=True)
    (tmp_path / "logs" / "user1" / "exec-1s.log").write_text("PING 198.19.255.252\n")
    for w, fn in Registry.installed().calls("headline"):
        assert fn(tmp_path) == [], w.name


def test_llm_headline(tmp_path: Path) -> None:
    from controllers.llm.workload import headline

    _write(tmp_path / "llm" / "summary.json", {"methods": [
        {"method": "single", "feasible": False},
        {"method": "even", "feasible": True, "ms_per_token": None},
        {"method": "halda", "feasible": True, "ms_per_token": 67.8, "tokens_equal": True}]})
    assert headline(tmp_path) == ["llm ms/token: single infeasible, even failed, halda 67.8"]


def test_offload_headline(tmp_path: Path) -> None:
    from controllers.offload.workload import headline

    _write(tmp_path / "offload" / "summary.json", {
        "algo": "muecrs", "slots": 60,
        "measured": {"tasks": 333, "deadline_ratio": 0.871, "mean_delay_s": 0.513,
                     "profit": 17.8},
        "simulated": {"deadline_ratio": 1.0, "mean_delay_s": 0.237},
        "delay_gap_s": {"median": 0.2945}})
    (line,) = headline(tmp_path)
    assert line.startswith("offload (muecrs, 60 slots): 333 tasks, deadlines met 87.1 %, "
                           "mean delay 0.513 s")
    assert "median 294.5 ms" in line


def test_cpn_headline(tmp_path: Path) -> None:
    from controllers.cpn.workload import headline

    _write(tmp_path / "cpn" / "summary.json", {
        "algorithm": "abs", "accepted": 28, "arrived": 40, "acceptance_live": 0.7,
        "setup_ms": {"request_to_first_packet_median": 9.65},
        "reroutes": [{"gap_ms": 26.0, "recovered": True}, {"gap_ms": 12.0, "recovered": False}]})
    (line,) = headline(tmp_path)
    assert "accepted 28 of 40 services (70.0 %)" in line
    assert "reroute outage max 26 ms (2 reroutes)" in line and "1 services did not" in line


def test_consensus_headline(tmp_path: Path) -> None:
    from controllers.consensus.workload import headline

    _write(tmp_path / "consensus" / "summary.json", {"protocols": {
        "wbft": {"decided": 12, "accuracy": 0.583, "latency_ms_median": 1745.0},
        "raft": {"decided": 0, "accuracy": 0.0, "latency_ms_median": None}}})
    assert headline(tmp_path) == ["consensus (wbft: 58 % right, 1745 ms)"]


def test_training_headline(tmp_path: Path) -> None:
    from controllers.training.workload import headline

    _summary_after_records(tmp_path, "training", {
        "method": "chaos", "steps": 1740, "final_accuracy": 0.969, "target_accuracy": 0.95,
        "time_to_accuracy_s": 20.6, "scale_out_delay_s_median": 0.0749, "idle_s_total": 1.14,
        "handling_ms_median": {"join": 24.7, "leave": None}})
    (line,) = headline(tmp_path)
    assert line.startswith("training (chaos): 1740 steps, accuracy 0.969, target 0.95 at 20.6 s")
    assert "handling: join 24.7 ms" in line and "leave" not in line


def test_iov_headline(tmp_path: Path) -> None:
    from controllers.iov.workload import headline

    _summary_after_records(tmp_path, "chain", {
        "method": "drdst", "nodes": 36, "epochs": 5, "committed": 1334, "submitted": 1729,
        "success_rate": 0.8432, "latency_ms_median": 2205.7, "cross_latency_ms_median": 6007.3,
        "tps": 11.6, "max_node_traffic_kBps": 82.64})
    (line,) = headline(tmp_path)
    assert line.startswith("chain (drdst, 36 nodes, 5 epochs): 1334/1729 committed")


def test_drones_headline(tmp_path: Path) -> None:
    from firmware.workload import headline

    _write(tmp_path / "logs" / "gs1" / "exec-1s.log", "connecting\n" + "\n".join(
        json.dumps({"sysid": s, "elapsed_s": 95.25, "battery_used_pct": 12.0,
                    "legs_s": [15.0, 16.5]}) for s in (2, 1)) + "\nnot json {\n")
    assert headline(tmp_path) == [
        "drones: vehicle 1 95.2 s, battery 12.0 %, legs 15.0 / 16.5 s; "
        "vehicle 2 95.2 s, battery 12.0 %, legs 15.0 / 16.5 s"]


# ---- the summary that ends with them ----------------------------------------------------------
METRICS = {"links": {}, "flows": {"ping-cloud": {
    "kind": "ping", "src": "user1", "dst": "cloud1", "rtt_ms_median": 18.35, "rtt_ms_p95": 65.9,
    "loss_pct": 0.0}}, "timings_s": {"teardown_s": 2.0}, "status": "done"}


def test_summary_ends_with_the_headlines(tmp_path: Path) -> None:
    def broken(run_dir: Path) -> list[str]:
        raise KeyError("ms_per_token")

    con = Console(record=True, width=200)
    hooks = [("a", lambda run_dir: [f"a: {run_dir.name} 1.0 ms/token"]), ("b", broken),
             ("c", lambda run_dir: [])]
    text = summary.render(METRICS, con, tmp_path, hooks=hooks)
    assert text.splitlines()[-1] == f"a: {tmp_path.name} 1.0 ms/token"
    shown = con.export_text()
    assert "b headline failed: KeyError" in shown  # reported, not raised
    assert shown.rstrip().endswith(f"a: {tmp_path.name} 1.0 ms/token")
    assert "user1 -> cloud1" in text


def test_summary_of_a_moving_run_has_the_mobility_headline(tmp_path: Path) -> None:
    m = METRICS | {"mobility": {"handovers": 2, "max_outage_s": 0.0, "median_outage_s": 0.0,
                                "median_abs_rtt_error_ms": 4.094,
                                "route_install_ms_median": 90.97}}
    assert summary.core_headline(m) == [
        "mobility: 2 handovers, outage max 0.00 s (median 0.00 s), RTT vs prediction: median "
        "error 4.09 ms, route install median 90.97 ms"]
    assert summary.core_headline(METRICS) == []
    text = summary.render(m, Console(width=200, file=io.StringIO()), tmp_path, hooks=[])
    assert text.splitlines()[-1].startswith("mobility: 2 handovers")
