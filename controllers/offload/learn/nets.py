"""Small MLPs: the actors and critics of DDPG-family learners (sizes from the MADDPG paper's
defaults, two hidden layers of 64, scaled by the caller)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from controllers.offload.learn.buffer import ReplayBuffer


@dataclass(frozen=True)
class LearnerConfig:
    """Hyper-parameters shared by DDPG and MADDPG (MADDPG paper defaults where it has one)."""

    gamma: float = 0.95
    tau: float = 0.01
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    batch: int = 256
    buffer: int = 100_000
    noise: float = 0.2
    hidden: tuple[int, ...] = (64, 64)
    warmup: int = 500  # random actions before learning starts
    # warm-up actions uniform over the whole box (True), or the untrained policy plus the usual
    # noise (False): a residual learner that starts from a sound rule should fill its replay
    # with the neighbourhood of that rule, not with far-off actions the critic then extrapolates
    warmup_uniform: bool = True
    # weight of the actors' pre-tanh output squared in their loss (the MADDPG reference code's
    # 1e-3 regulariser): keeps actions off the saturated box edges a critic's extrapolated
    # gradient pushes them to
    action_reg: float = 0.0


def mlp(inp: int, out: int, hidden: tuple[int, ...] = (64, 64)) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = inp
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, out))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Deterministic policy: observation -> action in [-1, 1]^n (envs decode the box)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def forward_with_reg(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The action and the mean squared pre-tanh output (LearnerConfig.action_reg)."""
        pre = self.net(obs)
        return torch.tanh(pre), torch.mean(pre ** 2)


class Critic(nn.Module):
    """Q(observation(s), action(s)): for MADDPG the inputs are every agent's."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, hidden)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)


def explored(a: np.ndarray, rng: np.random.Generator, cfg: LearnerConfig,
             explore: bool) -> np.ndarray:
    """A deterministic action with Gaussian exploration noise (when exploring), clipped to
    the [-1, 1] box, as float32 - how every DDPG-family learner here explores."""
    if explore:
        a = a + rng.normal(0.0, cfg.noise, a.shape)
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def replay_batch(buffer: ReplayBuffer, cfg: LearnerConfig) -> tuple[torch.Tensor, ...] | None:
    """A training batch as tensors (obs, act, reward, next obs, done), or None before the
    buffer holds the warm-up and one batch."""
    if buffer.size < max(cfg.batch, cfg.warmup):
        return None
    return tuple(torch.as_tensor(x) for x in buffer.sample(cfg.batch))


def shrink_output(net: nn.Sequential, scale: float = 0.01) -> None:
    """Scale the last layer towards zero, so a new network starts from a zero output: a
    learner that adds a correction to a sound rule then starts from the rule itself."""
    last = net[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError("the network's last module is not a Linear layer")
    with torch.no_grad():
        last.weight.mul_(scale)
        last.bias.zero_()


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.mul_(1.0 - tau).add_(s, alpha=tau)
