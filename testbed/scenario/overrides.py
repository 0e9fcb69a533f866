"""Dotted-path overrides of a scenario's raw data: `links.sat-up.delay_ms=20`.

The sweeps (testbed/sweep) and `python -m testbed run --set` change one field of a scenario
without copying the file.  A path walks mappings by key and lists by the `name` of their items
(`links.sat-up`, `traffic.ping-cloud`), or by index (`timeline.0.at_s`); a missing mapping key
is created (pydantic then says whether the field exists), a missing list item is an error that
lists the names there are.  The result is validated like any scenario file, so a typo in a
path is reported with the same field, reason and fix as in the file.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from testbed.scenario.errors import Problem, suggest


class PathError(ValueError):
    """A dotted path that does not lead anywhere in the data, as a Problem to show."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.render())
        self.problem = problem


def set_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with `value` at the dotted `path` (the input is left untouched)."""
    out = copy.deepcopy(data)
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise PathError(Problem(path, "empty part in the dotted path",
                                "write it like links.sat-up.delay_ms"))
    node: Any = out
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[:i + 1])
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list):
            idx = _index(node, part, where)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        else:
            raise PathError(Problem(where, f"{'.'.join(parts[:i]) or 'the file'} is a "
                                    f"{type(node).__name__}, not a mapping or list",
                                    "shorten the path to end at that field"))
    return out


def _index(items: list[Any], part: str, where: str) -> int:
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    if part.lstrip("-").isdigit() and -len(items) <= int(part) < len(items):
        return int(part)
    names = [str(x["name"]) for x in items if isinstance(x, dict) and "name" in x]
    raise PathError(Problem(where, f"no item named '{part}' in this list",
                            suggest(part, names, "names") if names
                            else f"use an index 0..{len(items) - 1}"))


def apply(data: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    for path, value in sets.items():
        data = set_path(data, path, value)
    return data


def parse_sets(words: list[str]) -> dict[str, Any]:
    """`PATH=VALUE` words (the value read as YAML: 20 is a number, [1, 2] a list)."""
    out: dict[str, Any] = {}
    for word in words:
        path, eq, value = word.partition("=")
        if not eq or not path:
            raise PathError(Problem(word, "not PATH=VALUE",
                                    "e.g. --set links.sat-up.delay_ms=20"))
        out[path.strip()] = yaml.safe_load(value)
    return out
