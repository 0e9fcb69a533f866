"""DDPG and MADDPG learn small problems whose answers are known (torch, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch==2.13.0 (CPU) is needed for the learners")

from controllers.offload.learn.ddpg import DDPG, DDPGConfig  # noqa: E402
from controllers.offload.learn.maddpg import MADDPG, MADDPGConfig  # noqa: E402

pytestmark = pytest.mark.unit


def test_ddpg_finds_the_best_continuous_action():
    torch.set_num_threads(1)
    agent = DDPG(2, 1, DDPGConfig(batch=64, warmup=200, gamma=0.0, noise=0.3), seed=1)
    obs = np.array([1.0, 0.0], dtype=np.float32)
    for _ in range(1500):
        a = agent.act(obs)
        reward = -float((a[0] - 0.5) ** 2)
        agent.buffer.add(obs, a, reward, obs, True)
        agent.update()
    assert agent.act(obs, explore=False)[0] == pytest.approx(0.5, abs=0.1)


def test_maddpg_agents_coordinate_through_centralised_critics():
    torch.set_num_threads(1)
    team = MADDPG(2, 2, 1, MADDPGConfig(batch=64, warmup=200, gamma=0.0, noise=0.3), seed=2)
    obs = np.ones((2, 2), dtype=np.float32)
    for _ in range(2000):
        a = team.act(obs)
        r = -float((a[0, 0] + a[1, 0] - 0.6) ** 2 + (a[0, 0] - a[1, 0]) ** 2)
        team.buffer.add(obs, a, np.array([r, r]), obs, True)
        team.update()
    final = team.act(obs, explore=False)[:, 0]
    assert final == pytest.approx([0.3, 0.3], abs=0.12)
