"""The scenario schema in force: the core's model plus the node sections workloads register.

`testbed.scenario.model` is the core's part and knows no workload; a workload adds fields to
nodes (the drones add ``autopilot:``) through the registry (testbed.workloads).  The schema
is built once per registry with pydantic's `create_model`, so a workload's section is
validated exactly like a core field: errors carry the full path
(``nodes.uav1.autopilot.flavour``), unknown fields are refused with suggestions that include
the registered ones, and typed access works (``node.autopilot``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import Field, create_model

from testbed.scenario.model import Name, Node, Scenario
from testbed.workloads import Registry


@cache
def _build(registry: Registry) -> type[Scenario]:
    sections = registry.node_models()
    if not sections:
        return Scenario
    fields: dict[str, Any] = {name: (model | None, Field(default=None,
                                                          description=model.__doc__))
                              for name, model in sections.items()}
    node = create_model("Node", __base__=Node, __module__=Node.__module__, **fields)
    return create_model("Scenario", __base__=Scenario, __module__=Scenario.__module__,
                        nodes=(dict[Name, node], Field(min_length=1)))  # type: ignore[valid-type]


def scenario_model(registry: Registry | None = None) -> type[Scenario]:
    """The Scenario class that validates files under `registry` (default: the installed
    one)."""
    return _build(registry or Registry.installed())


def node_model(registry: Registry | None = None) -> type[Node]:
    """The Node class of that schema (for code that adds nodes, e.g. satellites)."""
    ann = scenario_model(registry).model_fields["nodes"].annotation
    return ann.__args__[1]  # type: ignore[union-attr, no-any-return]
