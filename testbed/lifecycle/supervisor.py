"""One supervisor per run starts every long-running process (ns-3, OVS, os-ken, traffic,
captures), records it in the ledger before anything else can happen, watches the critical
ones, and stops them all in reverse order.  No silent daemon failures: a critical process that
exits makes `check()` raise with the tail of its log - or, for a process started with
`restart=N`, starts it again (at most N times), as a real deployment's service manager would
(the SDN controller: the switches keep their flows and reconnect).  Each restart is recorded in
`events` with the moment it was detected.

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
    """A critical process is gone.  `component` names it (the supervisor's name for it) and
    `detected_wall` is when the runner noticed, so a run can end `failed: <component>`."""

    def __init__(self, message: str, component: str | None = None) -> None:
        super().__init__(message)
        self.component = component
        self.detected_wall = time.time()


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen[bytes]
    record: ProcRecord
    log: Path
    critical: bool
    argv: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    stdout: Path | None = None
    restarts_left: int = 0
    watch: bool = False  # not critical, but its early end is recorded (captures)

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
        # restarts and early ends of watched processes, with when they were detected
        self.events: list[dict[str, object]] = []

    def start(self, name: str, argv: Sequence[str], *, netns: str | None = None,
              log: Path | None = None, env: Mapping[str, str] | None = None,
              critical: bool = False, stdout: Path | None = None,
              cgroup: CgroupHandle | None = None, restart: int = 0,
              watch: bool = False) -> Managed:
        """`cgroup`: the node's group (CPU quota, memory limit).  The child joins it itself,
        before `ip netns exec` (which remounts /sys, hiding the cgroup files), and keeps the
        same pid through the execs, so the ledger's record and signals still reach it.
        `restart`: how often `check()` may start a dead critical process again.  `watch`: a
        process the run can do without (a capture), whose early end is recorded in `events`."""
        log = log or self.log_dir / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        full = in_netns(netns, argv) if netns else list(argv)
        if cgroup is not None:
            full = join_argv(cgroup, full)
        popen, rec = self._spawn(name, full, log, env, stdout, netns)
        managed = Managed(name, popen, rec, log, critical, full, env, stdout, restart, watch)
        self.procs.append(managed)
        return managed

    def _spawn(self, name: str, full: Sequence[str], log: Path, env: Mapping[str, str] | None,
               stdout: Path | None, netns: str | None,
               again: bool = False) -> tuple[subprocess.Popen[bytes], ProcRecord]:
        err = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        out = open(stdout, "ab" if again else "wb") if stdout else err  # noqa: SIM115
        try:
            popen = subprocess.Popen(
                full, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})},
            )
        finally:
            err.close()
            if stdout:
                out.close()
        return popen, self.ledger.add_process(popen.pid, name, netns)

    def check(self) -> None:
        for m in self.procs:
            if m.watch and m.popen.poll() is not None:
                m.watch = False
                self.events.append({"component": m.name, "action": "ended early",
                                    "exit_status": m.popen.returncode,
                                    "detected_wall": time.time()})
            if m.critical and m.popen.poll() is not None:
                if m.restarts_left > 0:
                    self._restart(m)
                    continue
                raise ServiceDied(f"{m.name} exited with status {m.popen.returncode}; "
                                  f"last lines of {m.log}:\n{m.tail()}", component=m.name)

    def _restart(self, m: Managed) -> None:
        status = m.popen.returncode
        m.restarts_left -= 1
        with open(m.log, "ab") as f:
            f.write(f"\n--- exited with status {status}; restarted by the supervisor ---\n"
                    .encode())
        m.popen, m.record = self._spawn(m.name, m.argv, m.log, m.env, m.stdout,
                                        m.record.netns, again=True)
        self.events.append({"component": m.name, "action": "restarted", "exit_status": status,
                            "detected_wall": time.time(), "restarts_left": m.restarts_left})

    def abandon(self, netns: str) -> None:
        """The processes of a crashed node: no longer critical, watched or restarted."""
        for m in self.procs:
            if m.record.netns == netns:
                m.critical = m.watch = False
                m.restarts_left = 0

    def stop(self, managed: Managed, timeout: float = 3.0) -> None:
        managed.critical = managed.watch = False
        terminate([managed.record], timeout)
        if managed.popen.poll() is None:
            managed.popen.wait(timeout=1)

    def stop_many(self, managed: Sequence[Managed], timeout: float = 3.0) -> None:
        """Stop several processes at once (one grace period for all of them)."""
        for m in managed:
            m.critical = m.watch = False
        terminate([m.record for m in managed], timeout)
        for m in managed:
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
