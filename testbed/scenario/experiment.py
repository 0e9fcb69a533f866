"""Workloads' experiment files (the YAML beside a scenario, e.g. edge-llm.llm.yaml): read and
validated with one rule for all, so every bad file is refused the same way - the file, each
field and the fix - before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from testbed.scenario.errors import field_path
from testbed.scenario.files import FileProblem, read_yaml

M = TypeVar("M", bound=BaseModel)


def load_model(path: str | Path, model: type[M], error: type[Exception], fmt: str) -> M:
    """`model` validated from the YAML file at `path`; `error` (the workload's exception)
    names the file and each bad field, with `fmt` (where the format is documented) as the
    fix."""
    path = Path(path)
    try:
        data = read_yaml(path) or {}
    except OSError as exc:
        raise error(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except FileProblem as exc:
        where = f" ({exc.where})" if exc.where else ""
        raise error(f"{path}{where}: {exc.message}\n  fix: {exc.fix}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: {len(exc.errors())} problem(s):"]
        for e in exc.errors():
            where = field_path(tuple(e["loc"])) or "(file)"
            lines.append(f"  {where}: {e['msg'].removeprefix('Value error, ')}")
        lines.append(f"  fix: see the format in {fmt}")
        raise error("\n".join(lines)) from None
