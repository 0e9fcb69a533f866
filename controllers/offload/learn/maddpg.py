"""MADDPG (Lowe et al., NeurIPS 2017): decentralised actors on local observations, one
centralised critic per agent that sees every agent's observation and action (centralised
training, decentralised execution — in CMADDPG the training happens at the satellite and the
cluster heads execute).  Agents are homogeneous here (same observation and action sizes), so
all tensors carry an agent axis.
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

MADDPGConfig = LearnerConfig  # the name the controllers and tests use


class MADDPG:
    def __init__(self, n_agents: int, obs_dim: int, act_dim: int,
                 cfg: LearnerConfig | None = None, seed: int = 0) -> None:
        torch.manual_seed(seed)
        cfg = cfg or LearnerConfig()
        self.n, self.obs_dim, self.act_dim, self.cfg = n_agents, obs_dim, act_dim, cfg
        self.actors = [Actor(obs_dim, act_dim, cfg.hidden) for _ in range(n_agents)]
        self.critics = [Critic(n_agents * obs_dim, n_agents * act_dim, cfg.hidden)
                        for _ in range(n_agents)]
        self.actors_t = [copy.deepcopy(a) for a in self.actors]
        self.critics_t = [copy.deepcopy(c) for c in self.critics]
        self.opt_a = [torch.optim.Adam(a.parameters(), lr=cfg.actor_lr) for a in self.actors]
        self.opt_c = [torch.optim.Adam(c.parameters(), lr=cfg.critic_lr) for c in self.critics]
        self.buffer = ReplayBuffer(cfg.buffer, (n_agents, obs_dim), (n_agents, act_dim),
                                   (n_agents,), seed=seed)
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """obs (n_agents, obs_dim) -> actions (n_agents, act_dim) in [-1, 1]."""
        self.steps += explore
        if explore and self.steps <= self.cfg.warmup and self.cfg.warmup_uniform:
            return self.rng.uniform(-1.0, 1.0, (self.n, self.act_dim)).astype(np.float32)
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)
            a = np.stack([self.actors[i](o[i]).numpy() for i in range(self.n)])
        return explored(a, self.rng, self.cfg, explore)

    def update(self) -> dict[str, float]:
        batch = replay_batch(self.buffer, self.cfg)
        if batch is None:
            return {}
        o, a, r, o2, d = batch
        b = o.shape[0]
        flat_o, flat_o2, flat_a = o.reshape(b, -1), o2.reshape(b, -1), a.reshape(b, -1)
        with torch.no_grad():
            a2 = torch.cat([self.actors_t[j](o2[:, j]) for j in range(self.n)], dim=-1)
        losses = []
        for i in range(self.n):
            with torch.no_grad():
                y = r[:, i] + self.cfg.gamma * (1.0 - d) * self.critics_t[i](flat_o2, a2)
            loss_c = torch.mean((self.critics[i](flat_o, flat_a) - y) ** 2)
            self.opt_c[i].zero_grad()
            loss_c.backward()
            self.opt_c[i].step()
            # the actor's own action from its policy, the others' as stored
            own, reg = self.actors[i].forward_with_reg(o[:, i])
            acts = [a[:, j] if j != i else own for j in range(self.n)]
            loss_a = -self.critics[i](flat_o, torch.cat(acts, dim=-1)).mean()
            if self.cfg.action_reg:
                loss_a = loss_a + self.cfg.action_reg * reg
            self.opt_a[i].zero_grad()
            loss_a.backward()
            self.opt_a[i].step()
            losses.append(float(loss_c.detach()))
        for i in range(self.n):
            soft_update(self.actors_t[i], self.actors[i], self.cfg.tau)
            soft_update(self.critics_t[i], self.critics[i], self.cfg.tau)
        return {"critic_loss": float(np.mean(losses))}

    def state_dict(self) -> dict[str, list[dict]]:
        """Networks only, one entry per agent."""
        return {name: [net.state_dict() for net in getattr(self, name)]
                for name in ("actors", "critics", "actors_t", "critics_t")}

    def load_state_dict(self, state: dict[str, list[dict]]) -> None:
        for name, tensors in state.items():
            nets = getattr(self, name)
            if len(nets) != len(tensors):
                raise ValueError(f"checkpoint has {len(tensors)} {name}, this team {len(nets)}")
            for net, t in zip(nets, tensors, strict=True):
                net.load_state_dict(t)
