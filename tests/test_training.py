"""The training workload's parts: Chaos's shard scheduler against the MILP it solves, the ring
order, the training state as bytes, the experiment file and the scenario check, and the
node runtime on loopback (join, leave and crash among real processes, no namespaces)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from controllers.training import schedule
from controllers.training.config import ConfigError, check_scenario, load_experiment, plan_of
from controllers.training.model import Trainer, batch_indices, digest, trainer_for
from testbed.scenario import load, resolve

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]


# ---- the scheduler ----------------------------------------------------------------------------
def test_greedy_is_the_milp_optimum_on_random_instances() -> None:
    rng = random.Random(7)
    for _ in range(25):
        sources = [schedule.Source(f"n{i}", rng.uniform(1e6, 7e6))
                   for i in range(rng.randint(1, 4))]
        shards = rng.randint(1, 12)
        size = shards * rng.randint(1, 400_000)  # equal shards: the chain the proof needs
        plan = schedule.greedy(size, sources, shards=shards)
        best = schedule.milp_makespan(size, sources, shards)
        assert plan.makespan == pytest.approx(best, rel=1e-6, abs=1e-9)
        assert sorted(j for js in plan.assign.values() for j in js) == list(range(shards))


def test_greedy_balances_the_links_within_one_shard() -> None:
    mbps = {"n1": 50, "n2": 40, "n3": 25, "n4": 10}
    sources = [schedule.Source(n, r * 1e6 / 8) for n, r in mbps.items()]
    size = 10_000_000
    plan = schedule.greedy(size, sources)
    times = list(plan.expected_s.values())
    shard_s = max(b - a for a, b in plan.shards) / min(s.bandwidth for s in sources)
    assert max(times) - min(times) <= shard_s + 1e-9
    # bytes follow the bandwidths, and the makespan is within a shard of the fluid optimum
    fluid = size / sum(s.bandwidth for s in sources)
    assert fluid <= plan.makespan <= fluid + shard_s
    assert plan.bytes_of("n1") > plan.bytes_of("n2") > plan.bytes_of("n3") > plan.bytes_of("n4")


def test_single_source_takes_the_best_neighbour_and_replan_covers_the_rest() -> None:
    sources = [schedule.Source("a", 1e6), schedule.Source("b", 3e6), schedule.Source("c", 2e6)]
    one = schedule.single(1_000_000, sources)
    assert list(one.assign) == ["b"] and one.bytes_of("b") == 1_000_000
    plan = schedule.greedy(1_000_000, sources, shards=12)
    done = set(plan.assign["a"])
    again = schedule.replan(plan, done, [s for s in sources if s.name != "b"])
    assert "b" not in again.assign
    left = sorted(j for js in again.assign.values() for j in js)
    assert left == sorted(set(range(12)) - done)
    with pytest.raises(ValueError, match="no neighbour"):
        schedule.greedy(10, [])


def test_ring_order_is_deterministic_and_short() -> None:
    names = ["a", "b", "c", "d", "e"]
    pos = {"a": 0, "b": 10, "c": 1, "d": 11, "e": 2}  # two clusters on a line
    rtt = {(x, y): abs(pos[x] - pos[y]) * 1.0 + 0.1 for x in names for y in names if x != y}
    ring = schedule.ring_order(names, rtt)
    assert ring == schedule.ring_order(list(reversed(names)), rtt)
    assert schedule.ring_cost(ring, rtt) < schedule.ring_cost(sorted(names), rtt)
    assert schedule.ring_cost(ring, rtt) == pytest.approx(2 * (11 - 0) + 5 * 0.1)


# ---- the state ---------------------------------------------------------------------------------
def test_state_bytes_round_trip_bit_identically() -> None:
    a = trainer_for((32,), 0.05, 0.9, 1, state_mb=1.0)
    assert abs(len(a.blob()) - 1_000_000) < 16
    for s in range(3):
        g, _ = a.gradient(batch_indices(1, s, 0, 1, 16, 1437))
        a.apply(g)
    b = trainer_for((32,), 0.05, 0.9, 99, state_mb=1.0)
    b.load(a.blob())
    assert digest(b.blob()) == digest(a.blob()) and b.step == 3
    # and they stay identical under the same updates: training continues from the same step
    g, _ = a.gradient(batch_indices(1, 3, 0, 1, 16, 1437))
    a.apply(g)
    b.apply(g)
    assert digest(a.blob()) == digest(b.blob())
    with pytest.raises(ValueError, match="ballast"):
        Trainer((32,), 0.05, 0.9, 1).load(a.blob())


def test_one_step_undo_restores_the_state() -> None:
    t = Trainer((16,), 0.1, 0.9, 2)
    before = t.blob()
    snap = t.snapshot()
    g, _ = t.gradient(batch_indices(1, 0, 0, 1, 8, 1437))
    t.apply(g)
    assert t.blob() != before
    t.restore(snap)
    assert t.blob() == before


def test_members_draw_disjoint_slices_of_one_global_batch() -> None:
    for members in (1, 3, 7):
        idx = [batch_indices(5, 42, r, members, 16, 1437) for r in range(members)]
        flat = np.concatenate(idx)
        assert len(set(flat.tolist())) == len(flat) == 16 * members


# ---- the experiment file and the scenario check -------------------------------------------------
def _exp(tmp_path: Path, **kw: object) -> Path:
    data = {"nodes": ["a", "b", "c"], "initial": ["a", "b"], **kw}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(("kw", "text"), [
    ({"method": "gossip"}, "method 'gossip' is unknown"),
    ({"method": "checkpoint"}, "needs `store:`"),
    ({"store": "a"}, "also a training node"),
    ({"initial": ["z"]}, "not in nodes"),
    ({"lr": -1}, "lr"),
])
def test_bad_experiment_files_name_the_file_field_and_fix(tmp_path: Path, kw: dict[str, object],
                                                         text: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_experiment(_exp(tmp_path, **kw))
    msg = str(e.value)
    assert str(tmp_path / "exp.yaml") in msg and text in msg and "fix:" in msg


def test_the_shipped_scenario_passes_its_check() -> None:
    sc = load(resolve("edge-training"))
    assert check_scenario(sc) == []
    kinds = [a.kind for a in plan_of(sc)]
    assert kinds.count("start") == 8 and "leave" in kinds and "crash" in kinds


def _scenario_with(timeline_edit: object) -> dict[str, object]:
    data = yaml.safe_load(resolve("edge-training").read_text())
    timeline_edit(data["timeline"])  # type: ignore[operator]
    return data


def _problems(data: dict[str, object]) -> str:
    """What loading the scenario says: the workload's check runs before anything exists."""
    from testbed.scenario import parse
    from testbed.scenario.errors import ScenarioError

    with pytest.raises(ScenarioError) as e:
        parse(data, "test.yaml")
    return str(e.value)


