"""Reading a sweep file: its fields, then every configuration applied to the scenario (or
checked against the evaluation's flags), so a typo stops the sweep before any run starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from testbed.scenario import ScenarioError, load
from testbed.scenario.errors import Problem, suggest
from testbed.scenario.files import read_or_raise
from testbed.scenario.loader import resolve
from testbed.sweep.expand import expand
from testbed.sweep.spec import Spec, SweepError, problem


def load_spec(path: str | Path) -> tuple[Spec, Path | None]:
    """The validated spec and, for a scenario sweep, the scenario file it names."""
    path = Path(path)
    data = read_or_raise(path, SweepError,
                         missing="give a sweep file such as sweeps/quickstart-satdelay.yaml")
    if not isinstance(data, dict):
        raise SweepError(path, [Problem("", "the file must be a mapping (name:, scenario:, "
                                        "parameters:, metrics:)", "see docs/sweeps.md")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SweepError(path, [problem(e) for e in exc.errors()]) from None
    scenario = _scenario_file(spec, path) if spec.scenario else None
    problems = check_eval(spec) if spec.eval else check_scenario(spec, scenario)
    if problems:
        raise SweepError(path, problems)
    return spec, scenario


def _scenario_file(spec: Spec, path: Path) -> Path:
    assert spec.scenario is not None
    if spec.scenario.endswith((".yaml", ".yml")):
        p = Path(spec.scenario)
        p = p if p.is_absolute() else (path.parent / p)
        if not p.is_file():
            alt = Path.cwd() / spec.scenario
            if not alt.is_file():
                raise SweepError(path, [Problem("scenario", f"no such file {p}",
                                                "a path relative to the sweep file, or a "
                                                "name from make scenarios")])
            p = alt
        return p.resolve()
    try:
        return resolve(spec.scenario)
    except ScenarioError as exc:
        raise SweepError(path, [Problem("scenario", exc.problems[0].message,
                                        exc.problems[0].fix)]) from None


def check_scenario(spec: Spec, scenario: Path | None) -> list[Problem]:
    """Every configuration applied to the scenario and validated: nothing starts on a typo."""
    assert scenario is not None
    problems: list[Problem] = []
    seen: set[str] = set()
    for cfg in expand(spec):
        sets = {k: v for k, v in cfg.params.items() if k != "duration"}
        sets["seed"] = cfg.seed
        try:
            load(scenario, sets=sets, cut_to_s=cfg.params.get("duration", spec.duration))
        except ScenarioError as exc:
            for p in exc.problems:
                key = f"{p.path}: {p.message}"
                if key not in seen:
                    seen.add(key)
                    problems.append(Problem(f"parameters.{p.path}" if p.path else "parameters",
                                            f"{scenario.name}: {p.message} (with "
                                            f"{cfg.label()})", p.fix))
    return problems


def check_eval(spec: Spec) -> list[Problem]:
    from testbed.workloads import Registry

    evals = Registry.installed().evals()
    if spec.eval not in evals:
        return [Problem("eval", f"no evaluation named '{spec.eval}'",
                        suggest(spec.eval or "", list(evals), "evaluations"))]
    make_vars = evals[spec.eval].make_vars
    problems = []
    keys = list(spec.parameters) + [k for r in spec.runs for k in r]
    for k in dict.fromkeys(keys):
        if not (k.startswith("--") or k in make_vars):
            problems.append(Problem(f"parameters.{k}", "not a flag of the evaluation",
                                    f"use a flag (--algos) or one of its make variables: "
                                    f"{', '.join(make_vars) or '(none)'}"))
    return problems
