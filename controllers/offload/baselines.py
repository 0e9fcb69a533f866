"""Reference policies on the structured decision, and the evaluation every controller reports.

A policy maps the model's current state (tasks, backlogs, rates, positions - everything a
centralised controller could know at the slot start) to a `Decision`.  The heuristics hover
their UAVs (velocity 0): they isolate the offloading choice, and hovering is the cheapest way
to fly (see energy.py).  Offloading heuristics give CPU shares proportional to cycles, under
which a node's batch finishes together and no share is wasted.

* random - uniform modes, shares and velocities (its own seeded generator).
* local_only - every task on its user's CPU.
* all_to_cloud - every task to the cloud via the nearest UAV.
* nearest_uav - every task to the nearest live UAV.
* greedy_delay - tasks in order of deadline, each to the mode of least predicted delay given
  the backlogs, the rates and what earlier tasks of the slot already claimed
  (`OffloadModel.mode_delays`).

`evaluate` runs whole episodes and returns the figures the papers compare on.

`PAPER_BASELINES` adds the heuristics the paper presets (`OffloadConfig.muecrs_paper`,
`cmaddpg_paper`; docs/offload-papers.md) are checked against.  The papers' baseline sections
could not be read here (only their abstracts and system-model outlines), so these are the
comparison schemes their setting calls for, named by what they do, not by the papers:

* random_offload - each task to a uniformly random *available* mode (a disabled satellite or
  cloud is never picked, unlike `random`), cycle shares, hovering: "random offloading".
* fixed_circle - greedy least-delay offloading, but the UAVs fly a fixed circle around the
  area's centre (evenly phased): trajectory not optimised - what a trajectory-learning method
  (MUECRS) must beat to show its trajectories matter.
* all_to_satellite - every task to the satellite (a SAGIN's space-only scheme).
* greedy_coverage - `greedy_delay`'s offloading with UAVs that fly to the K-means centres of
  the users (each UAV to the nearest free centre): the strongest centralised heuristic we have
  when trajectories matter (e.g. UAVs launched from one corner).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from controllers.offload.clustering import kmeans_clusters
from controllers.offload.config import OffloadConfig
from controllers.offload.model import (
    Contention,
    Decision,
    FloatArray,
    IntArray,
    OffloadModel,
    jain_index,
)

Policy = Callable[[OffloadModel], Decision]


def _hover(model: OffloadModel) -> FloatArray:
    return np.zeros((model.n_uavs, 3))


def velocity_limits(model: OffloadModel) -> FloatArray:
    """(3,) the UAVs' speed limits east, north, up (m/s)."""
    uav = model.config.uav
    return np.array([uav.max_speed_m_s, uav.max_speed_m_s, uav.max_vertical_speed_m_s])


def cycle_shares(model: OffloadModel) -> FloatArray:
    """Shares proportional to each task's cycles, scaled into [0, 1]: a node's batch finishes
    together, nothing is wasted and the makespan (so the deadline risk) is minimal - the
    closed-form resource assignment every controller here uses."""
    cycles = model.task_cycles
    top = float(cycles.max())
    return cycles / top if top > 0 else np.ones_like(cycles)


class RandomPolicy:
    """Uniformly random modes, shares in [0, 1] and velocities within the flight limits."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def __call__(self, model: OffloadModel) -> Decision:
        rng = self._rng
        return Decision(rng.integers(0, model.modes.count, model.n_users),
                        rng.random(model.n_users),
                        rng.uniform(-1.0, 1.0, (model.n_uavs, 3)) * velocity_limits(model))


def local_only(model: OffloadModel) -> Decision:
    """Never offload."""
    return Decision(np.zeros(model.n_users, dtype=np.int64), np.ones(model.n_users),
                    _hover(model))


def all_to_cloud(model: OffloadModel) -> Decision:
    """Offload everything to the cloud."""
    return Decision(np.full(model.n_users, model.modes.cloud), cycle_shares(model),
                    _hover(model))


def nearest_uav(model: OffloadModel) -> Decision:
    """Offload everything to the nearest live UAV."""
    return Decision(1 + model.nearest_uav, cycle_shares(model), _hover(model))


def assign_by_deadline(model: OffloadModel, choose: Callable[[int, FloatArray], int],
                       decider: npt.NDArray[np.int64] | None = None,
                       only: npt.NDArray[np.bool_] | None = None) -> tuple[IntArray, FloatArray]:
    """Assign the slot's tasks one by one, tightest deadline first: `choose(user, delays)`
    picks a mode from the (K+3,) delays `OffloadModel.mode_delays` predicts given what the same
    decider already assigned this slot.  `decider` (U,): who decides for each user, each knowing
    only its own assignments (None: one decider for all); `only`: the users to assign.
    Returns the modes (0 for users not assigned) and each assigned task's predicted delay
    (nan for the others).  The greedy heuristic, MUECRS and the CMADDPG cluster heads all
    decode this way; they differ in `choose`."""
    mode = np.zeros(model.n_users, dtype=np.int64)
    delay = np.full(model.n_users, np.nan)
    active = model.task_active if only is None else model.task_active & only
    users = np.flatnonzero(active)
    claimed: dict[int, Contention] = {}
    for i in users[np.argsort(model.task_deadline_s[users], kind="stable")]:
        mine = claimed.setdefault(0 if decider is None else int(decider[i]),
                                  Contention.empty(model.n_uavs))
        d = model.mode_delays(int(i), mine)
        best = choose(int(i), d)
        mode[i] = best
        delay[i] = d[best]
        mine.claim(model, int(i), best)
    return mode, delay


def greedy_delay(model: OffloadModel) -> Decision:
    """Least predicted delay per task, tightest deadline first, contention accounted."""
    mode, _ = assign_by_deadline(model, lambda _, d: int(np.argmin(d)))
    return Decision(mode, cycle_shares(model), _hover(model))


def _available_modes(model: OffloadModel) -> npt.NDArray[np.bool_]:
    """(U, K+3) modes whose node is up, from the contention-free delay table (inf = down)."""
    return np.isfinite(model.delay_table())


class RandomOffload:
    """Each task to a uniformly random available mode; cycle shares; hovering."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def __call__(self, model: OffloadModel) -> Decision:
        ok = _available_modes(model)
        pick = self._rng.random(ok.shape) * ok  # unavailable modes score 0, never the max
        return Decision(pick.argmax(axis=1).astype(np.int64), cycle_shares(model), _hover(model))