def test_a_leave_of_a_node_that_never_trained_is_refused() -> None:
    cmd = ("python -m controllers.training.live leave "
           "--config topologies/edge-training.training.yaml")

    def edit(tl: list[dict[str, object]]) -> None:
        tl.append({"at_s": 100, "action": "exec", "node": "edge3", "command": cmd})
        tl.append({"at_s": 5, "action": "exec", "node": "uav3", "command": cmd})
    msgs = _problems(_scenario_with(edit))
    assert "leave of uav3 at 5 s: it is not training then" in msgs and "fix:" in msgs


def test_more_leaves_and_crashes_than_nodes_are_refused() -> None:
    def edit(tl: list[dict[str, object]]) -> None:
        for i, n in enumerate(["gs1", "edge1", "edge2", "uav1", "edge3", "uav3"]):
            tl.append({"at_s": 250 + i, "action": "node_crash", "node": n})
    msgs = _problems(_scenario_with(edit))
    assert "crash of uav3 at 255 s leaves no node training" in msgs


def test_unknown_method_and_untrained_node_are_refused() -> None:
    def edit(tl: list[dict[str, object]]) -> None:
        tl.append({"at_s": 40, "action": "exec", "node": "cloud", "command":
                   "python -m controllers.training.live node --config "
                   "topologies/edge-training.training.yaml --method gossip"})
    msgs = _problems(_scenario_with(edit))
    assert "timeline[14].command: --method gossip is unknown" in msgs
    assert "cloud starts training but is not in" in msgs


