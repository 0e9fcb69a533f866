"""Learned offloading controllers: MUECRS, CMADDPG, and the MADDPG / DDPG baselines.

`make_controller(algo, config, seed)` builds an untrained one; `load_controller(path, config)`
restores a checkpoint written by controllers.offload.train.  All are `baselines.Policy`s.
"""

from __future__ import annotations

from pathlib import Path

from controllers.offload.agents.base import Controller, read_checkpoint, save_checkpoint
from controllers.offload.agents.central import CentralDDPG
from controllers.offload.agents.muecrs import MUECRS
from controllers.offload.agents.team import TeamController
from controllers.offload.config import OffloadConfig

ALGORITHMS = ("muecrs", "cmaddpg", "maddpg", "ddpg")
# policies trained on the default preset run on any size; these are tied to the size
SIZE_BOUND = frozenset({"cmaddpg", "maddpg", "ddpg"})


def make_controller(algo: str, config: OffloadConfig, seed: int = 0) -> Controller:
    c = config
    if algo == "muecrs":
        return MUECRS(seed=seed)
    if algo in ("cmaddpg", "maddpg"):
        return TeamController(c.n_uavs, c.n_clusters, c.recluster_every, algo == "cmaddpg",
                              seed=seed)
    if algo == "ddpg":
        return CentralDDPG(c, seed=seed)
    raise ValueError(f"unknown algorithm {algo!r}: choose one of {', '.join(ALGORITHMS)}")


def load_controller(path: str | Path, config: OffloadConfig) -> Controller:
    """A trained controller for `config` (errors name the file and what does not match)."""
    data = read_checkpoint(path)
    ctrl = make_controller(data["algo"], config)
    try:
        ctrl.load_state_dict(data["state"])
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: trained for another configuration size "
                         f"({data['meta'].get('config_name', '?')}): {exc}") from None
    return ctrl


__all__ = ["ALGORITHMS", "SIZE_BOUND", "Controller", "load_controller", "make_controller",
           "read_checkpoint", "save_checkpoint"]
