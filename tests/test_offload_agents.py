"""Learned offloading controllers: features, decoding, training, checkpoints, evaluation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch==2.13.0 (CPU) is needed for the learners")

from controllers.offload import OffloadConfig, OffloadModel  # noqa: E402
from controllers.offload.agents import (  # noqa: E402
    ALGORITHMS,
    load_controller,
    make_controller,
    save_checkpoint,
)
from controllers.offload.agents.base import strip_checkpoint  # noqa: E402
from controllers.offload.agents.central import CentralConfig, CentralDDPG  # noqa: E402
from controllers.offload.agents.muecrs import MUECRS, MuecrsConfig  # noqa: E402
from controllers.offload.agents.team import ClusterState, TeamConfig, TeamController  # noqa: E402
from controllers.offload.baselines import greedy_delay  # noqa: E402
from controllers.offload.features import (  # noqa: E402
    PAIR_FEATURES,
    UAV_FEATURES,
    delay_ratios,
    pair_features,
    uav_features,
)
from controllers.offload.learn.nets import LearnerConfig  # noqa: E402

pytestmark = pytest.mark.unit

SMALL = OffloadConfig(n_users=8, n_uavs=3, n_clusters=2, episode_slots=50, area_m=600.0)
QUICK = LearnerConfig(batch=32, warmup=64, buffer=5000, hidden=(32, 32))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _busy_model(config: OffloadConfig = SMALL, seed: int = 1, slots: int = 5) -> OffloadModel:
    model = OffloadModel(config, seed)
    for _ in range(slots):
        model.step(greedy_delay(model))
    return model


def test_delay_table_is_mode_delays_for_every_user():
    model = _busy_model(OffloadConfig.default(), slots=15)
    table = model.delay_table()
    for i in range(model.n_users):
        np.testing.assert_allclose(table[i], model.mode_delays(i))


def test_features_are_bounded_and_size_independent():
    for config in (SMALL, OffloadConfig.large()):
        model = _busy_model(config)
        pairs = pair_features(model, delay_ratios(model))
        uavs = uav_features(model)
        assert pairs.shape == (config.n_users, config.n_uavs + 3, len(PAIR_FEATURES))
        assert uavs.shape == (config.n_uavs, len(UAV_FEATURES))
        assert np.isfinite(pairs).all() and np.isfinite(uavs).all()
        assert pairs.min() >= 0.0 and pairs.max() <= 1.0
        assert np.abs(uavs).max() <= 1.5  # offsets are fractions of the area side


def test_untrained_corrections_decode_to_the_greedy_assignment():
    """Zero learned terms and one decider for everyone reduce both controllers to the
    contention-aware greedy heuristic: the learners start from it and can only add to it."""
    model = _busy_model()
    muecrs = MUECRS(MuecrsConfig(trajectory=QUICK), seed=0)
    with torch.no_grad():
        for p in muecrs.correction.parameters():
            p.zero_()
    expected = greedy_delay(model).mode
    np.testing.assert_array_equal(muecrs.decide(model).mode, expected)
    one_decider = np.zeros(model.n_users, dtype=np.int64)
    zero_bias = np.zeros((model.n_users, model.modes.count))
    np.testing.assert_array_equal(TeamController._modes(model, one_decider, zero_bias)[0],
                                  expected)


def test_separate_deciders_do_not_see_each_other():
    """Two deciders that each know only their own claims pile onto the best node, where one
    decider would spread the load: the decision conflict CMADDPG's clustering reduces."""
    cfg = OffloadConfig(n_users=6, n_uavs=2, n_clusters=1, area_m=200.0,
                        tasks={"arrival_rate": 1.0})
    model = OffloadModel(cfg, seed=3)
    bias = np.zeros((6, cfg.n_uavs + 3))
    together, _ = TeamController._modes(model, np.zeros(6, dtype=np.int64), bias)
    apart, _ = TeamController._modes(model, np.arange(6) % 2, bias)
    assert not np.array_equal(together, apart)
    metrics_together, _ = OffloadModel(cfg, seed=3).step(
        greedy_delay(model)._replace(mode=together))
    metrics_apart, _ = OffloadModel(cfg, seed=3).step(greedy_delay(model)._replace(mode=apart))
    assert metrics_together["mean_effective_delay_s"] <= metrics_apart["mean_effective_delay_s"]


