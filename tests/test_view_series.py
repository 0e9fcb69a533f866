"""The workloads' `view` hooks: each reads the files its workload writes in a run folder into
the live view's series (docs/view-protocol.md), tolerating a last line still being written.

Every fixture below is a few hand-written rows in the workload's own format, the last one cut
mid-line as a live reader finds it; times are wall clock, with time zero at T0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controllers import view_series as vs
from controllers.consensus.workload import view_series as consensus_view
from controllers.cpn.workload import view_series as cpn_view
from controllers.iov.workload import view_series as iov_view
from controllers.llm.workload import view_series as llm_view
from controllers.offload.workload import view_series as offload_view
from controllers.training.workload import view_series as training_view

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _jsonl(path: Path, records: list[dict[str, Any]], cut: str = "") -> Path:
    """Records as JSON lines, then `cut`: the start of a line not finished yet."""
    return _write(path, "".join(json.dumps(r) + "\n" for r in records) + cut)


def _keys(got: Any) -> list[str]:
    return [s["key"] for s in got[0]]


# ---- the shared readers ---------------------------------------------------------------------
def test_csv_rows_leave_a_line_still_being_written(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.csv", "x,y\n1,2\n3,")
    assert vs.csv_rows(p) == [{"x": "1", "y": "2"}]
    assert vs.csv_rows(tmp_path / "missing.csv") == []
    assert vs.csv_rows(_write(tmp_path / "b.csv", "x,y")) == []  # header not finished


def test_jsonl_records_read_appends_incrementally_and_reread_a_replaced_file(
        tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "a.jsonl", [{"i": 1}], cut='{"i": ')
    assert vs.jsonl_records(p) == [{"i": 1}]
    with p.open("a") as f:
        f.write('2}\nnot json\n{"i": 3}\n')
    assert vs.jsonl_records(p) == [{"i": 1}, {"i": 2}, {"i": 3}]
    p.unlink()
    assert vs.jsonl_records(p) == []
    _jsonl(p, [{"i": 9}])
    assert vs.jsonl_records(p) == [{"i": 9}]


def test_number_and_truth_read_csv_cells() -> None:
    assert vs.number("1.5") == 1.5 and vs.number("") is None and vs.number("None") is None
    assert vs.number("nan") is None and vs.number(True) is None
    assert vs.truth("True") and vs.truth(True) and not vs.truth("False") and not vs.truth("")


# ---- offload --------------------------------------------------------------------------------
def _task(tid: str, t_got: float, delay: float | None, deadline: float = 1.0,
          admitted: bool = True) -> dict[str, Any]:
    served = delay is not None
    return {"id": tid, "admitted": admitted, "deadline_s": deadline, "t_decided": t_got - 0.01,
            "t_got": t_got if admitted else None, "ok": True if served else None,
            "t_result": t_got + delay if served else None, "measured_delay_s": delay,
            "met": bool(served and delay <= deadline)}


def test_offload_series_from_the_live_tasks_log(tmp_path: Path) -> None:
    _jsonl(tmp_path / "offload" / "tasks.jsonl",
           [_task("0-0", T0 + 10, 0.5), _task("0-1", T0 + 10, 1.5),
            _task("0-2", T0 + 10.5, None, admitted=False), _task("1-0", T0 + 11, 0.25)],
           cut='{"id": "1-1", "t_got"')
    got = offload_view(tmp_path, T0)
    assert got is not None
    assert _keys(got) == ["offload.delay_s", "offload.deadline_hit_pct", "offload.tasks_done"]
    assert got[1] == [
        (10.49, {"offload.deadline_hit_pct": 0.0}),  # dropped by admission, at its decision
        (10.5, {"offload.deadline_hit_pct": 50.0, "offload.delay_s": 0.5,
                "offload.tasks_done": 1.0}),
        (11.25, {"offload.deadline_hit_pct": 66.67, "offload.delay_s": 0.25,
                 "offload.tasks_done": 2.0}),
        (11.5, {"offload.deadline_hit_pct": 50.0, "offload.delay_s": 1.5,
                "offload.tasks_done": 3.0}),
    ]


def test_offload_prefers_the_final_tasks_csv_and_counts_a_lost_task_at_its_deadline(
        tmp_path: Path) -> None:
    _jsonl(tmp_path / "offload" / "tasks.jsonl", [_task("0-0", T0 + 10, 0.5)])
    _write(tmp_path / "offload" / "tasks.csv",
           "id,admitted,deadline_s,measured_delay_s,met,ok,t_decided,t_got,t_result\n"
           f"0-0,True,1.0,0.5,True,True,{T0 + 9.99},{T0 + 10},{T0 + 10.5}\n"
           f"0-1,True,2.0,,False,,{T0 + 9.99},{T0 + 10},\n")  # lost on the way
    got = offload_view(tmp_path, T0)
    assert got is not None
    assert got[1] == [(10.5, {"offload.deadline_hit_pct": 100.0, "offload.delay_s": 0.5,
                              "offload.tasks_done": 1.0}),
                      (11.99, {"offload.deadline_hit_pct": 50.0})]


def test_offload_live_log_line_matches_the_final_csv_formula() -> None:
    from controllers.offload.live import _measure

    row = {"deadline_s": 1.0, "t_decided": 9.9, "t_got": 10.0, "ok": True, "t_result": 11.5}
    _measure(row)
    assert row["measured_delay_s"] == 1.5 and row["met"] is False
    assert row["control_s"] == pytest.approx(0.1)


# ---- consensus ------------------------------------------------------------------------------
DECISIONS = "protocol,seq,qid,key,accepted,correct,latency_s,view,replies"


def test_consensus_series_from_decisions_with_times(tmp_path: Path) -> None:
    _write(tmp_path / "consensus" / "decisions.csv",
           f"{DECISIONS},t\n"
           f"wbft,1,q01,B,B,True,1.5,0,3,{T0 + 20}\n"
           f"wbft,2,q02,D,,False,,0,0,{T0 + 30}\n"  # nothing accepted: not a decision
           f"pbft,1,q01,B,B,True,2.25,0,3,{T0 + 40}\n"
           "pbft,2,q02,D,D,Tr")
    got = consensus_view(tmp_path, T0)
    assert got is not None
    assert _keys(got) == ["consensus.decided", "consensus.latency_s.wbft",
                          "consensus.latency_s.pbft"]
    assert got[1] == [(20.0, {"consensus.decided": 1.0, "consensus.latency_s.wbft": 1.5}),
                      (40.0, {"consensus.decided": 2.0, "consensus.latency_s.pbft": 2.25})]


def test_consensus_old_decisions_take_the_completing_replys_time(tmp_path: Path) -> None:
    folder = tmp_path / "consensus"
    _write(folder / "decisions.csv", f"{DECISIONS}\nwbft,1,q01,B,B,True,1.5,0,2\n"
                                     "pbft,1,q01,B,B,True,2.0,0,1\n")

    def reply(node: str, t: float, p: int) -> dict[str, Any]:
        return {"t": T0 + t, "dir": "tx", "peer": "client", "p": p, "kind": "REPLY", "seq": 1,
                "sender": node}

    _jsonl(folder / "n1.jsonl", [reply("n1", 12.0, 1), {"t": T0 + 1, "dir": "rx",
                                                        "kind": "REPLY", "p": 1, "seq": 1},
                                 reply("n1", 31.0, 2)])
    _jsonl(folder / "n2.jsonl", [reply("n2", 11.0, 1), reply("n2", 30.0, 2)], cut='{"t": ')
    got = consensus_view(tmp_path, T0)
    assert got is not None
    # wbft (epoch 1) was accepted on its 2nd reply, pbft (epoch 2) on its 1st
    assert got[1] == [(12.0, {"consensus.decided": 1.0, "consensus.latency_s.wbft": 1.5}),
                      (30.0, {"consensus.decided": 2.0, "consensus.latency_s.pbft": 2.0})]


# ---- edge LLM -------------------------------------------------------------------------------
GENERATIONS = ("method,prompt,ok,tokens,ttft_ms,ms_per_token,bytes_sent,equal_to_reference,"
               "error,text")


def test_llm_series_per_method_from_generation_times(tmp_path: Path) -> None:
    _write(tmp_path / "llm" / "generations.csv",
           f"{GENERATIONS},t_done\n"
           f'even,0,False,0,,,100,False,"no activations, died",,{T0 + 5}\n'
           f"halda,0,True,7,286.21,65.92,200,True,,Paris.,{T0 + 20}\n"
           f'halda,1,True,20,303.81,69.65,300,True,,"Drones, farms",{T0 + 22}\n'
           f"tensor,0,True,7,300.0,80.0,300,True,,Par")
    got = llm_view(tmp_path, T0)
    assert got is not None
    assert _keys(got) == ["llm.ms_per_token.halda", "llm.ttft_ms"]
    assert got[1] == [(20.0, {"llm.ms_per_token.halda": 65.92, "llm.ttft_ms": 286.21}),
                      (22.0, {"llm.ms_per_token.halda": 69.65, "llm.ttft_ms": 303.81})]


def test_llm_files_without_times_give_no_series(tmp_path: Path) -> None:
    _write(tmp_path / "llm" / "generations.csv",
           f"{GENERATIONS}\nhalda,0,True,7,286.21,65.92,200,True,,Paris.\n")
    assert llm_view(tmp_path, T0) is None


def test_llm_generations_csv_carries_each_generations_finish_time(tmp_path: Path) -> None:
    from controllers.llm.live import write_outputs

    gen = {"ok": True, "tokens": [1, 2], "ttft_s": 0.25, "ms_per_token": 50.0, "bytes_sent": 9,
           "equal_to_reference": True, "error": None, "text": "hi", "t_done": T0 + 7.5}
    out = tmp_path / "llm"
    out.mkdir()
    write_outputs({"methods": [{"method": "halda", "members": ["edge1"],
                                "generations": [gen]}]}, out)
    assert vs.csv_rows(out / "generations.csv")[0]["t_done"] == f"{T0 + 7.5:.4f}"
    got = llm_view(tmp_path, T0)
    assert got is not None and got[1] == [(7.5, {"llm.ms_per_token.halda": 50.0,
                                                 "llm.ttft_ms": 250.0})]


# ---- CPN ------------------------------------------------------------------------------------
def _cpn_events(tmp_path: Path) -> None:
    _jsonl(tmp_path / "logs" / "sdn-events.jsonl", [
        {"t": T0 - 5, "event": "sync", "reason": "switch_connected"},
        {"t": T0 + 1, "event": "sync", "reason": "service", "service": "svc0"},
        {"t": T0 + 1.5, "event": "service_installed", "name": "svc0", "install_ms": 3.5},
        {"t": T0 + 2, "event": "service_installed", "name": "svc1", "install_ms": 4.0},
        {"t": T0 + 3, "event": "sync", "reason": "service_removed", "service": "svc0",
         "rerouted": ["svc1"]},
        {"t": T0 + 4, "event": "sync", "reason": "link_down", "link": ["sw1", 2],
         "rerouted": ["svc1"]},
    ], cut='{"t": 18000000')


def test_cpn_series_from_the_steering_apps_events(tmp_path: Path) -> None:
    _cpn_events(tmp_path)
    got = cpn_view(tmp_path, T0)
    assert got is not None
    assert _keys(got) == ["cpn.services_active", "cpn.install_ms", "cpn.rerouted",
                          "cpn.reroute_gap_ms"]
    assert got[1] == [(1.5, {"cpn.services_active": 1.0, "cpn.install_ms": 3.5}),
                      (2.0, {"cpn.services_active": 2.0, "cpn.install_ms": 4.0}),
                      (3.0, {"cpn.services_active": 1.0}),
                      (4.0, {"cpn.rerouted": 1.0})]


def test_cpn_reroute_outage_joins_its_cut_once_the_summary_exists(tmp_path: Path) -> None:
    _cpn_events(tmp_path)
    _write(tmp_path / "cpn" / "summary.json", json.dumps({"reroutes": [
        {"service": "svc1", "link": ["sw1", 2], "gap_ms": 26.5, "recovered": True}]}))
    got = cpn_view(tmp_path, T0)
    assert got is not None and got[1][-1] == (4.0, {"cpn.rerouted": 1.0,
                                                   "cpn.reroute_gap_ms": 26.5})


def test_cpn_without_services_has_no_series(tmp_path: Path) -> None:
    _jsonl(tmp_path / "logs" / "sdn-events.jsonl",
           [{"t": T0, "event": "sync", "reason": "switch_connected"}])
    assert cpn_view(tmp_path, T0) is None


# ---- training -------------------------------------------------------------------------------
def test_training_series_from_the_nodes_records(tmp_path: Path) -> None:
    _write(tmp_path / "scenario.resolved.yaml", "name: t\nduration_s: 100.0\n")
    boot = {"k": "view", "v": 1, "m": ["a", "b"], "reason": "bootstrap"}
    _jsonl(tmp_path / "training" / "a.jsonl", [
        {"t": T0 + 1, **boot},
        {"t": T0 + 2, "k": "step", "step": 1, "v": 1, "n": 2, "loss": 2.5},
        {"t": T0 + 3, "k": "step", "step": 2, "v": 1, "n": 2, "loss": 2.0},
        {"t": T0 + 3.5, "k": "accuracy", "step": 2, "acc": 0.5, "loss": 2.0},
        {"t": T0 + 5, "k": "change", "reason": "join", "m": ["a", "b", "c"],
         "t_commit": T0 + 4.5},
        {"t": T0 + 101, "k": "change", "reason": "crash", "m": ["a"], "t_commit": T0 + 101},
    ], cut='{"t": 1800000006, "k": "st')
    _jsonl(tmp_path / "training" / "b.jsonl", [
        {"t": T0 + 1.2, **boot},
        {"t": T0 + 2.1, "k": "step", "step": 1, "v": 1, "n": 2, "loss": 2.4},
        {"t": T0 + 2.9, "k": "step", "step": 2, "v": 1, "n": 2, "loss": 2.1},
    ])
    got = training_view(tmp_path, T0)
    assert got is not None
    assert _keys(got) == ["training.step", "training.loss", "training.accuracy_pct",
                          "training.members"]
    assert got[1] == [(1.0, {"training.members": 2.0}),
                      (2.0, {"training.step": 1.0, "training.loss": 2.5}),
                      (2.9, {"training.step": 2.0, "training.loss": 2.1}),
                      (3.5, {"training.accuracy_pct": 50.0}),
                      (4.5, {"training.members": 3.0})]  # the crash after the end is not


# ---- IoV ------------------------------------------------------------------------------------
def test_iov_series_from_the_nodes_records(tmp_path: Path) -> None:
    chain = tmp_path / "chain"
    _jsonl(chain / "rsu1.jsonl", [
        {"ev": "start", "node": "rsu1", "wall": T0 + 9},
        {"ev": "submit", "tx": "rsu1-1", "t_ms": 30000.0, "shards": [0], "e": 1},
        {"ev": "commit", "tx": "rsu1-1", "t_ms": 31500.0, "latency_ms": 1500.0, "e": 1},
    ], cut='{"ev": "commit", "tx": "rsu1-2", "t_ms": 3')
    _jsonl(chain / "v01.jsonl", [
        {"ev": "commit", "tx": "v01-1", "t_ms": 31000.0, "latency_ms": 900.0, "e": 1},
        {"ev": "failed", "tx": "v01-2", "t_ms": 40000.0, "e": 1},
    ])
    _write(chain / "rsu1.traffic.json", "{}")
    got = iov_view(tmp_path, T0)
    assert got is not None
    assert _keys(got) == ["iov.committed", "iov.failed", "iov.latency_ms"]
    assert got[1] == [(31.0, {"iov.committed": 1.0, "iov.latency_ms": 900.0}),
                      (31.5, {"iov.committed": 2.0, "iov.latency_ms": 1500.0}),
                      (40.0, {"iov.failed": 1.0})]


# ---- all of them ----------------------------------------------------------------------------
HOOKS = [offload_view, consensus_view, llm_view, cpn_view, training_view, iov_view]


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h.__module__.split(".")[1])
def test_a_run_without_the_workload_has_no_series(tmp_path: Path, hook: Any) -> None:
    for name in ("offload", "consensus", "llm", "training", "chain", "logs"):
        (tmp_path / name).mkdir()
    assert not hook(tmp_path, T0)


def test_every_hook_is_registered_and_series_of_workloads_gathers_them(tmp_path: Path) -> None:
    from testbed.view.workloads import series_of_workloads
    from testbed.workloads import Registry

    views = {w.name: w.view for w in Registry.installed().workloads if w.view}
    for name in ("offload", "consensus", "llm", "cpn", "training", "iov"):
        assert views.get(name) == f"controllers.{name}.workload:view_series"
    _jsonl(tmp_path / "offload" / "tasks.jsonl", [_task("0-0", T0 + 10, 0.5)],
           cut='{"id": "0-1"')
    _jsonl(tmp_path / "chain" / "rsu1.jsonl",
           [{"ev": "commit", "tx": "rsu1-1", "t_ms": 5000.0, "latency_ms": 800.0}])
    series, points = series_of_workloads(tmp_path, T0)
    keys = [s["key"] for s in series]
    assert keys == ["iov.committed", "iov.failed", "iov.latency_ms", "offload.delay_s",
                    "offload.deadline_hit_pct", "offload.tasks_done"]
    assert all(s["group"] == s["key"].split(".")[0] for s in series)
    assert points == [(5.0, {"iov.committed": 1.0, "iov.latency_ms": 800.0}),
                      (10.5, {"offload.deadline_hit_pct": 100.0, "offload.delay_s": 0.5,
                              "offload.tasks_done": 1.0})]
