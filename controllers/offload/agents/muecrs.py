"""MUECRS (arXiv 2409.17882): multi-UAV edge computing resource scheduling that minimises task
delay over a mixed action space, split as in the paper into two learners.

1. Trajectory optimisation.  A DDPG actor, shared by all UAVs, maps a UAV's own features
   (features.uav_features: where its users' demand is, its peers, its link quality) to its 3D
   velocity; the critic scores (features, velocity) pairs; a UAV's reward is minus the mean
   effective task delay (delay, or deadline + penalty when dropped) of the users it covered,
   averaged with the slot's overall mean, so the UAVs learn to fly where they cut delay - the
   paper's "rapid terminal coverage".
2. Computation mode and resource management.  Tasks are decided one by one, tightest deadline
   first.  Each (task, mode) is scored by the model's analytic delay given the backlogs and
   what earlier tasks of the slot already hold (`OffloadModel.mode_delays`, as an effective
   delay / deadline ratio) plus a learned correction: a small network over the pair's features
   (features.pair_features), trained by regression on the ratio the task then really got.  The
   correction learns what the analytic estimate cannot see (tasks decided after it that share
   its band, the queue its choice leaves for the next slot).  The mode is the least score,
   epsilon-greedy while training; CPU shares follow the closed form of `baselines.cycle_shares`.

Both learners share weights across UAVs and users, so a policy trained on one preset runs on
any other size.  Paper-exact details (network sizes, their exact reward shaping) are not in
the abstract; the choices here are documented on `MuecrsConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from controllers.offload.agents.base import effective_ratio
from controllers.offload.baselines import assign_by_deadline, cycle_shares, velocity_limits
from controllers.offload.features import (
    PAIR_FEATURES,
    UAV_FEATURES,
    delay_ratios,
    pair_features,
    uav_features,
)
from controllers.offload.learn.buffer import ReplayBuffer
from controllers.offload.learn.ddpg import DDPG
from controllers.offload.learn.nets import LearnerConfig, mlp, shrink_output
from controllers.offload.model import Decision, OffloadModel


@dataclass(frozen=True)
class MuecrsConfig:
    """Hyper-parameters (assumed; the abstract gives none)."""

    trajectory: LearnerConfig = field(default_factory=lambda: LearnerConfig(
        gamma=0.9, noise=0.3, warmup=2000, batch=256))
    mode_hidden: tuple[int, ...] = (64, 64)
    mode_lr: float = 1e-3
    mode_batch: int = 512
    mode_buffer: int = 200_000
    mode_warmup: int = 1000  # decided tasks before the correction starts learning
    epsilon: tuple[float, float] = (0.2, 0.02)  # exploration of modes, start and end
    epsilon_slots: int = 10_000  # linear decay length
    delay_reward_scale: float = 1.0  # reward = -scale x mean effective delay (s)


TRAJECTORIES = ("learned", "hover", "centroid")


def centroid_velocity(model: OffloadModel) -> npt.NDArray[np.float64]:
    """(K, 3) the greedy trajectory heuristic: each UAV flies straight towards the bits-weighted
    centroid of its own users' pending tasks (users whose nearest UAV it is), as far as one
    slot at full speed allows, at constant height; a UAV with no pending task hovers.  The
    yardstick a learned trajectory must beat to be worth learning."""
    k = model.n_uavs
    weight = model.task_bits * model.task_active
    own = np.bincount(model.nearest_uav, weights=weight, minlength=k)
    velocity = np.zeros((k, 3))
    for axis in (0, 1):
        moment = np.bincount(model.nearest_uav, weights=weight * model.user_xy[:, axis],
                             minlength=k)
        target = np.where(own > 0, moment / np.maximum(own, 1e-12), model.uav_xyz[:, axis])
        velocity[:, axis] = (target - model.uav_xyz[:, axis]) / model.config.slot_s
    speed = np.hypot(velocity[:, 0], velocity[:, 1])
    top = model.config.uav.max_speed_m_s
    velocity[:, :2] *= np.minimum(1.0, top / np.maximum(speed, 1e-12))[:, None]
    return velocity


class MUECRS:
    """The MUECRS controller (see the module docstring); a `baselines.Policy` when called.

    `trajectory` picks who steers the UAVs when acting: the learned DDPG actor ("learned"),
    nobody ("hover") or `centroid_velocity` ("centroid") - the ablations that show what the
    trajectory learner adds (controllers.offload.ablation).  Mode decisions are the same."""

    algo = "muecrs"
    trajectory_kind = "learned"

    def __init__(self, cfg: MuecrsConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg = cfg or MuecrsConfig()
        torch.manual_seed(seed)
        self.trajectory = DDPG(len(UAV_FEATURES), 3, cfg.trajectory, seed=seed)
        self.correction = mlp(len(PAIR_FEATURES), 1, cfg.mode_hidden)
        shrink_output(self.correction)  # start as the analytic estimate: a zero correction
        self.opt = torch.optim.Adam(self.correction.parameters(), lr=cfg.mode_lr)
        self.pairs = ReplayBuffer(cfg.mode_buffer, (len(PAIR_FEATURES),), (0,), seed=seed)
        self.rng = np.random.default_rng(seed)
        self.slots = 0
        self._last: dict[str, Any] = {}

    # --------------------------------------------------------------------------- acting
    def __call__(self, model: OffloadModel) -> Decision:
        return self.decide(model, explore=False)

    @property
    def epsilon(self) -> float:
        start, end = self.cfg.epsilon
        frac = min(self.slots / max(self.cfg.epsilon_slots, 1), 1.0)
        return start + (end - start) * frac

    def decide(self, model: OffloadModel, explore: bool = False) -> Decision:
        obs = uav_features(model)
        velocity = self.trajectory.act(obs, explore) * velocity_limits(model)
        if self.trajectory_kind == "hover":
            velocity = np.zeros_like(velocity)
        elif self.trajectory_kind == "centroid":
            velocity = centroid_velocity(model)
        mode, predicted, feats = self._modes(model, explore)
        self._last = {"obs": obs, "act": velocity / velocity_limits(model), "predicted": predicted,
                      "feats": feats, "mode": mode, "nearest": model.nearest_uav.copy()}
        return Decision(mode, cycle_shares(model), velocity)

    def _modes(self, model: OffloadModel, explore: bool
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                          npt.NDArray[np.float32]]:
        """Sequential contention-aware decoding; returns modes, the analytic effective ratio of
        each chosen pair, and the chosen pairs' features (for learning)."""
        u, m = model.n_users, model.modes.count
        feats = pair_features(model, delay_ratios(model))
        with torch.no_grad():
            corr = self.correction(torch.from_numpy(feats.reshape(u * m, -1))).numpy()
        corr = corr.reshape(u, m)
        penalty = model.config.profit.drop_penalty_s
        deadline = model.task_deadline_s
        eps = self.epsilon if explore else 0.0

        def choose(i: int, d: npt.NDArray[np.float64]) -> int:
            if eps and self.rng.random() < eps:
                return int(self.rng.integers(m))
            return int(np.argmin(effective_ratio(d, deadline[i], d <= deadline[i], penalty)
                                 + corr[i]))

        mode, delay = assign_by_deadline(model, choose)
        active = model.task_active
        predicted = np.ones(u)
        predicted[active] = effective_ratio(delay[active], deadline[active],
                                            delay[active] <= deadline[active], penalty)
        return mode, predicted, feats[np.arange(u), mode]

    # ------------------------------------------------------------------------- learning
    def learn(self, model: OffloadModel, metrics: dict[str, float],
              info: dict[str, npt.NDArray], done: bool) -> dict[str, float]:
        """Store the slot just stepped and update both learners once."""
        self.slots += 1
        last = self._last
        active = info["active"]
        penalty = model.config.profit.drop_penalty_s
        effective = np.where(info["admitted"], info["delay_s"], info["deadline_s"] + penalty)
        # each UAV is rewarded for the delay of the tasks of the users it covered (credit
        # assignment), plus the slot's mean, so that no UAV gains by pushing users away
        owner = last["nearest"]
        k = model.n_uavs
        n_own = np.bincount(owner, weights=active, minlength=k)
        own = np.bincount(owner, weights=effective * active, minlength=k)
        mean = metrics["mean_effective_delay_s"]
        local = np.where(n_own > 0, own / np.maximum(n_own, 1.0), mean)
        reward = -self.cfg.delay_reward_scale * 0.5 * (local + mean)
        next_obs = uav_features(model)
        for j in range(k):
            self.trajectory.buffer.add(last["obs"][j], last["act"][j], reward[j], next_obs[j],
                                       done)
        if active.any():
            real = effective_ratio(info["delay_s"], info["deadline_s"], info["admitted"],
                                   penalty)
            target = real - last["predicted"]
            for i in np.flatnonzero(active):
                self.pairs.add(last["feats"][i], np.zeros(0, np.float32), target[i],
                               last["feats"][i], False)
        stats = self.trajectory.update()
        if self.pairs.size >= max(self.cfg.mode_warmup, self.cfg.mode_batch):
            x, _, y, _, _ = self.pairs.sample(self.cfg.mode_batch)
            loss = torch.mean((self.correction(torch.from_numpy(x)).squeeze(-1)
                               - torch.from_numpy(y)) ** 2)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            stats["mode_loss"] = float(loss.detach())
        return stats

    # ---------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "trajectory": self.trajectory.state_dict(),
                "correction": self.correction.state_dict(), "slots": self.slots}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trajectory.load_state_dict(state["trajectory"])
        self.correction.load_state_dict(state["correction"])
        self.slots = int(state.get("slots", 0))

