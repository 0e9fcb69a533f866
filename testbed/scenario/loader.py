"""Reading scenario files: YAML, `include:` of other files, validation, readable errors.

`include: base.yaml` (or a list) loads the named files first (paths relative to the including
file, inside the top scenario's folder or topologies/) and lays this file over them: mappings
merge key by key, lists of named entries (links, traffic) merge by `name` (same name replaces,
new names append), the timeline appends, and other lists (a position, endpoints) are
replaced.  This lets a scenario extend
another without copying it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from testbed.scenario import references
from testbed.scenario.errors import Problem, ScenarioError, field_path
from testbed.scenario.files import read_or_raise
from testbed.scenario.model import Scenario
from testbed.scenario.overrides import PathError
from testbed.scenario.overrides import apply as apply_sets
from testbed.scenario.schema import scenario_model
from testbed.workloads import Registry

TOPOLOGY_DIR = Path(__file__).resolve().parents[2] / "topologies"


def available(directory: Path = TOPOLOGY_DIR) -> dict[str, Path]:
    """Runnable scenarios: every YAML file in topologies/ except include-only fragments
    (`_name.yaml`) and a scenario's companion files (`name.cpn.yaml`, `name.llm.yaml`: the
    experiment a scenario's command reads, not a scenario)."""
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))
            if not p.stem.startswith("_") and "." not in p.stem}


def resolve(name: str | None = None, file: str | Path | None = None) -> Path:
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ScenarioError(path, [Problem("", "no such file", "give an existing YAML path")])
        return path
    scenarios = available()
    if name not in scenarios:
        listing = ", ".join(scenarios) or "(none)"
        close = difflib.get_close_matches(name or "", list(scenarios), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ScenarioError(f"topologies/{name}.yaml", [
            Problem("", f"no scenario named '{name}'",
                    f"{hint}available: {listing} (or run a file with FILE=<path>)")])
    return scenarios[name]


APPENDED_LISTS = {"timeline"}


def _merge(base: Any, over: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list):
        named = all(isinstance(x, dict) and "name" in x for x in base + over)
        if not named:
            # the timeline accumulates; value lists (position, endpoints) are replaced
            return base + over if key in APPENDED_LISTS else over
        out = list(base)
        index = {x["name"]: i for i, x in enumerate(out)}
        for x in over:
            if x["name"] in index:
                out[index[x["name"]]] = x
            else:
                out.append(x)
        return out
    return over


def _read(path: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise ScenarioError(stack[0], [Problem("include", f"include cycle: {chain}",
                                               "remove one of the includes")])
    try:
        data = read_or_raise(path, ScenarioError) or {}
    except FileNotFoundError:
        if not stack:
            raise ScenarioError(path, [Problem("", "no such file", "give the path of a "
                                               "scenario YAML file (make scenarios lists "
                                               "the shipped ones)")]) from None
        raise ScenarioError(stack[-1], [
            Problem("include", f"included file {path} does not exist",
                    "paths are relative to the including file")]) from None
    if not isinstance(data, dict):
        raise ScenarioError(path, [Problem("", "the file must be a mapping (name:, nodes:, ...)",
                                           "see topologies/quickstart.yaml")])
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ScenarioError(path, [Problem("include", "must be a file name or a list of them",
                                           "e.g. include: _sagin-offload-net.yaml")])
    merged: dict[str, Any] = {}
    root = (stack[0] if stack else path).parent
    for inc in includes:
        target = (path.parent / inc).resolve()
        if not (target.is_relative_to(root) or target.is_relative_to(TOPOLOGY_DIR)):
            raise ScenarioError(path, [Problem("include", f"{inc} is outside the scenario's "
                                               f"folder {root} (and outside topologies/)",
                                               "copy the file next to the scenario")])
        merged = _merge(merged, _read(target, (*stack, path)))
    return _merge(merged, data)


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that owns the last field of `loc` (for typo suggestions)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        fields = getattr(model, "model_fields", {})
        if part in fields:
            ann = fields[part].annotation
            model = _inner_model(ann)
        # dict keys (node names) keep the value model
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _problem(err: dict[str, Any], root: type[BaseModel]) -> Problem:
    loc = tuple(err["loc"])
    path = field_path(loc)
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    fix = ""
    if kind == "extra_forbidden":
        model = _model_at(loc, root)
        fields = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        msg = f"unknown field '{loc[-1]}'"
        fix = (f"did you mean '{close[0]}'? " if close else "") + (
            f"allowed: {', '.join(fields)}" if fields else "remove it")
    elif kind == "missing":
        msg = "required field is missing"
        fix = f"add {loc[-1]}:"
    elif kind == "string_pattern_mismatch":
        fix = "names are lower-case letters, digits, '-' or '_', start with a letter, max 32"
    elif kind == "enum" or kind == "literal_error":
        fix = "use one of the listed values"
    return Problem(path, msg, fix)


def parse(data: dict[str, Any], source: Path | str,
          registry: Registry | None = None) -> Scenario:
    """Validate against the schema of `registry` (default: the installed workloads)."""
    model = scenario_model(registry)
    try:
        sc = model.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, [_problem(e, model) for e in exc.errors()]) from None
    problems = references.check(sc, registry)
    if problems:
        raise ScenarioError(source, problems)
    return sc


def _cut(data: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """Shorten a run: flows are clipped to the new end, later timeline events dropped."""
    out = dict(data, duration_s=duration_s)
    flows = []
    for f in data.get("traffic", []) or []:
        if not isinstance(f, dict):
            flows.append(f)
            continue
        start = float(f.get("start_s", 0) or 0)
        if start + 0.5 > duration_s:
            continue  # less than half a second left: nothing useful to measure
        if "duration_s" in f and start + float(f["duration_s"]) > duration_s:
            f = dict(f, duration_s=duration_s - start)
        flows.append(f)
    out["traffic"] = flows
    out["timeline"] = [e for e in data.get("timeline", []) or []
                       if not isinstance(e, dict) or float(e.get("at_s", 0)) <= duration_s]
    return out


def load(path: str | Path, overrides: dict[str, Any] | None = None,
         cut_to_s: float | None = None, sets: dict[str, Any] | None = None) -> Scenario:
    """Load, merge includes, apply overrides and dotted `sets` (testbed.scenario.overrides:
    `links.sat-up.delay_ms`), optionally shorten the run, validate."""
    path = Path(path)
    data = _read(path, ())
    if overrides:
        data = _merge(data, overrides)
    if sets:
        try:
            data = apply_sets(data, sets)
        except PathError as exc:
            raise ScenarioError(path, [exc.problem]) from None
    if cut_to_s is not None:
        data = _cut(data, cut_to_s)
    return parse(data, path)


def dump(sc: Scenario) -> str:
    return yaml.safe_dump(sc.model_dump(mode="json", exclude_none=True), sort_keys=False)
