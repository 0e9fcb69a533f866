"""Replay memory as preallocated numpy rings: no per-transition Python objects, so sampling
stays cheap at the environment's 10k steps/s."""

from __future__ import annotations

import numpy as np


class ReplayBuffer:
    """Transitions (obs, act, reward, next_obs, done); obs/act may carry a leading agent axis
    (MADDPG stores all agents' views of one step together)."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], act_shape: tuple[int, ...],
                 reward_shape: tuple[int, ...] = (), seed: int = 0) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.act = np.zeros((capacity, *act_shape), dtype=np.float32)
        self.rew = np.zeros((capacity, *reward_shape), dtype=np.float32)
        self.done = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self.pos = 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float | np.ndarray,
            next_obs: np.ndarray, done: bool) -> None:
        i = self.pos
        self.obs[i], self.act[i], self.rew[i] = obs, act, rew
        self.next_obs[i], self.done[i] = next_obs, float(done)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int) -> tuple[np.ndarray, ...]:
        idx = self.rng.integers(0, self.size, size=batch)
        return self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.done[idx]
