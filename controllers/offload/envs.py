"""Gymnasium and PettingZoo faces of the offloading model, for single- and multi-agent RL.

`OffloadEnv` (gymnasium.Env): one central controller decides every user's mode and CPU share
and every UAV's velocity - the MUECRS setting.  `OffloadParallelEnv` (pettingzoo
ParallelEnv): one agent per UAV - the CMADDPG setting.  Each agent flies itself; the offloading
of a user's task is decided by the agent responsible for the user: its nearest UAV
(association "nearest"), or the cluster head of its nearest UAV's cluster (association
"cluster": the satellite re-clusters the UAVs with `kmeans_clusters` every `recluster_every`
slots, and heads decide for their members).

Observation and action vectors are described in controllers.offload.spaces.  A parallel agent
observes the global vector followed by its one-hot id (K), whether it is a cluster head (1) and
the mask of users it decides for (U).

Rewards.  objective "profit": the slot's CMADDPG-style profit (controllers.offload.model);
"delay": minus the slot's mean effective task delay (MUECRS minimises delay).  Parallel agents
share that reward; with local_weight > 0 each adds local_weight times its own part: revenue of
the tasks it decided that were served minus their delay cost, minus its energy and queue cost
(profit), or minus its users' share of the mean effective delay (delay).

Episodes end by truncation after `episode_slots` slots; nothing terminates them early.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from pettingzoo import ParallelEnv

from controllers.offload.clustering import Clustering, kmeans_clusters
from controllers.offload.config import OffloadConfig
from controllers.offload.model import OffloadModel
from controllers.offload.spaces import ActionCodec, ModeEncoding, Observer

Objective = Literal["profit", "delay"]
Association = Literal["cluster", "nearest"]
_SEED_BOUND = 2**63 - 1


def _reward(metrics: dict[str, float], objective: Objective) -> float:
    return metrics["profit"] if objective == "profit" else -metrics["mean_effective_delay_s"]


class OffloadEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.float32]]):
    """Central controller; info is the model's per-slot metrics dict."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, config: OffloadConfig | None = None, *, objective: Objective = "profit",
                 mode_encoding: ModeEncoding = "argmax", render_mode: None = None) -> None:
        if objective not in ("profit", "delay"):
            raise ValueError(f"unknown objective {objective!r}")
        self.config = config or OffloadConfig.default()
        self.objective = objective
        self.render_mode = render_mode
        self.model = OffloadModel(self.config)
        self.observer = Observer(self.config)
        self.codec = ActionCodec(self.config, mode_encoding)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.observer.size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.codec.size,), np.float32)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[npt.NDArray[np.float32], dict]:
        super().reset(seed=seed)
        self.model.reset(int(self.np_random.integers(_SEED_BOUND)))
        return self.observer(self.model), {}

    def step(self, action: npt.NDArray[np.float32]
             ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, float]]:
        metrics, _ = self.model.step(self.codec.decode(action))
        truncated = self.model.t >= self.config.episode_slots
        reward = _reward(metrics, self.objective)
        return self.observer(self.model), reward, False, truncated, metrics