# ---- the runtime on loopback ---------------------------------------------------------------------
def _records(folder: Path, node: str) -> list[dict[str, object]]:
    p = folder / "training" / f"{node}.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.is_file() else []


def _wait(pred: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_join_leave_and_crash_among_real_processes(tmp_path: Path) -> None:
    """Three nodes form a ring on loopback and train; a fourth joins and pulls 2 MB of state
    from all three (hash-checked, same step); one leaves gracefully; one is killed."""
    base = 20000 + os.getpid() % 2000 * 10
    names = ["a", "b", "c", "d"]
    addrs = {n: f"127.0.0.1:{base + 3 * i}" for i, n in enumerate(names)}
    cfg = _exp(tmp_path, nodes=names, initial=["a", "b", "c"], state_mb=2, hidden=[32],
               port=base)
    env = {**os.environ, "SAGIN_TRAIN_ADDRS": json.dumps(addrs), "SAGIN_RUN_DIR": str(tmp_path)}
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(n: str, what: str = "node") -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "controllers.training.live", what,
                              "--config", str(cfg), "--name", n], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if what == "node":
            procs[n] = p
        return p
    try:
        for n in ["a", "b", "c"]:
            start(n)
        _wait(lambda: all(sum(r["k"] == "step" for r in _records(tmp_path, n)) >= 10
                          for n in "abc"), 120, "three nodes training")
        start("d")
        _wait(lambda: any(r["k"] == "computing" for r in _records(tmp_path, "d")), 90,
              "d computing")
        d = _records(tmp_path, "d")
        check = next(r for r in d if r["k"] == "state_check")
        plan = next(r for r in d if r["k"] == "plan")
        # the pull followed the multi-neighbour plan (greedy over the probed rates and
        # latencies; on a loaded 2-core host a busy peer's latency can win it every shard,
        # so how many neighbours the plan uses is not fixed here: schedule's tests cover it)
        assert check["identical"] and set(check["sources"]) == {
            p["neighbour"] for p in plan["plan"]} <= {"a", "b", "c"}
        commit = next(r for r in d if r["k"] == "view" and r["reason"] == "joined")
        first = next(r for r in d if r["k"] == "computing")
        assert first["step"] == commit["step"] > 0  # continued, not from scratch
        pulled = {r["source"]: r["bytes"] for r in d if r["k"] == "pulled"}
        assert sum(pulled.values()) == len(trainer_for((32,), 0.05, 0.9, 1, 2).blob())
        assert start("c", "leave").wait(10) == 0
        _wait(lambda: any(r["k"] == "exit" for r in _records(tmp_path, "c")), 30, "c leaving")
        procs["b"].send_signal(signal.SIGKILL)
        _wait(lambda: any(r["k"] == "change" and r["reason"] == "crash"
                          for n in "ad" for r in _records(tmp_path, n)), 30, "b's removal")
        steps = {n: max((r["step"] for r in _records(tmp_path, n) if r["k"] == "step"),
                        default=0) for n in "ad"}
        time.sleep(1.5)
        after = {n: max(r["step"] for r in _records(tmp_path, n) if r["k"] == "step")
                 for n in "ad"}
        assert all(after[n] > steps[n] for n in "ad")  # the two left go on training
        changes = [r for n in "ad" for r in _records(tmp_path, n) if r["k"] == "change"]
        assert {c["reason"] for c in changes} >= {"join", "leave", "crash"}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
