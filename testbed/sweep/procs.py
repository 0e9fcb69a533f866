"""The processes a sweep started, found by id in /proc: a session (`ray start` in its own),
or the descendants of this process (an in-process Ray), and among them the testbed runs that
must be let finish their teardown before anything of Ray is killed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _stat(pid: int) -> list[str]:
    """state, ppid, pgrp, session, ... (after the command name, which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _live() -> dict[int, list[str]]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st and st[0] != "Z":
                out[int(d.name)] = st
    return out


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (what one `ray start` left, workers included)."""
    return [pid for pid, st in _live().items() if int(st[3]) == sid]


def descendants(root: int) -> list[int]:
    """Every live descendant of `root`."""
    parent = {pid: int(st[1]) for pid, st in _live().items()}
    out: set[int] = set()
    changed = True
    while changed:
        more = {pid for pid, pp in parent.items() if (pp == root or pp in out)} - out
        changed = bool(more)
        out |= more
    return sorted(out)


def runs_among(pids: Iterable[int]) -> set[int]:
    """The testbed runners (python -m testbed run) among `pids`, with all their descendants."""
    pids = list(pids)
    runners = {pid for pid in pids if b"testbed\0run\0" in cmdline(pid)}
    return runners | {d for r in runners for d in descendants(r)}


def until(done: Callable[[], bool], timeout: float, tick: Callable[[], object] | None = None
          ) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        if tick:
            tick()
        time.sleep(0.2)
    return True


def kill(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