def test_cluster_maintenance_keeps_heads_inside_their_clusters():
    model = OffloadModel(OffloadConfig.default(), seed=4)
    state = ClusterState(2, every=10)
    for t in range(25):
        model.t = t
        c = state.update(model.uav_xyz[:, :2], model.t)
        for j, head in enumerate(c.heads):
            if head >= 0:
                assert c.labels[head] == j
        model.uav_xyz[:, :2] += np.random.default_rng(t).normal(0, 60, (4, 2))


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_each_algorithm_trains_a_few_hundred_steps(algo):
    if algo == "muecrs":
        ctrl = MUECRS(MuecrsConfig(trajectory=QUICK, mode_warmup=64, mode_batch=64), seed=0)
    elif algo == "ddpg":
        ctrl = CentralDDPG(SMALL, CentralConfig(learner=QUICK), seed=0)
    else:
        ctrl = TeamController.for_model(OffloadModel(SMALL), algo == "cmaddpg",
                                        TeamConfig(learner=QUICK), seed=0)
    model = OffloadModel(SMALL, seed=0)
    seen: dict[str, float] = {}
    for _ in range(300):
        decision = ctrl.decide(model, explore=True)
        assert decision.mode.shape == (SMALL.n_users,)
        assert decision.velocity.shape == (SMALL.n_uavs, 3)
        metrics, info = model.step(decision)
        seen.update(ctrl.learn(model, metrics, info, model.done))
        assert (model.battery_j >= 0).all()
        if model.done:
            model.reset()
    assert "critic_loss" in seen and np.isfinite(seen["critic_loss"])
    if algo == "muecrs":
        assert np.isfinite(seen["mode_loss"])
    counts = model.counters
    assert counts.generated == counts.waiting + counts.dropped + counts.completed + \
        counts.in_flight


def test_checkpoints_round_trip_and_refuse_other_sizes(tmp_path):
    model = _busy_model()
    for algo in ALGORITHMS:
        ctrl = make_controller(algo, SMALL, seed=5)
        path = tmp_path / f"{algo}.pt"
        save_checkpoint(ctrl, path, {"config_name": "small"})
        again = load_controller(path, SMALL)
        a, b = ctrl(model), again(model)
        np.testing.assert_array_equal(a.mode, b.mode)
        np.testing.assert_allclose(a.velocity, b.velocity)
        stripped = tmp_path / f"{algo}-acting.pt"
        save_checkpoint(ctrl, stripped, {"config_name": "small"})
        strip_checkpoint(stripped)
        assert stripped.stat().st_size < path.stat().st_size
        np.testing.assert_array_equal(load_controller(stripped, SMALL)(model).mode, a.mode)
    with pytest.raises(ValueError, match=r"ddpg\.pt.*small"):
        load_controller(tmp_path / "ddpg.pt", OffloadConfig.default())
    with pytest.raises(ValueError, match=r"cmaddpg\.pt"):
        load_controller(tmp_path / "cmaddpg.pt", OffloadConfig.large())
    # MUECRS is size-independent: the same file drives a larger system
    assert load_controller(tmp_path / "muecrs.pt", OffloadConfig.large())(
        OffloadModel(OffloadConfig.large())).mode.shape == (60,)
    with pytest.raises(FileNotFoundError, match="make train"):
        load_controller(tmp_path / "none.pt", SMALL)


