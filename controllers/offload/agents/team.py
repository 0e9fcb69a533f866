"""CMADDPG (arXiv 2412.10700) and plain MADDPG: one agent per UAV, trained centrally,
executed by each UAV on its own observation.

CMADDPG.  The satellite, which sees every UAV, clusters them with K-means
(`clustering.kmeans_clusters`) every `recluster_every` slots; in between, clusters are
maintained locally as the UAVs fly - each UAV joins the cluster whose centroid is nearest and
the centroids follow their members, a cluster that loses its head picks the member nearest its
centroid.  The cluster head (CH) decides the offloading of every user whose nearest UAV is in
its cluster.  Training is centralised (MADDPG critics that see every agent's
observation and action - "at the satellite"), execution decentralised (each actor reads only
its own observation).

MADDPG (the baseline without clustering): the same agents, but every UAV decides for the users
nearest to it.

Agent observation: features.uav_features of the UAV, then whether it decides for anyone this
slot, the share of the slot's tasks it decides, and the mean contention-free delay ratio of
those tasks per mode kind (best UAV, local, satellite, cloud).  Agent action, in [-1, 1]:
weights w over the pair features named in PREFERENCES (a bias per mode kind, and what the
analytic delay misses: cluster membership, contention, backlog, battery).  The UAVs hover, as
in the heuristics: CMADDPG schedules tasks, trajectories are MUECRS's subject; flying agents
(velocity in the action, gamma 0.9, profit reward) learned worse policies in our trials.
A deciding agent assigns its users' tasks one by one, tightest deadline first, each to the
mode of highest score

    score(i, m) = SCORE_GAIN * w . pair_features(i, m) - ratio(i, m)

(ratio: the analytic effective delay / deadline given the backlogs and the agent's own earlier
assignments of the slot, `OffloadModel.mode_delays`): zero weights mean "least analytic
delay"; the learned weights trade that against what the analytic delay misses and the profit
rewards - other deciders' simultaneous choices, load balance, queues, batteries.  An agent
never sees another agent's choices of the same slot: fewer deciders (clusters) means fewer
conflicts, the effect CMADDPG's clustering is for.  Shares follow `baselines.cycle_shares`.
Reward, shared by all agents: the slot's system profit (controllers.offload.model) minus the
profit the same slot would have paid had every decider used zero weights (computed on a copy
of the model) - a difference reward: the counterfactual depends on the state only, so it is an
unbiased baseline that removes the large slot-to-slot variance of the tasks drawn.  A slot's
assignment is paid for within the slot (admission is decided at once), hence gamma 0.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from controllers.offload.agents.base import effective_ratio
from controllers.offload.baselines import assign_by_deadline, cycle_shares
from controllers.offload.clustering import Clustering, kmeans_clusters
from controllers.offload.features import (
    PAIR_FEATURES,
    RATIO_CAP,
    UAV_FEATURES,
    delay_ratios,
    pair_features,
    uav_features,
)
from controllers.offload.learn.maddpg import MADDPG
from controllers.offload.learn.nets import LearnerConfig, shrink_output
from controllers.offload.model import Decision, OffloadModel

SCORE_GAIN = 0.25  # per feature, in ratio units: ratio differences are O(0.1-1)
EXTRA_OBS = ("decides", "task_share", "ratio_uav", "ratio_local", "ratio_satellite",
             "ratio_cloud")
# the pair features an agent weighs: a bias per mode kind and what the analytic delay misses
PREFERENCES = ("is_local", "is_satellite", "is_cloud", "in_cluster", "contention", "backlog",
               "battery")
_PREF_INDEX = [PAIR_FEATURES.index(p) for p in PREFERENCES]
OBS_SIZE = len(UAV_FEATURES) + len(EXTRA_OBS)
ACT_SIZE = len(PREFERENCES)


@dataclass(frozen=True)
class TeamConfig:
    """Hyper-parameters (assumed; MADDPG paper defaults in LearnerConfig)."""

    # gamma 0: a slot's assignment is paid for within the slot (admission is decided at once).
    # Warm-up explores around the untrained (zero-weight) policy, not uniformly over the box,
    # and the actors' pre-tanh outputs are regularised (0.02: with the reference code's 1e-3
    # half the actions still sat at the box edges and validation never beat the untrained
    # policy; see docs/offload-learning.md, where uniform warm-up and no regulariser left half
    # the actions saturated at +-1 within 1000 updates and validation fell from 1054 to 435).
    learner: LearnerConfig = field(default_factory=lambda: LearnerConfig(
        gamma=0.0, noise=0.2, warmup=1000, batch=256, actor_lr=3e-4, warmup_uniform=False,
        action_reg=0.02))
    reward_scale: float = 0.1  # profit per slot is O(10)
    # the preference weights are pref_scale x the actor's [-1, 1] output: a single weight of
    # magnitude 1 costs up to 1473 profit per episode on the default preset (is_satellite),
    # the useful ones lie within +-0.5 (contention -0.5: +212), so the box is that wide.
    # Checkpoints written before this field existed load with 1.0, their meaning then.
    pref_scale: float = 0.5


class ClusterState:
    """The satellite's clustering plus local maintenance between re-clusterings."""

    def __init__(self, n_clusters: int, every: int) -> None:
        self.n_clusters, self.every = n_clusters, every
        self.clustering: Clustering | None = None

    def update(self, xy: npt.NDArray[np.float64], t: int) -> Clustering:
        """The clusters for slot t, given the UAVs' horizontal positions (K, 2)."""
        if self.clustering is None or t % self.every == 0:
            self.clustering = kmeans_clusters(xy, self.n_clusters, seed=t)
            return self.clustering
        old = self.clustering
        d2 = ((xy[:, None, :] - old.centroids[None]) ** 2).sum(axis=-1)
        labels = d2.argmin(axis=1)
        centroids = old.centroids.copy()
        heads = old.heads.copy()
        for j in range(self.n_clusters):
            members = np.flatnonzero(labels == j)
            if not members.size:
                heads[j] = -1
                continue
            centroids[j] = xy[members].mean(axis=0)
            if heads[j] not in members:
                heads[j] = members[np.argmin(d2[members, j])]
        self.clustering = Clustering(labels, centroids, heads)
        return self.clustering


