"""One supervisor per run starts every long-running process (ns-3, OVS, os-ken, traffic,
captures), records it in the ledger before anything else can happen, watches the critical
ones, and stops them all in reverse order.  No silent daemon failures: a critical process that
exits makes `check()` raise with the tail of its log.

A process started with a node's cgroup (`start(..., cgroup=...)`, from
testbed/devices/cgroups.py) runs inside that group from its first instruction: see
`cgroups.join_argv` for why it is a wrapper and not an attach after Popen."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.devices.cgroups import CgroupHandle, join_argv
from testbed.lifecycle.ledger import Ledger, ProcRecord
from testbed.lifecycle.sh import in_netns


class ServiceDied(RuntimeError):
    pass


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen[bytes]
    record: ProcRecord
    log: Path
    critical: bool

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    def __init__(self, ledger: Ledger, log_dir: Path) -> None:
        self.ledger = ledger
        self.log_dir = log_dir
        self.procs: list[Managed] = []

    def start(self, name: str, argv: Sequence[str], *, netns: str | None = None,
              log: Path | None = None, env: Mapping[str, str] | None = None,
              critical: bool = False, stdout: Path | None = None,
              cgroup: CgroupHandle | None = None) -> Managed:
        """`cgroup`: the node's group (CPU quota, memory limit).  The child joins it itself,
        before `ip netns exec` (which remounts /sys, hiding the cgroup files), and keeps the
        same pid through the execs, so the ledger's record and signals still reach it."""
        log = log or self.log_dir / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        full = in_netns(netns, argv) if netns else list(argv)
        if cgroup is not None:
            full = join_argv(cgroup, full)
        err = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        out = open(stdout, "wb") if stdout else err  # noqa: SIM115
        try:
            popen = subprocess.Popen(
                full, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})},
            )
        finally:
            err.close()
            if stdout:
                out.close()
        rec = self.ledger.add_process(popen.pid, name, netns)
        managed = Managed(name, popen, rec, log, critical)
        self.procs.append(managed)
        return managed

    def check(self) -> None:
        for m in self.procs:
            if m.critical and m.popen.poll() is not None:
                raise ServiceDied(f"{m.name} exited with status {m.popen.returncode}; "
                                  f"last lines of {m.log}:\n{m.tail()}")

    def stop(self, managed: Managed, timeout: float = 3.0) -> None:
        terminate([managed.record], timeout)
        if managed.popen.poll() is None:
            managed.popen.wait(timeout=1)
        managed.critical = False

    def stop_many(self, managed: Sequence[Managed], timeout: float = 3.0) -> None:
        """Stop several processes at once (one grace period for all of them)."""
        terminate([m.record for m in managed], timeout)
        for m in managed:
            m.critical = False
            try:
                m.popen.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def stop_all(self, timeout: float = 3.0) -> None:
        terminate([m.record for m in reversed(self.procs)], timeout)
        for m in self.procs:
            try:
                m.popen.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()


def _signal_group(rec: ProcRecord, sig: int) -> None:
    if not rec.alive():
        return
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(rec.pid, sig)


def terminate(records: Sequence[ProcRecord], timeout: float = 3.0) -> None:
    """SIGTERM each process group, then SIGKILL what is still alive after `timeout`."""
    for rec in records:
        _signal_group(rec, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(r.alive() for r in records):
        time.sleep(0.05)
    for rec in records:
        _signal_group(rec, signal.SIGKILL)
