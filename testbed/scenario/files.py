"""Reading the YAML files people give the testbed (scenarios and their includes, inventories,
experiment files) with bounds, so that a malformed file is a named problem - where in the
file, what is wrong, what to do - and never a traceback from inside the parser.

Bounded: size (a scenario is kilobytes; a multi-megabyte file is the wrong file), encoding
(UTF-8 text: a binary or Latin-1 file is named with the offending byte and line), nesting
(PyYAML's parser recurses: a few thousand `[` exhaust Python's stack), and values (NaN and
infinity parse as floats and would slip through range checks such as `delay_ms >= 0`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from testbed.scenario.errors import Problem, ScenarioError

MAX_BYTES = 4 << 20
# where runs write their folders; a scenario may replay what a run recorded (a drive, a flight)
RESULTS = Path(os.environ.get("SAGIN_RESULTS", Path(__file__).resolve().parents[2] / "results"))
MAX_DEPTH = 40


class FileProblem(ValueError):
    """One problem with a file: `where` (line/column or a field path), message, fix.  A
    ValueError, so the readers' callers that word ValueErrors already catch it."""

    def __init__(self, where: str, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.where, self.message, self.fix = where, message, fix


def read_text(path: Path, max_bytes: int = MAX_BYTES, encoding: str = "utf-8",
              kind: str = "YAML") -> str:
    """The file's text, refused when too large, binary (NUL bytes) or not in `encoding`.
    OSErrors pass through; content problems are FileProblems."""
    size = path.stat().st_size
    if size > max_bytes:
        raise FileProblem("", f"the file is {size:,} bytes; a {kind} file here is at most "
                          f"{max_bytes:,}", "is it the right file?")
    raw = path.read_bytes()
    nul = raw.find(b"\0")
    if nul >= 0:
        raise FileProblem(f"byte {nul}", f"a binary file (it contains NUL bytes), not {kind} "
                          "text", f"give the {kind} text file")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        name = "ASCII" if encoding == "ascii" else encoding.upper()
        raise FileProblem(f"line {line}", f"not {name} text: byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start}", f"save the file as {name}") from None


def text_of(path: Path, max_bytes: int, kind: str, encoding: str = "utf-8") -> str:
    """read_text for the line-oriented readers (traces, TLEs), whose errors are ValueErrors
    that start with the file's path."""
    try:
        return read_text(path, max_bytes, encoding, kind)
    except FileProblem as exc:
        where = f":{exc.where.removeprefix('line ')}" if exc.where.startswith("line") else ""
        raise ValueError(f"{path}{where}: {exc.message} ({exc.fix})") from None


def finite(text: str | None) -> float:
    """A CSV cell as a finite float: `nan`, `inf` and `1e400` parse in Python but are no
    position or time, and would pass every later `<`/`>=` check unnoticed."""
    value = float(text)  # type: ignore[arg-type]  # None raises TypeError, as callers expect
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def referenced(name: str, folders: list[Path], allowed: list[Path]) -> Path | None:
    """The first existing `folder/name`, or None.  A name that leads outside every `allowed`
    folder (`../../etc/passwd`, an absolute path, a symlink out) is a FileProblem: a
    scenario reads the files beside it and the shipped ones, nothing else on the host."""
    for folder in folders:
        target = (folder / name).resolve()
        if not any(target.is_relative_to(a.resolve()) for a in allowed):
            raise FileProblem("", f"'{name}' leads outside the folders a scenario reads "
                              f"from ({', '.join(str(a) for a in allowed)})",
                              "copy the file next to the scenario")
        if target.is_file():
            return target
    return None


def read_yaml(path: Path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed document.  FileNotFoundError (and other OSErrors) pass through for the
    caller to word; everything about the content is a FileProblem."""
    text = read_text(path, max_bytes)
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


def read_json(path: Path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """read_yaml's bounds for a JSON file: size, NUL, UTF-8, depth (json's decoder recurses
    too), finite numbers (NaN and Infinity are no JSON, though Python's decoder takes them)."""
    text = read_text(path, max_bytes, kind="JSON")
    try:
        data = json.loads(text, parse_constant=reject_constant)
    except RecursionError:
        raise FileProblem("", "nested too deeply for the JSON parser",
                          f"keep nesting under {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise FileProblem(f"line {exc.lineno}, column {exc.colno}",
                          f"not valid JSON: {exc.msg}", "check brackets, commas and quotes"
                          ) from None
    except ValueError as exc:  # a NaN / Infinity literal
        raise FileProblem("", str(exc), "give a number") from None
    _check(data, max_depth)
    return data


def reject_constant(name: str) -> Any:
    """json's `parse_constant`: NaN, Infinity and -Infinity are refused (ValueError)."""
    raise ValueError(f"{name} is not a finite number (and not JSON)")


def read_or_raise(path: Path, error: type[ScenarioError], missing: str | None = None) -> Any:
    """read_yaml with every problem raised as `error` (ScenarioError or a subclass) naming the
    file; a missing file too when `missing` (the fix to suggest) is given, else it is left to
    the caller to word (FileNotFoundError: a missing include is the including file's problem)."""
    try:
        return read_yaml(path)
    except FileNotFoundError:
        if missing is None:
            raise
        raise error(path, [Problem("", "no such file", missing)]) from None
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
