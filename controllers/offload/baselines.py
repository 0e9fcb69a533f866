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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

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
