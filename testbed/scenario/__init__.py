"""Scenario files: model (what), loader (YAML + include), references (cross-checks)."""

from testbed.scenario.errors import Problem, ScenarioError
from testbed.scenario.loader import available, dump, load, parse, resolve
from testbed.scenario.model import Scenario

__all__ = ["Problem", "Scenario", "ScenarioError", "available", "dump", "load", "parse",
           "resolve"]
