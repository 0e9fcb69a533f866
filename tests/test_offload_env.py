"""The offloading model and its envs: hand-computed delays, invariants, determinism,
baselines on constructed cases, K-means, the gymnasium/pettingzoo contracts and throughput."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from controllers.offload import (
    Contention,
    Decision,
    OffloadConfig,
    OffloadModel,
    kmeans_clusters,
    load_config,
    save_config,
)
from controllers.offload.baselines import (
    BASELINES,
    RandomPolicy,
    all_to_cloud,
    evaluate,
    greedy_delay,
    local_only,
    nearest_uav,
)
from controllers.offload.energy import PropulsionTable
from controllers.offload.envs import OffloadEnv, OffloadParallelEnv
from controllers.offload.links import (
    SPEED_OF_LIGHT_M_S,
    SharedBand,
    link_rate_bps,
    slant_range_m,
)
from controllers.offload.model import jain_index
from controllers.offload.spaces import ActionCodec
from firmware.dynamics import PowerModel
from testbed.channels import build_channel
from testbed.channels.config import RateSpec

pytestmark = pytest.mark.unit


def small(**changes: object) -> OffloadConfig:
    """One user, one UAV: a case whose delays can be worked out by hand."""
    base = {"n_users": 1, "n_uavs": 1, "n_clusters": 1, "area_m": 200.0,
            "satellite": {"elevation_deg": [60.0, 60.0]}, "tasks": {"deadline_s": [5.0, 5.0]}}
    return OffloadConfig.model_validate({**base, **changes})


def overhead(model: OffloadModel, bits: float, cycles: float, deadline: float = 5.0) -> None:
    """User at (100, 100), UAV 100 m straight above it, one task."""
    model.set_positions([[100.0, 100.0]], [[100.0, 100.0, 100.0]])
    model.set_tasks([bits], [cycles], [deadline])


def hover(model: OffloadModel) -> np.ndarray:
    return np.zeros((model.n_uavs, 3))


# ----------------------------------------------------------------------------- config
def test_presets_and_file_round_trip(tmp_path) -> None:
    default, large = OffloadConfig.default(), OffloadConfig.large()
    assert (default.n_users, default.n_uavs, large.n_users, large.n_uavs) == (20, 4, 60, 10)
    for name in ("c.json", "c.yaml"):
        save_config(large, tmp_path / name)
        assert load_config(tmp_path / name) == large
    (tmp_path / "partial.yaml").write_text("n_users: 7\ntasks:\n  deadline_s: [1, 3]\n")
    partial = load_config(tmp_path / "partial.yaml")
    assert partial.n_users == 7 and partial.tasks.deadline_s == (1.0, 3.0)
    assert partial.uav == default.uav
    with pytest.raises(ValidationError):
        OffloadConfig.model_validate({"n_user": 3})  # typo: extra keys are errors
    with pytest.raises(ValidationError):
        OffloadConfig(n_uavs=2, n_clusters=3)
    with pytest.raises(ValidationError):
        OffloadConfig.model_validate({"tasks": {"arrival_rate": 1.5}})  # Bernoulli: p <= 1
    with pytest.raises(ValidationError):
        OffloadConfig.model_validate({"tasks": {"deadline_s": [2.0, 1.0]}})


# ----------------------------------------------------------------------------- physics
def test_uplink_and_satellite_rates_match_testbed_channels() -> None:
    cfg = OffloadConfig.default()
    model = OffloadModel(cfg, seed=3)
    channel = build_channel(cfg.uav.link)
    for i, k in [(0, 0), (5, 2), (19, 3)]:
        d = float(model.distance_m[i, k])
        elevation = math.degrees(math.asin(model.uav_xyz[k, 2] / d))
        quality = channel.sample(d, elevation)
        assert model.snr_db[i, k] == pytest.approx(quality.snr_db, abs=1e-9)
    sat = build_channel(cfg.satellite.link)
    model.set_satellite_elevation(45.0)
    expected = sat.sample(slant_range_m(cfg.satellite.altitude_m, 45.0), 45.0).rate_mbps
    assert model.satellite_rate_bps(1) == pytest.approx(expected * 1e6)


@pytest.mark.parametrize("spec", [RateSpec(gap_db=3.0), RateSpec(gap_db=0.0, efficiency=0.8),
                                  RateSpec(max_rate_mbps=30.0),
                                  RateSpec(method="mcs", table="802.11ac")])
def test_shared_band_equals_the_db_formula(spec: RateSpec) -> None:
    snr = np.array([-5.0, 3.0, 12.0, 25.0, 40.0])
    n = np.array([1, 2, 3, 5, 0])
    band = SharedBand(spec, 10e6, max_users=5)
    full = np.maximum(n, 1)
    expected = link_rate_bps(snr + 10 * np.log10(full), 10e6 / full, spec)
    np.testing.assert_allclose(band.rate(band.prepare(snr), n), expected, rtol=1e-12)
    one = build_channel({"model": "a2g", "rate": spec.model_dump(), "bandwidth_hz": 10e6})
    assert link_rate_bps(np.array([12.0]), 10e6, spec)[0] == pytest.approx(
        one.link.quality(12.0).rate_mbps * 1e6)


def test_flight_energy_is_the_power_model() -> None:
    power = PowerModel()
    table = PropulsionTable(20.0, power)
    slot = table.slot_energy_j(2.0)
    for speed, climb in [(0.0, 0.0), (4.03, 0.0), (7.3, 1.0), (12.0, -2.0), (17.0, 3.0)]:
        watts = power.propulsion_w(speed, climb) + power.avionics_w
        assert table.flight_w(np.array([speed]), np.array([climb]))[0] == pytest.approx(
            watts, abs=1e-3)
        assert slot(np.array([2.0 * speed]), np.array([2.0 * climb]))[0] == pytest.approx(
            2.0 * watts, abs=2e-3)


def test_hand_computed_delays_of_every_mode() -> None:
    cfg = small(cloud={"wan_rtt_s": 0.04, "backhaul_bps": 8e6})
    model = OffloadModel(cfg, seed=0)
    bits, cycles = 1e6, 5e8
    up = build_channel(cfg.uav.link).sample(100.0, 90.0).rate_mbps * 1e6
    prop = 100.0 / SPEED_OF_LIGHT_M_S
    sat_range = slant_range_m(cfg.satellite.altitude_m, 60.0)
    sat_rate = build_channel(cfg.satellite.link).sample(sat_range, 60.0).rate_mbps * 1e6
    expected = {
        0: cycles / cfg.users.cpu_hz,
        1: bits / up + 2 * prop + cycles / cfg.uav.cpu_hz,
        2: bits / sat_rate + 2 * sat_range / SPEED_OF_LIGHT_M_S + cycles / cfg.satellite.cpu_hz,
        3: bits / up + bits / 8e6 + 2 * prop + 0.04 + cycles / cfg.cloud.cpu_hz,
    }
    for mode, delay in expected.items():
        model.reset(0)
        overhead(model, bits, cycles)
        predicted = model.mode_delays(0)[mode]
        metrics, info = model.step(Decision(np.array([mode]), np.ones(1), hover(model)))
        assert info["delay_s"][0] == pytest.approx(delay, rel=1e-9)
        assert predicted == pytest.approx(delay, rel=1e-9)
        assert metrics["admitted"] == 1 and metrics["mean_delay_s"] == pytest.approx(delay)


def test_backlog_carries_over_and_delays_the_next_task() -> None:
    cfg = small()
    model = OffloadModel(cfg, seed=0)
    cycles = 1.5 * cfg.uav.cpu_hz  # 1.5 s of UAV CPU in 1 s slots
    overhead(model, 1e5, cycles)
    go = Decision(np.array([1]), np.ones(1), hover(model))
    _, first = model.step(go)
    end = first["delay_s"][0] - 100.0 / SPEED_OF_LIGHT_M_S  # computing ends here
    assert model.busy_s[0] == pytest.approx(end - cfg.slot_s)
    assert model.backlog_cycles[0] == pytest.approx((end - cfg.slot_s) * cfg.uav.cpu_hz)
    overhead(model, 1e5, cycles)
    _, second = model.step(go)
    assert second["delay_s"][0] == pytest.approx(
        end - cfg.slot_s + cycles / cfg.uav.cpu_hz + 100.0 / SPEED_OF_LIGHT_M_S)


def test_cpu_shares_split_a_node_and_a_zero_share_starves() -> None:
    cfg = small(n_users=2)
    model = OffloadModel(cfg, seed=0)
    c = 1e9

    def serve(shares: list[float]) -> dict:
        model.reset(0)
        model.set_positions([[100.0, 100.0], [100.0, 100.0]], [[100.0, 100.0, 100.0]])
        model.set_tasks([1e3, 1e3], [c, c], [5.0, 5.0])
        return model.step(Decision(np.array([1, 1]), np.array(shares), hover(model)))[1]

    equal = serve([0.5, 0.5])
    assert equal["delay_s"][0] == pytest.approx(equal["delay_s"][1])
    assert equal["delay_s"][0] > 2 * c / cfg.uav.cpu_hz  # each at half the CPU
    skewed = serve([0.75, 0.25])
    assert skewed["delay_s"][1] == pytest.approx(
        skewed["delay_s"][0] + c / cfg.uav.cpu_hz * (4 - 4 / 3), rel=1e-6)
    starved = serve([1.0, 0.0])
    assert starved["admitted"].tolist() == [True, False]


# ----------------------------------------------------------------------------- invariants
def run(model: OffloadModel, policy, steps: int) -> list[dict[str, float]]:
    return [model.step(policy(model))[0] for _ in range(steps)]


def test_same_seed_same_trajectory_other_seed_differs() -> None:
    cfg = OffloadConfig.default().model_copy(update={"users": OffloadConfig.default().users
                                                     .model_copy(update={"mobility": "waypoint"})})

    def trajectory(seed: int) -> tuple[list[dict[str, float]], np.ndarray]:
        model = OffloadModel(cfg, seed)
        return run(model, RandomPolicy(7), 60), model.uav_xyz.copy()

    a, b, c = trajectory(1), trajectory(1), trajectory(2)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert a[0] != c[0]


@pytest.mark.parametrize("preset", ["default", "large", "poisson-waypoint"])
def test_invariants_under_random_control(preset: str) -> None:
    if preset == "poisson-waypoint":
        cfg = OffloadConfig.model_validate({"users": {"mobility": "waypoint"},
                                            "tasks": {"arrival": "poisson", "arrival_rate": 1.2}})
    else:
        cfg = getattr(OffloadConfig, preset)()
    model = OffloadModel(cfg, seed=5)
    policy = RandomPolicy(3)
    lo = np.array([0.0, 0.0, cfg.uav.altitude_m[0]])
    hi = np.array([cfg.area_m, cfg.area_m, cfg.uav.altitude_m[1]])
    battery = model.battery_j.copy()
    for _ in range(120):
        waiting = model.counters.waiting
        metrics, info = model.step(policy(model))
        counters = model.counters
        assert counters.generated == (counters.waiting + counters.dropped + counters.completed
                                      + counters.in_flight)
        assert counters.admitted == counters.completed + counters.in_flight
        assert metrics["tasks"] == waiting == metrics["admitted"] + metrics["dropped"]
        assert 0.0 <= metrics["deadline_ratio"] <= 1.0
        assert 0.0 < metrics["load_balance"] <= 1.0 + 1e-12
        assert np.all(info["uav_energy_j"] >= 0.0) and np.all(model.battery_j >= 0.0)
        assert np.all(model.battery_j <= battery)
        battery = model.battery_j.copy()
        assert np.all(model.busy_s >= 0.0)
        ok = info["admitted"]
        assert np.all(info["delay_s"][ok] <= info["deadline_s"][ok])
        assert np.all((model.uav_xyz >= lo - 1e-9) & (model.uav_xyz <= hi + 1e-9))
        assert np.all((model.user_xy >= 0.0) & (model.user_xy <= cfg.area_m))


def test_empty_batteries_clip_at_zero_and_stop_service() -> None:
    cfg = OffloadConfig.model_validate({"uav": {"battery_wh": 0.2}})  # 720 J: ~4 slots
    model = OffloadModel(cfg, seed=1)
    for _ in range(6):
        metrics, _ = model.step(nearest_uav(model))
        assert np.all(model.battery_j >= 0.0) and metrics["uav_energy_j"] >= 0.0
    assert not model.alive.any() and np.all(model.battery_j == 0.0)
    xyz = model.uav_xyz.copy()
    metrics, _ = model.step(Decision(np.full(cfg.n_users, 1), np.ones(cfg.n_users),
                                     np.full((cfg.n_uavs, 3), 5.0)))
    assert metrics["admitted"] == 0 and metrics["uav_energy_j"] == 0.0
    assert np.array_equal(model.uav_xyz, xyz)  # a dead UAV does not move
    assert np.isinf(model.mode_delays(0)[1:cfg.n_uavs + 1]).all()
    assert np.isinf(model.mode_delays(0)[model.modes.cloud])  # no relay to the cloud


def test_bad_decisions_are_rejected() -> None:
    model = OffloadModel(OffloadConfig.default())
    u, k = model.n_users, model.n_uavs
    with pytest.raises(ValueError):
        model.step(Decision(np.full(u, k + 3), np.ones(u), hover(model)))
    with pytest.raises(ValueError):
        model.step(Decision(np.full(u, -1), np.ones(u), hover(model)))


# ----------------------------------------------------------------------------- baselines
def test_local_only_never_touches_a_server() -> None:
    model = OffloadModel(OffloadConfig.default(), seed=2)
    for _ in range(50):
        _, info = model.step(local_only(model))
        assert info["mode_counts"][1:].sum() == 0
        assert np.all(info["server_cycles"] == 0.0)
        assert np.all(model.backlog_cycles == 0.0)


def test_all_to_cloud_sends_everything_to_the_cloud() -> None:
    model = OffloadModel(OffloadConfig.default(), seed=2)
    cloud = model.modes.cloud
    for _ in range(50):
        tasks = model.counters.waiting
        _, info = model.step(all_to_cloud(model))
        assert info["mode_counts"][cloud] == tasks
        assert info["server_cycles"][:cloud - 1].sum() == 0.0  # UAVs and satellite idle
        assert np.all(model.backlog_cycles[:-1] == 0.0)


def test_nearest_uav_uses_the_nearest_uav() -> None:
    model = OffloadModel(OffloadConfig.default(), seed=4)
    decision = nearest_uav(model)
    np.testing.assert_array_equal(decision.mode - 1, model.distance_m.argmin(axis=1))


def test_greedy_picks_the_obviously_fastest_option() -> None:
    slow = 1e6
    fast_uav = OffloadConfig.model_validate({
        "users": {"cpu_hz": slow}, "satellite": {"cpu_hz": slow}, "cloud": {"cpu_hz": slow},
        "uav": {"cpu_hz": 1e11}})
    model = OffloadModel(fast_uav, seed=6)
    decision = greedy_delay(model)
    active = model.task_active
    assert np.all((decision.mode[active] >= 1) & (decision.mode[active] <= model.n_uavs))
    metrics, _ = model.step(decision)
    assert metrics["deadline_ratio"] == 1.0

    fast_cloud = OffloadConfig.model_validate({
        "users": {"cpu_hz": slow}, "satellite": {"cpu_hz": slow}, "uav": {"cpu_hz": slow},
        "cloud": {"cpu_hz": 1e12, "backhaul_bps": 1e10}})
    model = OffloadModel(fast_cloud, seed=6)
    decision = greedy_delay(model)
    assert np.all(decision.mode[model.task_active] == model.modes.cloud)
    first = int(np.flatnonzero(model.task_active)[np.argmin(
        model.task_deadline_s[model.task_active])])
    assert decision.mode[first] == np.argmin(model.mode_delays(first, Contention.empty(4)))


def test_evaluate_reports_the_paper_figures() -> None:
    cfg = OffloadConfig.model_validate({"episode_slots": 25})
    results = {name: evaluate(make(), cfg, seed=0, episodes=2) for name, make in BASELINES.items()}
    for r in results.values():
        assert set(r) >= {"mean_delay_s", "deadline_ratio", "profit", "uav_energy_j",
                          "load_balance"}
        assert 0.0 <= r["deadline_ratio"] <= 1.0 and 0.0 < r["load_balance"] <= 1.0
    assert results["local_only"]["load_balance"] == 1.0
    greedy = results["greedy_delay"]
    assert all(greedy["deadline_ratio"] >= r["deadline_ratio"] for r in results.values())
    assert all(greedy["profit"] >= r["profit"] for r in results.values())


# ----------------------------------------------------------------------------- clustering
def test_kmeans_matches_a_hand_checked_clustering() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0],
                       [10.0, 10.0], [11.0, 10.0], [10.0, 11.0], [10.4, 10.4]])
    for seed in range(5):
        result = kmeans_clusters(points, 2, seed=seed)
        assert result.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
        np.testing.assert_allclose(result.centroids, [[1 / 3, 1 / 3], [10.35, 10.35]])
        assert result.heads.tolist() == [0, 6]  # the members nearest their centroids
    one = kmeans_clusters(points, 1)
    assert one.labels.tolist() == [0] * 7 and one.heads.tolist() == [3]  # (10, 10)
    assert kmeans_clusters(points, 7).labels.tolist() == list(range(7))
    with pytest.raises(ValueError):
        kmeans_clusters(points, 8)


def test_jain_index() -> None:
    assert jain_index(np.ones(4)) == pytest.approx(1.0)
    assert jain_index(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(0.25)
    assert jain_index(np.zeros(3)) == 1.0


# ----------------------------------------------------------------------------- envs
@pytest.mark.parametrize("encoding", ["argmax", "bin"])
def test_action_codec_round_trip(encoding: str) -> None:
    cfg = OffloadConfig.default()
    codec = ActionCodec(cfg, encoding)
    rng = np.random.default_rng(0)
    decision = Decision(rng.integers(0, cfg.n_uavs + 3, cfg.n_users), rng.random(cfg.n_users),
                        rng.uniform(-3.0, 3.0, (cfg.n_uavs, 3)))
    action = codec.encode(decision)
    assert action.shape == (codec.size,) and np.all(np.abs(action) <= 1.0)
    back = codec.decode(action)
    np.testing.assert_array_equal(back.mode, decision.mode)
    np.testing.assert_allclose(back.share, decision.share, atol=1e-6)
    np.testing.assert_allclose(back.velocity, decision.velocity, atol=1e-5)
    joint = np.stack([np.concatenate([action[:codec.mode_size + cfg.n_users],
                                      action[codec.mode_size + cfg.n_users:][3 * k:3 * k + 3]])
                      for k in range(cfg.n_uavs)])
    split = codec.decode_joint(joint, rng.integers(0, cfg.n_uavs, cfg.n_users))
    np.testing.assert_array_equal(split.mode, decision.mode)
    np.testing.assert_allclose(split.velocity, decision.velocity, atol=1e-5)


@pytest.mark.parametrize(("objective", "encoding"), [("profit", "argmax"), ("delay", "bin")])
def test_gymnasium_env_passes_check_env(objective: str, encoding: str) -> None:
    from gymnasium.utils.env_checker import check_env

    env = OffloadEnv(objective=objective, mode_encoding=encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)  # no render modes to check
    obs, _ = env.reset(seed=11)
    again, _ = env.reset(seed=11)
    np.testing.assert_array_equal(obs, again)
    action = env.action_space.sample()
    a = env.step(action)
    env.reset(seed=11)
    b = env.step(action)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and env.observation_space.contains(a[0])


@pytest.mark.parametrize("association", ["cluster", "nearest"])
def test_pettingzoo_env_passes_parallel_api_test(association: str) -> None:
    from pettingzoo.test import parallel_api_test

    cfg = OffloadConfig.model_validate({"episode_slots": 40, "recluster_every": 5})
    env = OffloadParallelEnv(cfg, association=association, local_weight=0.5)
    parallel_api_test(env, num_cycles=100)
    obs, _ = env.reset(seed=3)
    heads = env.clustering.heads
    if association == "cluster":
        assert set(env.responsible.tolist()) <= set(heads.tolist())
    else:
        np.testing.assert_array_equal(env.responsible, env.model.nearest_uav)
    mask = np.stack([obs[a][-cfg.n_users:] for a in env.agents])
    np.testing.assert_array_equal(mask.sum(axis=0), np.ones(cfg.n_users))  # one decider each
    actions = {a: env.action_space(a).sample() for a in env.agents}
    _, rewards, _, truncations, _ = env.step(actions)
    assert len(set(rewards.values())) > 1  # the local terms differ
    shared = OffloadParallelEnv(cfg, association=association)
    shared.reset(seed=3)
    _, rewards, _, _, infos = shared.step(actions)
    assert len(set(rewards.values())) == 1
    assert rewards["uav_0"] == pytest.approx(infos["uav_0"]["profit"])
    assert not any(truncations.values())


_THROUGHPUT = """
import sys, time
import numpy as np
from controllers.offload.envs import OffloadEnv, OffloadParallelEnv

def best_rate(step, n, rounds=3):
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            step(i)
        best = max(best, n / (time.perf_counter() - start))
    return best

env = OffloadEnv()
env.reset(seed=0)
acts = np.random.default_rng(0).uniform(-1, 1, (64, env.action_space.shape[0])).astype(np.float32)

def single(i):
    if env.step(acts[i & 63])[3]:
        env.reset()

par = OffloadParallelEnv()
par.reset(seed=0)
joint = [{a: par.action_space(a).sample() for a in par.possible_agents} for _ in range(64)]

def parallel(i):
    par.step(joint[i & 63])
    if not par.agents:
        par.reset()

print(best_rate(single, 2000), best_rate(parallel, 1000))
"""


def test_env_throughput_default_preset() -> None:
    # a fresh interpreter: the test process may carry state that slows Python down (a
    # tracemalloc session left running, threads), which says nothing about the env
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _THROUGHPUT], cwd=root, capture_output=True,
                          text=True, timeout=120, check=True)
    single, parallel = (float(x) for x in done.stdout.split())
    print(f"\nOffloadEnv default preset: {single:.0f} steps/s; "
          f"OffloadParallelEnv: {parallel:.0f} steps/s")
    assert single >= 2000.0 and parallel >= 1000.0
