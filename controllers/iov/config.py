"""The IoV experiment file (topologies/iov-drdst.chain.yaml), validated before anything runs:
errors name the file, the field and the fix.

    method: drdst        # drdst | objective-dag | random-dag | static-dag | gsa-pbft |
                         # static-pbft | random-pbft  (controllers/iov/chain.py METHODS)
    port: 7700           # every node's UDP port
    chain:               # controllers.iov.chain.ChainConfig
      epoch_s: 20        # resharding period (GSA on the beacons of the last epoch)
      beacon_s: 2        # position beacons to the coordinator (the first RSU)
      tick_ms: 100       # protocol tick (DAG gossip, PBFT batching)
      tx_rate: 0.5       # transactions per node and second (Poisson)
      cross_fraction: 0.2
      shards: 4          # at most one per RSU (every shard needs an RSU), at most the nodes

`check_scenario` refuses a scenario whose chain cannot run (unknown method, more shards than
nodes or RSUs, no RSU to coordinate).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controllers.iov.chain import METHODS, ChainConfig
from testbed.scenario.errors import Problem
from testbed.scenario.experiment import load_model
from testbed.scenario.model import NodeKind, Scenario

FORMAT = "controllers/iov/config.py"
LIVE = "controllers.iov.live"


class ConfigError(ValueError):
    pass


class ChainExperiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = "drdst"
    port: int = Field(default=7700, ge=1, le=65535)
    chain: ChainConfig = ChainConfig()

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"method {v!r} is unknown; use one of {', '.join(METHODS)}")
        return v


def load_experiment(path: str | Path, method: str | None = None) -> ChainExperiment:
    exp = load_model(path, ChainExperiment, ConfigError, FORMAT)
    if method is not None:
        if method not in METHODS:
            raise ConfigError(f"--method {method!r} is unknown; use one of {', '.join(METHODS)}")
        exp = exp.model_copy(update={"method": method})
    return exp


def chain_nodes(sc: Scenario) -> tuple[list[str], list[str]]:
    """The vehicles and RSUs of a scenario (every one runs a chain node)."""
    vehicles = sorted(n for n, d in sc.nodes.items() if d.kind is NodeKind.VEHICLE)
    rsus = sorted(n for n, d in sc.nodes.items() if d.kind is NodeKind.RSU)
    return vehicles, rsus


def config_of(sc: Scenario) -> str | None:
    """The experiment file the timeline's `live node` commands name, if any."""
    for ev in sc.timeline:
        if ev.command and LIVE in ev.command:
            args = shlex.split(ev.command)
            if "--config" in args:
                return args[args.index("--config") + 1]
    return None


def check_scenario(sc: Scenario) -> list[Problem]:
    path = config_of(sc)
    if path is None:
        return []
    where = "timeline (the --config of controllers.iov.live)"
    try:
        exp = load_experiment(path)
    except ConfigError as exc:
        return [Problem(where, str(exc), f"fix {path}")]
    vehicles, rsus = chain_nodes(sc)
    problems = []
    if not rsus:
        problems.append(Problem("nodes", "the chain needs at least one RSU (kind: rsu): the "
                                "first RSU coordinates the epochs", "add a roadside unit"))
    k = exp.chain.shards
    if k is not None and k > len(vehicles) + len(rsus):
        problems.append(Problem(f"{path}: chain.shards", f"{k} shards for "
                                f"{len(vehicles) + len(rsus)} chain nodes",
                                "use at most one shard per node (fewer: 9+ nodes a shard)"))
    elif k is not None and rsus and k > len(rsus):
        problems.append(Problem(f"{path}: chain.shards", f"{k} shards but only {len(rsus)} "
                                "RSUs: every shard needs an RSU to anchor it",
                                f"use shards <= {len(rsus)} or add RSUs"))
    return problems