class TeamController:
    """CMADDPG (clustered=True) or MADDPG (clustered=False) for a fixed number of UAVs."""

    def __init__(self, n_uavs: int, n_clusters: int, recluster_every: int, clustered: bool,
                 cfg: TeamConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg = cfg or TeamConfig()
        self.clustered = clustered
        self.algo = "cmaddpg" if clustered else "maddpg"
        self.n_uavs = n_uavs
        self.team = MADDPG(n_uavs, OBS_SIZE, ACT_SIZE, cfg.learner, seed=seed)
        for actor in self.team.actors + self.team.actors_t:
            shrink_output(actor.net)  # start near w = 0, hovering: the analytic assignment
        self.clusters = ClusterState(n_clusters, recluster_every)
        self.pref_scale = cfg.pref_scale
        self._last: dict[str, Any] = {}

    @classmethod
    def for_model(cls, model: OffloadModel, clustered: bool, cfg: TeamConfig | None = None,
                  seed: int = 0) -> TeamController:
        c = model.config
        return cls(c.n_uavs, c.n_clusters, c.recluster_every, clustered, cfg, seed)

    def __call__(self, model: OffloadModel) -> Decision:
        return self.decide(model, explore=False)

    def responsible(self, model: OffloadModel) -> npt.NDArray[np.int64]:
        """(U,) the UAV that decides for each user this slot."""
        nearest = model.nearest_uav
        if not self.clustered:
            return nearest
        c = self.clusters.update(model.uav_xyz[:, :2], model.t)
        return c.heads[c.labels[nearest]]

    def observe(self, model: OffloadModel, resp: npt.NDArray[np.int64],
                ratio: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        k = model.n_uavs
        if k != self.n_uavs:
            raise ValueError(f"this {self.algo} team was trained for {self.n_uavs} UAVs, the "
                             f"model has {k}: train one for this configuration")
        obs = np.zeros((k, OBS_SIZE), dtype=np.float32)
        obs[:, :len(UAV_FEATURES)] = uav_features(model)
        active = model.task_active
        n = np.bincount(resp, weights=active, minlength=k)
        base = len(UAV_FEATURES)
        obs[:, base] = n > 0
        obs[:, base + 1] = n / max(float(np.count_nonzero(active)), 1.0)
        kinds = np.stack([ratio[:, 1:k + 1].min(axis=1), ratio[:, 0], ratio[:, k + 1],
                          ratio[:, k + 2]], axis=1) / RATIO_CAP
        for col in range(4):
            total = np.bincount(resp, weights=kinds[:, col] * active, minlength=k)
            obs[:, base + 2 + col] = np.where(n > 0, total / np.maximum(n, 1.0), 1.0)
        return obs

    def decide(self, model: OffloadModel, explore: bool = False) -> Decision:
        if model.t == 0 and not explore:
            self.clusters.clustering = None  # a new episode: the satellite clusters afresh
        resp = self.responsible(model)
        ratio = delay_ratios(model)
        obs = self.observe(model, resp, ratio)
        act = self.team.act(obs, explore)
        in_cluster = None
        if self.clustered:
            c = self.clusters.clustering
            assert c is not None
            in_cluster = c.labels[None, :] == c.labels[model.nearest_uav][:, None]
        feats = pair_features(model, ratio, in_cluster)
        # (U, M): the deciding agent's learned preference for each of its users' modes
        bias = SCORE_GAIN * self.pref_scale * np.einsum("ump,up->um", feats[:, :, _PREF_INDEX],
                                                        act[resp])
        mode, _ = self._modes(model, resp, bias)
        hover = np.zeros((model.n_uavs, 3))
        if explore:  # what the same slot would have paid with no preferences (see learn)
            twin = copy.deepcopy(model)
            plain, _ = self._modes(model, resp, np.zeros_like(bias))
            self._last = {"obs": obs, "act": act, "twin": twin,
                          "plain": Decision(plain, cycle_shares(model), hover)}
        return Decision(mode, cycle_shares(model), hover)

    def decide_as(self, model: OffloadModel, agent: int,
                  clustering: Clustering | None) -> tuple[npt.NDArray[np.int64],
                                                         npt.NDArray[np.float64]]:
        """What UAV `agent` decides on its own node: from its own actor and observation, the
        modes of the users it is responsible for under the satellite's `clustering` (ignored
        by MADDPG), with their predicted delays; -1 and nan for every other user.  The live
        cluster-head service (controllers.offload.live head) runs this."""
        if self.clustered:
            if clustering is None:
                raise ValueError("a cluster head needs the satellite's clustering")
            self.clusters.clustering = clustering
            resp = clustering.heads[clustering.labels[model.nearest_uav]]
            in_cluster = clustering.labels[None, :] == clustering.labels[model.nearest_uav][:, None]
        else:
            resp, in_cluster = model.nearest_uav, None
        ratio = delay_ratios(model)
        obs = self.observe(model, resp, ratio)[agent]
        with torch.no_grad():
            act = self.team.actors[agent](torch.as_tensor(obs)).numpy()
        feats = pair_features(model, ratio, in_cluster)
        bias = SCORE_GAIN * self.pref_scale * feats[:, :, _PREF_INDEX] @ act
        mine = resp == agent
        mode, delay = self._modes(model, resp, bias, mine)
        return np.where(mine, mode, -1), np.where(mine, delay, np.nan)

    @staticmethod
    def _modes(model: OffloadModel, resp: npt.NDArray[np.int64],
               bias: npt.NDArray[np.float64], only: npt.NDArray[np.bool_] | None = None
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Each decider assigns its own users, tightest deadline first, knowing only its own
        earlier assignments of the slot - not what the other deciders choose at the same time
        (decentralised execution: the conflicts clustering is meant to reduce).  Returns the
        modes and each task's analytic delay in its mode (for users in `only`, if given)."""
        penalty = model.config.profit.drop_penalty_s
        deadline = model.task_deadline_s

        def choose(i: int, d: npt.NDArray[np.float64]) -> int:
            return int(np.argmax(bias[i] - effective_ratio(d, deadline[i], d <= deadline[i],
                                                           penalty)))

        return assign_by_deadline(model, choose, resp, only)

    def learn(self, model: OffloadModel, metrics: dict[str, float],
              info: dict[str, npt.NDArray], done: bool) -> dict[str, float]:
        plain, _ = self._last["twin"].step(self._last["plain"])
        gain = metrics["profit"] - plain["profit"]
        reward = np.full(self.n_uavs, self.cfg.reward_scale * gain)
        resp = self.responsible(model)
        next_obs = self.observe(model, resp, delay_ratios(model))
        self.team.buffer.add(self._last["obs"], self._last["act"], reward, next_obs, done)
        return self.team.update()

    def state_dict(self) -> dict[str, Any]:
        return {"config": {**asdict(self.cfg), "pref_scale": self.pref_scale},
                "n_uavs": self.n_uavs, "clustered": self.clustered,
                "n_clusters": self.clusters.n_clusters, "recluster_every": self.clusters.every,
                "team": self.team.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.team.load_state_dict(state["team"])
        self.pref_scale = float(state.get("config", {}).get("pref_scale", 1.0))