class OffloadParallelEnv(ParallelEnv[str, npt.NDArray[np.float32], npt.NDArray[np.float32]]):
    """One agent per UAV; infos carry the shared per-slot metrics dict."""

    metadata: dict[str, Any] = {"name": "sagin_offload_v0", "render_modes": [],
                                "is_parallelizable": True}

    def __init__(self, config: OffloadConfig | None = None, *,
                 association: Association = "cluster", objective: Objective = "profit",
                 local_weight: float = 0.0, mode_encoding: ModeEncoding = "argmax",
                 render_mode: None = None) -> None:
        if association not in ("cluster", "nearest") or objective not in ("profit", "delay"):
            raise ValueError(f"unknown association {association!r} or objective {objective!r}")
        self.config = cfg = config or OffloadConfig.default()
        self.association = association
        self.objective = objective
        self.local_weight = local_weight
        self.render_mode = render_mode
        self.model = OffloadModel(cfg)
        self.observer = Observer(cfg)
        self.codec = ActionCodec(cfg, mode_encoding)
        k, u = cfg.n_uavs, cfg.n_users
        self.possible_agents = [f"uav_{i}" for i in range(k)]
        self.agents: list[str] = []
        n = self.observer.size
        obs_box = gym.spaces.Box(0.0, 1.0, (n + k + 1 + u,), np.float32)
        act_box = gym.spaces.Box(-1.0, 1.0, (self.codec.agent_size,), np.float32)
        self._obs_spaces = {a: obs_box for a in self.possible_agents}
        self._act_spaces = {a: act_box for a in self.possible_agents}
        self._obs = np.zeros((k, n + k + 1 + u), dtype=np.float32)
        self._obs[:, n:n + k] = np.eye(k, dtype=np.float32)
        self._uav_ids = np.arange(k)[:, None]
        self._zero_action = np.zeros(self.codec.agent_size, dtype=np.float32)
        self._rng = np.random.default_rng()
        self._cluster_seed = 0
        self.clustering: Clustering = kmeans_clusters(self.model.uav_xyz[:, :2], cfg.n_clusters)
        self.responsible = self.model.nearest_uav

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Box:
        return self._act_spaces[agent]

    def state(self) -> npt.NDArray[np.float32]:
        """The global observation, for centralised critics."""
        return self.observer(self.model)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.model.reset(int(self._rng.integers(_SEED_BOUND)))
        self._cluster_seed = int(self._rng.integers(_SEED_BOUND // 2))
        self.agents = self.possible_agents[:]
        self._recluster()
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, npt.NDArray[np.float32]]) -> tuple[
            dict[str, npt.NDArray[np.float32]], dict[str, float], dict[str, bool],
            dict[str, bool], dict[str, dict]]:
        joint = np.stack([actions.get(a, self._zero_action) for a in self.possible_agents])
        decided_by = self.responsible
        metrics, info = self.model.step(self.codec.decode_joint(joint, decided_by))
        shared = _reward(metrics, self.objective)
        reward = np.full(len(self.possible_agents), shared)
        if self.local_weight:
            reward += self.local_weight * self._local_terms(metrics, info, decided_by)
        if self.model.t % self.config.recluster_every == 0:
            self._recluster()
        else:
            self._associate()
        done = self.model.t >= self.config.episode_slots
        agents = self.agents
        obs = self._observe()
        rewards = dict(zip(agents, reward.tolist(), strict=True))
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, done)
        infos = dict.fromkeys(agents, metrics)
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    # ------------------------------------------------------------------------- internals
    def _recluster(self) -> None:
        """The satellite clusters the UAVs by horizontal position (CMADDPG)."""
        self.clustering = kmeans_clusters(self.model.uav_xyz[:, :2], self.config.n_clusters,
                                          seed=self._cluster_seed + self.model.t)
        self._obs[:, -self.config.n_users - 1] = 0.0
        self._obs[self.clustering.heads[self.clustering.heads >= 0],
                  -self.config.n_users - 1] = 1.0
        self._associate()

    def _associate(self) -> None:
        nearest = self.model.nearest_uav
        if self.association == "cluster":
            self.responsible = self.clustering.heads[self.clustering.labels[nearest]]
        else:
            self.responsible = nearest

    def _observe(self) -> dict[str, npt.NDArray[np.float32]]:
        n = self.observer.size
        obs = self._obs
        obs[:, :n] = self.observer(self.model)
        obs[:, n + self.config.n_uavs + 1:] = self.responsible == self._uav_ids
        rows = obs.copy()
        return {a: rows[i] for i, a in enumerate(self.agents)}

    def _local_terms(self, metrics: dict[str, float], info: dict[str, npt.NDArray],
                     decided_by: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Each agent's own part of the objective (see the module docstring)."""
        k = self.config.n_uavs
        w = self.config.profit
        effective = np.where(info["admitted"], info["delay_s"],
                             info["deadline_s"] + w.drop_penalty_s) * info["active"]
        delay = np.bincount(decided_by, weights=effective, minlength=k)
        if self.objective == "delay":
            return -delay / max(metrics["tasks"], 1.0)
        served = np.bincount(decided_by, weights=info["admitted"], minlength=k)
        busy = self.model.busy_s[:k]
        return (w.revenue_per_task * served - w.delay_weight * delay
                - w.energy_weight * info["uav_energy_j"] - w.queue_weight * busy)
