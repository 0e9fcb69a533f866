"""The single-agent DDPG baseline: one central actor over the flat observation and action of
controllers.offload.spaces (every user's mode scores and share, every UAV's velocity), trained
on the slot's profit.  This is the "one big DDPG" both papers compare against: it sees
everything but must learn a (U x (K+3) + U + 3K)-dimensional action from scratch, and it only
runs on the configuration size it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy.typing as npt

from controllers.offload.config import OffloadConfig
from controllers.offload.learn.ddpg import DDPG
from controllers.offload.learn.nets import LearnerConfig
from controllers.offload.model import Decision, OffloadModel
from controllers.offload.spaces import ActionCodec, Observer


@dataclass(frozen=True)
class CentralConfig:
    learner: LearnerConfig = field(default_factory=lambda: LearnerConfig(
        gamma=0.9, noise=0.3, warmup=2000, batch=256, hidden=(256, 256)))
    reward_scale: float = 0.1


class CentralDDPG:
    algo = "ddpg"

    def __init__(self, config: OffloadConfig, cfg: CentralConfig | None = None,
                 seed: int = 0) -> None:
        self.cfg = cfg = cfg or CentralConfig()
        self.observer = Observer(config)
        self.codec = ActionCodec(config)
        self.shape = (config.n_users, config.n_uavs)
        self.agent = DDPG(self.observer.size, self.codec.size, cfg.learner, seed=seed)
        self._last: dict[str, Any] = {}

    def __call__(self, model: OffloadModel) -> Decision:
        return self.decide(model, explore=False)

    def decide(self, model: OffloadModel, explore: bool = False) -> Decision:
        if (model.n_users, model.n_uavs) != self.shape:
            raise ValueError(f"this DDPG was trained for {self.shape[0]} users and "
                             f"{self.shape[1]} UAVs: train one for this configuration")
        obs = self.observer(model)
        act = self.agent.act(obs, explore)
        self._last = {"obs": obs, "act": act}
        return self.codec.decode(act)

    def learn(self, model: OffloadModel, metrics: dict[str, float],
              info: dict[str, npt.NDArray], done: bool) -> dict[str, float]:
        self.agent.buffer.add(self._last["obs"], self._last["act"],
                              self.cfg.reward_scale * metrics["profit"], self.observer(model),
                              done)
        return self.agent.update()

    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "shape": self.shape, "ddpg": self.agent.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["ddpg"])