def test_train_and_evaluate_command_lines(tmp_path):
    from controllers.offload import save_config
    from controllers.offload.evaluate import main as evaluate_main
    from controllers.offload.train import main as train_main

    config = tmp_path / "tiny.yaml"
    save_config(SMALL.model_copy(update={"episode_slots": 20}), config)
    policies = tmp_path / "policies"
    train_main(["--algo", "muecrs", "--config", str(config), "--slots", "60", "--out",
                str(policies), "--quiet"])
    with open(policies / "muecrs-tiny.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and float(rows[-1]["slot"]) == 60
    out = tmp_path / "eval"
    evaluate_main(["--config", str(config), "--seeds", "2", "--policies", str(policies),
                   "--algos", "muecrs,cmaddpg,greedy_delay,random", "--workers", "1",
                   "--out", str(out)])
    report = json.loads((out / "results.json").read_text())
    table = report["configs"]["tiny"]["table"]
    assert table["greedy_delay"]["profit"]["n"] == 2
    assert table["cmaddpg"]["source"].startswith("n/a")  # nothing trained for it
    claim = report["configs"]["tiny"]["claims"]["muecrs"]
    assert claim["best_baseline"] in ("greedy_delay", "random")
    assert (out / "table.md").read_text().count("| muecrs |") == 1


@pytest.mark.parametrize("clustered", [True, False])
def test_heads_deciding_on_their_own_nodes_reproduce_the_team(clustered):
    """The live cluster-head service (decide_as, one call per UAV, each with only its own
    actor) assigns exactly what the team decides in the simulator."""
    config = OffloadConfig.default()
    model = _busy_model(config, slots=3)
    team = TeamController.for_model(model, clustered, seed=3)
    for p in team.team.actors[0].parameters():  # make the preferences matter
        torch.nn.init.normal_(p, std=0.5)
    expected = team.decide(model).mode
    clustering = team.clusters.clustering
    combined = np.full(model.n_users, -1)
    for k in range(config.n_uavs):
        mode, delay = team.decide_as(model, k, clustering)
        mine = mode >= 0
        assert not (mine & (combined >= 0)).any()  # one decider per user
        combined[mine] = mode[mine]
        assert np.isfinite(delay[mine & model.task_active]).all()
    active = model.task_active
    np.testing.assert_array_equal(combined[active], expected[active])


@pytest.mark.parametrize("clustered", [True, False])
def test_untrained_team_decides_as_zero_preferences(clustered):
    """A new CMADDPG/MADDPG team is the residual learner's starting point: its decisions are
    exactly the zero-weight assignment (the untrained policy), over a whole episode, so
    training can only move away from it where validation says it pays."""
    config = OffloadConfig.default()
    team = TeamController.for_model(OffloadModel(config), clustered, seed=7)
    model = OffloadModel(config, seed=2)
    for _ in range(40):
        decision = team.decide(model)
        resp = team.responsible(model)
        zero = np.zeros((model.n_users, model.modes.count))
        active = model.task_active
        np.testing.assert_array_equal(decision.mode[active],
                                      TeamController._modes(model, resp, zero)[0][active])
        model.step(decision)


def test_preference_scale_is_saved_and_old_checkpoints_keep_theirs(tmp_path):
    """The weights' range (pref_scale) is part of a policy's meaning: it round-trips, and a
    checkpoint written before it existed loads with the range it was trained with (1)."""
    team = TeamController.for_model(OffloadModel(SMALL), True, TeamConfig(pref_scale=0.3))
    path = tmp_path / "cm.pt"
    save_checkpoint(team, path, {"config_name": "small"})
    assert load_controller(path, SMALL).pref_scale == 0.3
    state = team.state_dict()
    del state["config"]["pref_scale"]
    again = TeamController.for_model(OffloadModel(SMALL), True)
    again.load_state_dict(state)
    assert again.pref_scale == 1.0


def test_warmup_explores_around_the_policy_not_the_whole_box():
    """With warmup_uniform off, warm-up actions are the (zero) untrained policy plus the
    exploration noise: the replay holds the neighbourhood the critic must be right about."""
    from controllers.offload.learn.maddpg import MADDPG

    for uniform, bound in ((True, 0.9), (False, 0.2 * 4.5)):
        team = MADDPG(2, 4, 3, LearnerConfig(warmup=100, warmup_uniform=uniform, noise=0.2))
        for actor in team.actors:
            torch.nn.init.zeros_(actor.net[-1].weight)
            torch.nn.init.zeros_(actor.net[-1].bias)
        acts = np.stack([team.act(np.zeros((2, 4), np.float32)) for _ in range(100)])
        if uniform:
            assert np.abs(acts).max() > bound  # the whole box
        else:
            assert np.abs(acts).max() < bound and abs(acts.std() - 0.2) < 0.03


def test_training_writes_the_validation_curve_and_keeps_the_best(tmp_path):
    """Checkpoint selection on held-out validation: the curve starts at the untrained score,
    and the kept policy is the best validation point unless the final is within the margin."""
    from controllers.offload.agents import read_checkpoint
    from controllers.offload.train import SELECT_MARGIN, train

    config = SMALL.model_copy(update={"episode_slots": 20})
    path = train("cmaddpg", config, "tiny", 120, 0, tmp_path, quiet=True, validate_every=2,
                 plot_dir=tmp_path / "plots")
    with open(tmp_path / "cmaddpg-tiny-validation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["slot"]) for r in rows] == [0, 40, 80, 120]
    scores = [float(r["score"]) for r in rows]
    meta = read_checkpoint(path)["meta"]["validation"]
    assert meta["untrained"] == pytest.approx(scores[0], abs=1e-4)
    assert meta["best"] == pytest.approx(max(scores), abs=1e-4)
    final = meta["final"]
    assert meta["kept"] == ("best" if meta["best"] > final + SELECT_MARGIN * abs(final)
                            else "final")
    assert (tmp_path / "plots" / "cmaddpg-tiny.png").stat().st_size > 1000
