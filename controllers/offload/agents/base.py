"""What every learned offloading controller offers, and the helpers they share.

A controller is a `baselines.Policy` (call it with a model, get the slot's `Decision`) that can
also explore, learn from the slot it just decided, and be saved and loaded.  Training drives
the shared `OffloadModel` directly (controllers.offload.train), so a learned controller and a
heuristic are evaluated by exactly the same code (`baselines.evaluate`).

Checkpoints are one torch file: {"algo", "meta", "state"}; `meta` records the configuration
the policy was trained on and how long, so a results table can name its provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from controllers.offload.model import Decision, OffloadModel

CHECKPOINT_FORMAT = 1


class Controller(Protocol):
    """A trainable offloading controller (see the module docstring)."""

    algo: str

    def __call__(self, model: OffloadModel) -> Decision: ...

    def decide(self, model: OffloadModel, explore: bool = False) -> Decision: ...

    def learn(self, model: OffloadModel, metrics: dict[str, float],
              info: dict[str, npt.NDArray], done: bool) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def save_checkpoint(controller: Controller, path: str | Path, meta: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "algo": controller.algo, "meta": meta,
                "state": controller.state_dict()}, path)


LEARNING_ONLY = frozenset({"critic", "critic_t", "actor_t", "critics", "critics_t", "actors_t"})


def strip_checkpoint(path: str | Path) -> None:
    """Drop what only training needs (critics, target networks) from a checkpoint, keeping what
    acting needs: the shipped policies stay small (DDPG on the large preset: 9 MB -> ~2 MB)."""
    data = read_checkpoint(path)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in LEARNING_ONLY}
        return node

    data["state"] = strip(data["state"])
    data["meta"]["acting_only"] = True
    torch.save(data, Path(path))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such policy file (train one with "
                                f"`make train ALGO=...`)")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a policy checkpoint of this testbed (format "
                         f"{CHECKPOINT_FORMAT})")
    return data


def effective_ratio(delay_s: npt.NDArray[np.float64], deadline_s: npt.NDArray[np.float64],
                    admitted: npt.NDArray[np.bool_], penalty_s: float) -> npt.NDArray[np.float64]:
    """Effective delay over deadline: delay if served, deadline + penalty if dropped."""
    return np.where(admitted, delay_s, deadline_s + penalty_s) / deadline_s
