"""The scenario's `cluster:` section: one scenario emulated on several hosts.

    cluster:
      hosts:
        - {name: h1, address: 10.0.0.11, key: ~/.ssh/sagin_cluster}
        - {name: h2, address: 10.0.0.12, key: ~/.ssh/sagin_cluster, user: sagin, port: 2222}
      placement:
        pins: {cloud1: h2}         # nodes that must run on a given host

Why a `cluster:` section and not a top-level `hosts:` list: `Scenario.hosts()` already means
"the nodes that are not switches" throughout the core, and a field of that name would shadow
it.  The same host list can come from a file instead (`--hosts FILE`, like the boards'
inventory: testbed.cluster.hosts.load_inventory).

This module is self-contained (its own strict base, no import of testbed.scenario.model) so
that the model can import it without an import cycle inside the package.  Cross-references
(pins naming nodes that exist) are checked by `problems(sc)`, called from
testbed.scenario.references like every other reference check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed.scenario.errors import Problem, suggest

if TYPE_CHECKING:
    from testbed.scenario.model import Scenario

HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,15}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Host(_Strict):
    """One machine that runs a share of the scenario, reached over SSH with a key (never a
    password: the coordinator runs unattended)."""

    name: HostName
    address: str = Field(min_length=1, description="SSH address (IP or DNS name)")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", min_length=1)
    key: str = Field(min_length=1, description="private key file on the coordinating host")
    known_hosts: str | None = Field(
        default=None, description="known_hosts file holding this host's key (default: none "
        "is trusted unless given: host keys are always checked)")
    underlay: str | None = Field(
        default=None, description="address the VXLAN tunnels of this host use (default: "
        "address); a dedicated data network keeps emulated traffic off the SSH one")
    project: str | None = Field(
        default=None, description="the project checkout on the host (same version as here); "
        "default: this checkout's path")
    python: str | None = Field(
        default=None, description="the project's Python on the host (default: "
        "<project>/.venv/bin/python)")
    connect_timeout_s: float = Field(default=5.0, gt=0.0, le=120.0)

    @property
    def tunnel_address(self) -> str:
        return self.underlay or self.address


class Placement(_Strict):
    pins: dict[str, HostName] = Field(
        default_factory=dict, description="node -> host it must run on; the partitioner "
        "places the others")
    balance: float = Field(default=0.2, ge=0.0, le=1.0,
                           description="allowed imbalance of node counts between hosts")


class Cluster(_Strict):
    hosts: list[Host] = Field(min_length=1)
    placement: Placement = Placement()
    vni_base: int = Field(default=4000, ge=1, le=16_000_000,
                          description="first VXLAN network identifier of the run's tunnels")
    port: int = Field(default=4789, ge=1, le=65535, description="VXLAN UDP port")

    @model_validator(mode="after")
    def _unique(self) -> Cluster:
        seen: set[str] = set()
        for h in self.hosts:
            if h.name in seen:
                raise ValueError(f"two hosts are named '{h.name}': give every host a unique "
                                 "name")
            seen.add(h.name)
        names = [h.name for h in self.hosts]
        for node, host in self.placement.pins.items():
            if host not in names:
                raise ValueError(f"placement.pins.{node} names host '{host}', which is not "
                                 f"in hosts ({suggest(host, names, 'hosts')})")
        return self

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)


def problems(sc: Scenario) -> list[Problem]:
    """Pins must name nodes of the scenario (hosts or switches)."""
    cluster = getattr(sc, "cluster", None)
    if cluster is None:
        return []
    nodes = list(sc.nodes)
    return [Problem(f"cluster.placement.pins.{node}", f"unknown node '{node}'",
                    suggest(node, nodes, "nodes"))
            for node in cluster.placement.pins if node not in sc.nodes]
