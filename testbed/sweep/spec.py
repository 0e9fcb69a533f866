"""A sweep file (sweeps/<name>.yaml): what to vary, over which seeds, what to tabulate.

    name: quickstart-satdelay
    scenario: quickstart          # a name in topologies/ or a path (relative to this file)
    duration: 10                  # optional: --duration of every run
    mode: grid                    # grid | random | list
    parameters:                   # dotted paths into the scenario (list items by name)
      links.sat-up.delay_ms: [6, 20]
    seeds: [1, 2]                 # every configuration once per seed (the scenario's seed)
    metrics:                      # table columns: dotted paths into each run's metrics.json
      rtt_ms: flows.ping-cloud.rtt_ms_median

or, for a workload's evaluation, `eval: cpn` with parameters that are its flags (`--algos`) or
its make variables (`ALGOS`), `args:` fixed for every run, and metrics read from its
results.json (a `{--algos}` in a metric path is replaced by the run's value).

Everything is checked before a run starts: the file's fields (pydantic, with the same
"field: reason / fix" errors as scenario files), and for scenarios every configuration is
applied to the scenario and validated, so a mistyped path or an out-of-range value names the
sweep file, the parameter and the scenario's own complaint.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed.scenario import ScenarioError
from testbed.scenario.errors import Problem, field_path, suggest


class SweepError(ScenarioError):
    """A sweep file's problems: the file, each field, the reason and the fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Span(Strict):
    """A range for random sampling: uniform in [min, max] (log-uniform with log: true),
    integers with int: true."""

    min: float
    max: float
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _order(self) -> Span:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        if self.log and self.min <= 0:
            raise ValueError("log: true needs min > 0")
        return self


class Spec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    description: str = ""
    scenario: str | None = Field(default=None, description="topologies/ name or a path")
    eval: str | None = Field(default=None, description="a workload's evaluation (make eval-X)")
    mode: Literal["grid", "random", "list"] = "grid"
    parameters: dict[str, list[Any] | Span] = Field(default_factory=dict)
    runs: list[dict[str, Any]] = Field(default_factory=list, description="mode: list")
    samples: int | None = Field(default=None, ge=1, le=100_000, description="mode: random")
    sample_seed: int = Field(default=0, ge=0, description="the random mode's generator seed")
    seeds: list[int] = Field(default_factory=lambda: [1], min_length=1)
    seed_flag: str | None = Field(default=None, description="eval: the flag given the seed")
    duration: float | None = Field(default=None, gt=0)
    args: list[str] = Field(default_factory=list, description="eval: fixed extra arguments")
    out_flag: str = "--out"
    results_file: str = "results.json"
    metrics: dict[str, str] = Field(min_length=1)
    cpus: float = Field(default=1.0, ge=0.0, le=256.0, description="CPUs each task holds")
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _shape(self) -> Spec:
        if (self.scenario is None) == (self.eval is None):
            raise ValueError("give exactly one of scenario: and eval:")
        if self.mode == "random":
            if self.samples is None:
                raise ValueError("mode: random needs samples: N")
        elif any(isinstance(v, Span) for v in self.parameters.values()):
            raise ValueError("{min, max} ranges are for mode: random; grid takes lists")
        if self.mode == "list" and not self.runs:
            raise ValueError("mode: list needs runs: [{path: value, ...}, ...]")
        if self.mode != "list" and self.runs:
            raise ValueError("runs: is for mode: list")
        if any(isinstance(v, list) and not v for v in self.parameters.values()):
            raise ValueError("every parameter needs at least one value")
        return self

    @property
    def kind(self) -> str:
        return "emulation" if self.scenario else "eval"

    def run_timeout(self) -> float:
        if self.timeout_s:
            return self.timeout_s
        return (self.duration or 600.0) + 300.0


def problem(err: dict[str, Any]) -> Problem:
    loc = tuple(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    fix = ""
    if err["type"] == "extra_forbidden":
        fields = list(Spec.model_fields)
        msg = f"unknown field '{loc[-1]}'"
        fix = suggest(str(loc[-1]), fields, "fields")
    elif err["type"] == "missing":
        msg, fix = "required field is missing", f"add {loc[-1]}:"
    return Problem(field_path(loc), msg, fix or "see docs/sweeps.md")
