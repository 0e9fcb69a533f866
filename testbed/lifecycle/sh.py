"""Running host commands: one place for subprocess policy (errors carry the command and its
stderr; `ip -batch` for bulk changes so that a 100-node network costs a few processes)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence


class CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], rc: int, stderr: str) -> None:
        self.argv, self.rc, self.stderr = list(argv), rc, stderr.strip()
        super().__init__(f"`{' '.join(argv)}` failed (exit {rc}): {self.stderr}")


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None,
        timeout: float = 60.0, env: Mapping[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def ip_batch(lines: Iterable[str], netns: str | None = None, *, force: bool = False) -> None:
    """Apply many `ip` commands in one process (`ip -batch -`); stops at the first error
    unless force, in which case the errors of already-gone objects are tolerated."""
    text = "\n".join(lines)
    if not text:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + [
        "-batch", "-"]
    proc = subprocess.run(argv, input=text + "\n", capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and not force:
        raise CommandError(argv, proc.returncode, proc.stderr + "\n(batch input:\n" + text + ")")


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]
