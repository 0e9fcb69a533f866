"""The training experiment file (topologies/edge-training.training.yaml), validated before
anything runs: errors name the file, the field and the fix.

    method: chaos                 # chaos | single | checkpoint | torchelastic
    port: 7900                    # every node's TCP port (UDP port+1: the cluster monitor)
    store: gs1                    # the central checkpoint store (checkpoint, torchelastic)
    hidden: [128, 64]             # the MLP's hidden layers (model.py)
    batch: 16                     # examples per member per step
    lr: 0.05
    momentum: 0.9
    seed: 1
    state_mb: 0                   # ballast: pad the replicated state to this many MB
    neighbours: 4                 # chaos: pull from at most this many neighbours
    heartbeat_ms: 100             # the cluster monitor's ping period
    suspect_after_ms: 600         # a member silent this long is taken as crashed
    checkpoint_every: 50          # checkpoint: steps between periodic checkpoints
    target_accuracy: 0.95         # time-to-accuracy is measured to this
    eval_every: 20                # steps between accuracy measurements (360 held-out images)
    join_timeout_s: 120           # a joiner not ready this long after its commit is dropped
    bootstrap_timeout_s: 120      # the first ring waits this long for its initial members
    nodes: [edge1, edge2, edge3, uav1, uav2, uav3]   # every node that ever trains
    initial: [edge1, edge2, uav1, uav2]              # the first ring; the others join later

Which nodes train from the start, which join later and which leave is the scenario's
timeline (`exec ... live node` at 0 s or later; `exec ... live leave`; `node_crash`);
`check_scenario` reads it and refuses a plan that cannot run.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed.scenario.errors import Problem
from testbed.scenario.experiment import load_model

METHODS = ("chaos", "single", "checkpoint", "torchelastic")
FORMAT = "controllers/training/config.py"


class ConfigError(ValueError):
    pass


class TrainingExperiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = "chaos"
    port: int = Field(default=7900, ge=1, le=65534)
    store: str | None = None
    hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1, max_length=4)
    batch: int = Field(default=16, ge=1, le=1024)
    lr: float = Field(default=0.05, gt=0.0, le=10.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    seed: int = 1
    state_mb: float = Field(default=0.0, ge=0.0, le=2000.0)
    neighbours: int = Field(default=4, ge=1, le=16)
    heartbeat_ms: float = Field(default=100.0, ge=10.0, le=5000.0)
    suspect_after_ms: float = Field(default=600.0, ge=50.0, le=60_000.0)
    checkpoint_every: int = Field(default=50, ge=1)
    target_accuracy: float = Field(default=0.95, gt=0.0, le=1.0)
    eval_every: int = Field(default=20, ge=1)
    join_timeout_s: float = Field(default=120.0, gt=0.0)
    bootstrap_timeout_s: float = Field(default=120.0, gt=0.0)
    nodes: list[str] = Field(min_length=1)
    initial: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sound(self) -> TrainingExperiment:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError("nodes lists a node twice")
        if not self.initial:
            raise ValueError("initial: name the nodes that form the first ring (the others "
                             "join later)")
        stray = [n for n in self.initial if n not in self.nodes]
        if stray:
            raise ValueError(f"initial names {', '.join(stray)}, not in nodes:; add them there")
        if self.method in ("checkpoint", "torchelastic") and not self.store:
            raise ValueError(f"method {self.method} needs `store:` (the node holding checkpoints)")
        if self.store is not None and self.store in self.nodes:
            raise ValueError(f"store {self.store} is also a training node; the store is a "
                             "separate node (it is the baselines' central admin)")
        if self.suspect_after_ms < 3 * self.heartbeat_ms:
            raise ValueError("suspect_after_ms must be at least 3 heartbeats")
        return self

    def with_method(self, method: str) -> TrainingExperiment:
        return self.model_validate({**self.model_dump(), "method": method})


def load_experiment(path: str | Path, method: str | None = None) -> TrainingExperiment:
    exp = load_model(path, TrainingExperiment, ConfigError, FORMAT)
    if method is not None:
        try:
            return exp.with_method(method)
        except ValueError as exc:
            raise ConfigError(f"{path}: method: {exc}") from None
    return exp


# ---- the scenario's side: who joins, leaves and crashes when -----------------------------------
LIVE = "controllers.training.live"


@dataclass(frozen=True)
class Act:
    at_s: float
    node: str
    kind: str  # start | leave | crash | restart | link_down | link_up
    config: str | None = None
    method: str | None = None
    index: int = -1  # the event's place in the timeline


def _flag(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def plan_of(sc: Any) -> list[Act]:
    """The training acts in a scenario's timeline, in time order."""
    acts: list[Act] = []
    for k, ev in enumerate(sc.timeline):
        action = str(getattr(ev.action, "value", ev.action))
        if action == "exec" and ev.command and LIVE in ev.command:
            argv = shlex.split(ev.command)
            i = argv.index(LIVE) + 1 if LIVE in argv else len(argv)
            sub = argv[i] if i < len(argv) else ""
            if sub in ("node", "leave", "store"):
                acts.append(Act(ev.at_s, ev.node, {"node": "start"}.get(sub, sub),
                                _flag(argv, "--config"), _flag(argv, "--method"), k))
        elif action in ("node_crash", "node_restart") and ev.node:
            acts.append(Act(ev.at_s, ev.node, action.removeprefix("node_"), index=k))
    return sorted(acts, key=lambda a: a.at_s)


def check_scenario(sc: Any) -> list[Problem]:
    """Every training plan that cannot run: an unknown method, a node that is not in the
    scenario or not in the experiment, a leave or crash of a node that is not training then,
    and more leaves and crashes than nodes (the cluster would be empty)."""
    acts = plan_of(sc)
    problems: list[Problem] = []
    hosts = set(sc.nodes)
    exps: dict[str, TrainingExperiment] = {}
    for a in acts:
        where = f"timeline[{a.index}]"
        if a.config and a.config not in exps:
            try:
                exps[a.config] = load_experiment(a.config)
            except ConfigError as exc:
                problems.append(Problem(f"{where}.command", str(exc), f"see {FORMAT}"))
                exps[a.config] = None  # type: ignore[assignment]
        if a.method is not None and a.method not in METHODS:
            problems.append(Problem(f"{where}.command", f"--method {a.method} is unknown",
                                    f"use one of {', '.join(METHODS)}"))
    for c, exp in exps.items():
        if exp is None:
            continue
        for n in [*exp.nodes, *([exp.store] if exp.store else [])]:
            if n not in hosts:
                problems.append(Problem("timeline", f"{c}: node {n} is not in the scenario",
                                        "add it under nodes: or remove it from the file"))
        alive: set[str] = set()
        for a in acts:
            where = f"timeline[{a.index}]"
            if a.config not in (None, c) or a.kind == "store" or a.node not in hosts:
                continue
            if a.kind == "start":
                if a.node not in exp.nodes:
                    problems.append(Problem(where, f"{a.node} starts training but is not in "
                                            f"{c}'s nodes:", "add it there"))
                alive.add(a.node)
            elif a.kind in ("leave", "crash") and a.node in exp.nodes:
                if a.node not in alive:
                    problems.append(Problem(where, f"{a.kind} of {a.node} at {a.at_s:g} s: it "
                                            "is not training then", "start it earlier"))
                    continue
                alive.discard(a.node)
                if not alive:
                    problems.append(Problem(where, f"{a.kind} of {a.node} at {a.at_s:g} s "
                                            "leaves no node training",
                                            "keep at least one node; drop a leave or crash"))
    return problems
