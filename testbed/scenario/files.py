"""Reading the YAML files people give the testbed (scenarios and their includes, inventories,
experiment files) with bounds, so that a malformed file is a named problem - where in the
file, what is wrong, what to do - and never a traceback from inside the parser.

Bounded: size (a scenario is kilobytes; a multi-megabyte file is the wrong file), encoding
(UTF-8 text: a binary or Latin-1 file is named with the offending byte and line), nesting
(PyYAML's parser recurses: a few thousand `[` exhaust Python's stack), and values (NaN and
infinity parse as floats and would slip through range checks such as `delay_ms >= 0`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from testbed.scenario.errors import Problem, ScenarioError

MAX_BYTES = 4 << 20
MAX_DEPTH = 40


class FileProblem(Exception):
    """One problem with a file: `where` (line/column or a field path), message, fix."""

    def __init__(self, where: str, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.where, self.message, self.fix = where, message, fix


def read_yaml(path: Path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed document.  FileNotFoundError (and other OSErrors) pass through for the
    caller to word; everything about the content is a FileProblem."""
    size = path.stat().st_size
    if size > max_bytes:
        raise FileProblem("", f"the file is {size:,} bytes; a YAML file here is at most "
                          f"{max_bytes:,}", "is it the right file?")
    raw = path.read_bytes()
    nul = raw.find(b"\0")
    if nul >= 0:
        raise FileProblem(f"byte {nul}", "a binary file (it contains NUL bytes), not YAML "
                          "text", "give the YAML text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise FileProblem(f"line {line}", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start}", "save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise FileProblem("", "nested too deeply for the YAML parser",
                          f"keep nesting under {max_depth} levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FileProblem(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          "check indentation and quoting") from None
    _check(data, max_depth)
    return data


def read_or_raise(path: Path, error: type[ScenarioError]) -> Any:
    """read_yaml with every problem but a missing file (which callers word themselves) raised
    as `error` (ScenarioError or a subclass) naming the file."""
    try:
        return read_yaml(path)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise error(path, [Problem("", "a directory, not a file",
                                   "give the YAML file")]) from None
    except OSError as exc:
        raise error(path, [Problem("", f"cannot read it: {exc.strerror or exc}",
                                   "check the path and its permissions")]) from None
    except FileProblem as exc:
        raise error(path, [Problem(exc.where, exc.message, exc.fix)]) from None


def _check(data: Any, max_depth: int) -> None:
    """Depth and finite numbers, iteratively (a deep document must not recurse here either)."""
    todo: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while todo:
        node, path = todo.pop()
        if len(path) > max_depth:
            raise FileProblem(_where(path[:6]) + "...", f"nested deeper than {max_depth} "
                              "levels", "flatten it: no scenario needs this depth")
        if isinstance(node, dict):
            todo += [(v, (*path, k)) for k, v in node.items()]
        elif isinstance(node, list):
            todo += [(v, (*path, i)) for i, v in enumerate(node)]
        elif isinstance(node, float) and not math.isfinite(node):
            raise FileProblem(_where(path), f"{node} is not a finite number",
                              "give a number (NaN and infinity are refused)")


def _where(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