def all_to_satellite(model: OffloadModel) -> Decision:
    """Offload everything to the satellite."""
    return Decision(np.full(model.n_users, model.modes.satellite), cycle_shares(model),
                    _hover(model))


def _fly_to(model: OffloadModel, target_xy: FloatArray) -> FloatArray:
    """(K, 3) velocities that take each UAV straight towards its (K, 2) target within the
    slot, at most at full speed (the model clips it), keeping the height."""
    delta = target_xy - model.uav_xyz[:, :2]
    v = np.zeros((model.n_uavs, 3))
    v[:, :2] = delta / model.config.slot_s
    return v


def circle_targets(model: OffloadModel, radius_frac: float = 0.3,
                   speed_frac: float = 0.5) -> FloatArray:
    """(K, 2) where each UAV is due on a fixed circle around the area's centre (radius
    radius_frac x side, flown at speed_frac of the top speed so a UAV that is on it keeps up,
    UAVs evenly phased)."""
    cfg = model.config
    area = cfg.area_m
    turn_s = 2 * np.pi * radius_frac * area / (speed_frac * cfg.uav.max_speed_m_s)
    phase = 2 * np.pi * (model.t * cfg.slot_s / turn_s + np.arange(model.n_uavs) / model.n_uavs)
    return area / 2 + radius_frac * area * np.stack([np.cos(phase), np.sin(phase)], axis=1)


def fixed_circle(model: OffloadModel) -> Decision:
    """Greedy least-delay offloading; the UAVs follow a fixed circular trajectory."""
    mode, _ = assign_by_deadline(model, lambda _, d: int(np.argmin(d)))
    return Decision(mode, cycle_shares(model), _fly_to(model, circle_targets(model)))


def coverage_targets(model: OffloadModel) -> FloatArray:
    """(K, 2) K-means centres of the users' positions, matched to the UAVs greedily by
    distance (closest pair first), so every UAV heads for a different group of users."""
    centres = kmeans_clusters(model.user_xy, min(model.n_uavs, model.n_users)).centroids
    dist = np.hypot(*(model.uav_xyz[:, None, :2] - centres[None]).transpose(2, 0, 1))
    targets = model.uav_xyz[:, :2].copy()  # a UAV left without a centre stays
    for _ in range(len(centres)):
        k, c = np.unravel_index(np.argmin(dist), dist.shape)
        targets[k] = centres[c]
        dist[k, :] = dist[:, c] = np.inf
    return targets


def greedy_coverage(model: OffloadModel) -> Decision:
    """`greedy_delay`'s offloading; the UAVs fly to the K-means centres of the users."""
    mode, _ = assign_by_deadline(model, lambda _, d: int(np.argmin(d)))
    return Decision(mode, cycle_shares(model), _fly_to(model, coverage_targets(model)))


PAPER_BASELINES: dict[str, Callable[[], Policy]] = {
    "random_offload": RandomOffload,
    "fixed_circle": lambda: fixed_circle,
    "all_to_satellite": lambda: all_to_satellite,
    "greedy_coverage": lambda: greedy_coverage,
}

BASELINES: dict[str, Callable[[], Policy]] = {
    "random": RandomPolicy,
    "local_only": lambda: local_only,
    "all_to_cloud": lambda: all_to_cloud,
    "nearest_uav": lambda: nearest_uav,
    "greedy_delay": lambda: greedy_delay,
}


def evaluate(policy: Policy, config: OffloadConfig, seed: int = 0,
             episodes: int = 1) -> dict[str, float]:
    """Run `episodes` full episodes (seeds seed, seed+1, ...) and average their figures.

    mean_delay_s: over served tasks; mean_effective_delay_s: over all tasks, a dropped one
    counting deadline + drop penalty; deadline_ratio: served / generated-and-decided; profit
    and uav_energy_j: episode totals; load_balance: Jain's index of the episode's cycles per
    UAV (1 when no UAV got work).
    """
    model = OffloadModel(config, seed)
    keys = ("profit", "uav_energy_j", "tasks", "admitted", "delay_sum_s",
            "effective_delay_sum_s")
    totals = dict.fromkeys(keys, 0.0)
    jains = []
    for episode in range(episodes):
        model.reset(seed + episode)
        load = np.zeros(config.n_uavs)
        while not model.done:
            metrics, info = model.step(policy(model))
            for key in keys:
                totals[key] += metrics[key]
            load += info["server_cycles"][:config.n_uavs]
        jains.append(jain_index(load))
    tasks, admitted = totals["tasks"], totals["admitted"]
    return {
        "mean_delay_s": totals["delay_sum_s"] / admitted if admitted else 0.0,
        "mean_effective_delay_s": totals["effective_delay_sum_s"] / tasks if tasks else 0.0,
        "deadline_ratio": admitted / tasks if tasks else 1.0,
        "profit": totals["profit"] / episodes,
        "uav_energy_j": totals["uav_energy_j"] / episodes,
        "load_balance": float(np.mean(jains)),
    }
