"""Scenario errors as values a person can act on: file, field path, reason, fix."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path


def field_path(loc: tuple[object, ...]) -> str:
    """A pydantic error location as people write it: `links[2].delay_ms`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def suggest(name: str, known: list[str], what: str) -> str:
    """The fix for an unknown name: the closest known one, and the known ones."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    listed = ", ".join(sorted(known)[:12]) + (" ..." if len(known) > 12 else "")
    return f"{hint}known {what}: {listed or '(none)'}"


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "links[2].delay_ms"; "" for the whole file
    message: str
    fix: str = ""

    def render(self) -> str:
        where = self.path or "(file)"
        text = f"  {where}: {self.message}"
        if self.fix:
            text += f"\n      fix: {self.fix}"
        return text


@dataclass
class ScenarioError(Exception):
    file: Path | str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.file}: {n} problem{'s' if n != 1 else ''}"
        return "\n".join([head, *(p.render() for p in self.problems)])
