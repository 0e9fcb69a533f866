"""DDPG (Lillicrap et al., ICLR 2016) for a single centralised controller: the single-agent
baseline of the offloading comparison, and the building block MUECRS's continuous part uses.

Exploration is Gaussian noise on the deterministic action, clipped to [-1, 1]; targets are
Polyak-averaged (tau).  Everything runs on the CPU with torch's default single thread.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from controllers.offload.learn.buffer import ReplayBuffer
from controllers.offload.learn.nets import (
    Actor,
    Critic,
    LearnerConfig,
    explored,
    replay_batch,
    soft_update,
)

DDPGConfig = LearnerConfig  # the name the controllers and tests use


class DDPG:
    def __init__(self, obs_dim: int, act_dim: int, cfg: LearnerConfig | None = None,
                 seed: int = 0) -> None:
        torch.manual_seed(seed)
        cfg = cfg or LearnerConfig()
        self.cfg = cfg
        self.act_dim = act_dim
        self.actor = Actor(obs_dim, act_dim, cfg.hidden)
        self.critic = Critic(obs_dim, act_dim, cfg.hidden)
        self.actor_t = copy.deepcopy(self.actor)
        self.critic_t = copy.deepcopy(self.critic)
        self.opt_a = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.buffer = ReplayBuffer(cfg.buffer, (obs_dim,), (act_dim,), seed=seed)
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        self.steps += explore
        if explore and self.steps <= self.cfg.warmup:
            shape = (*np.shape(obs)[:-1], self.act_dim)  # one action per observation row
            return self.rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        with torch.no_grad():
            a = self.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return explored(a, self.rng, self.cfg, explore)

    def update(self) -> dict[str, float]:
        batch = replay_batch(self.buffer, self.cfg)
        if batch is None:
            return {}
        o, a, r, o2, d = batch
        with torch.no_grad():
            y = r + self.cfg.gamma * (1.0 - d) * self.critic_t(o2, self.actor_t(o2))
        q = self.critic(o, a)
        loss_c = torch.mean((q - y) ** 2)
        self.opt_c.zero_grad()
        loss_c.backward()
        self.opt_c.step()
        loss_a = -self.critic(o, self.actor(o)).mean()
        self.opt_a.zero_grad()
        loss_a.backward()
        self.opt_a.step()
        soft_update(self.actor_t, self.actor, self.cfg.tau)
        soft_update(self.critic_t, self.critic, self.cfg.tau)
        return {"critic_loss": float(loss_c.detach()), "actor_loss": float(loss_a.detach())}

    def state_dict(self) -> dict[str, dict]:
        """Networks only (a checkpoint is for acting and fine-tuning, not a replay)."""
        return {name: getattr(self, name).state_dict()
                for name in ("actor", "critic", "actor_t", "critic_t")}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for name, tensors in state.items():
            getattr(self, name).load_state_dict(tensors)
