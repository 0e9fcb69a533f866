"""Shipped topologies expanded (constellations, access links) for the mobility tests."""

from __future__ import annotations

from pathlib import Path

from testbed import scenario
from testbed.mobility.world import World

TOPO = Path(__file__).resolve().parents[1] / "topologies"


def expanded(name: str) -> World:
    path = TOPO / f"{name}.yaml"
    return World.build(scenario.load(path), str(path))
