"""Installing routes when the topology changes: central computation, pushed as diffs.

Why central and not a routing daemon (FRR/OSPF): the testbed knows every link change the
instant it decides it (and orbits are known in advance), so recomputing shortest paths here
and pushing only the routes that changed converges in the time of a few `ip -batch`
processes (measured by `make bench BENCH=mobility`, tens of milliseconds), whereas OSPF
needs its dead interval (seconds by default, hundreds of milliseconds even with BFD) to even
notice a silent link.  This is also what Hypatia and StarryNet do for LEO routing.

Each namespace has one long-lived `ip -force -batch -` process (line-buffered through
`stdbuf`), so an install is a write to a pipe, not a fork: the changes go to every affected
namespace first, then each process's acknowledgement is read back (a `link show dev lo`
marker after the batch; anything before it is an error message).  Installing 50 routes in a
namespace this way takes under a millisecond; a namespace whose table did not change is not
touched.  Every install is timed and counted for the run's metrics.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.net.plan import Route


@dataclass
class InstallReport:
    started: float  # time.monotonic()
    seconds: float
    namespaces: int
    added_or_changed: int
    removed: int
    errors: list[str] = field(default_factory=list)


def diff(old: list[Route], new: list[Route]) -> tuple[list[str], int, int]:
    """`ip -batch` lines turning table `old` into `new`: replaces first (so traffic moves to
    the new next hop without a gap), deletions after."""
    before = {r.subnet: r for r in old}
    after = {r.subnet: r for r in new}
    lines = [r.line() for s, r in after.items() if before.get(s) != r]
    changed = len(lines)
    gone = [s for s in before if s not in after]
    lines += [f"route del {s}" for s in gone]
    return lines, changed, len(gone)


MARKER = "link show dev lo"


class IpShell:
    """A persistent `ip -batch` in one namespace; `send` then `wait` for its errors."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "ip", "-n", netns, "-force", "-batch", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True)

    def send(self, lines: list[str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{x}\n" for x in lines) + MARKER + "\n")
        self.proc.stdin.flush()

    def wait(self) -> list[str]:
        """Lines ip printed before the marker's output: its error messages."""
        assert self.proc.stdout is not None
        errors = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the ip batch process of {self.netns} exited")
            if "link/loopback" in line:
                return errors
            if not line.startswith("1: lo:"):
                errors.append(line.strip())

    def hang_up(self) -> None:
        """Close its stdin: ip finishes the batch and exits."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass

    def close(self) -> None:
        self.hang_up()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RouteInstaller:
    """Remembers what is installed in every namespace and applies only the differences."""

    def __init__(self, namespaces: dict[str, str], installed: dict[str, list[Route]],
                 on_spawn: Callable[[int, str, str], None] | None = None) -> None:
        self.namespaces = namespaces
        self.installed = dict(installed)
        self.reports: list[InstallReport] = []
        self.shells: dict[str, IpShell] = {}
        self.on_spawn = on_spawn  # the ledger records every process we start

    def _shell(self, node: str) -> IpShell:
        if node not in self.shells:
            sh = IpShell(self.namespaces[node])
            if self.on_spawn is not None:
                self.on_spawn(sh.proc.pid, f"ip-batch-{node}", self.namespaces[node])
            self.shells[node] = sh
        return self.shells[node]

    def install(self, tables: dict[str, list[Route]]) -> InstallReport:
        t0 = time.monotonic()
        sent: list[str] = []
        changed = removed = 0
        for node, table in tables.items():
            if node not in self.namespaces:
                continue  # another host's node (multi-host run): installed there
            if table is self.installed.get(node):
                continue  # the very table installed last time (RouteCache): nothing to do
            lines, c, r = diff(self.installed.get(node, []), table)
            if not lines:
                continue
            changed, removed = changed + c, removed + r
            self._shell(node).send(lines)
            sent.append(node)
        errors = [f"{node}: {e}" for node in sent for e in self.shells[node].wait()]
        self.installed.update(tables)
        report = InstallReport(started=t0, seconds=time.monotonic() - t0,
                               namespaces=len(sent), added_or_changed=changed,
                               removed=removed, errors=errors)
        self.reports.append(report)
        return report

    def close(self) -> None:
        """End the ip processes (each holds its namespace open until it exits): every stdin
        closed first, then each waited for, so a thousand of them end together."""
        for sh in self.shells.values():
            sh.hang_up()
        for sh in self.shells.values():
            sh.close()
        self.shells.clear()

    def summary(self) -> dict[str, float | int]:
        times = sorted(r.seconds for r in self.reports if r.namespaces)
        if not times:
            return {"installs": 0}
        return {"installs": len(times), "median_ms": round(times[len(times) // 2] * 1e3, 2),
                "max_ms": round(times[-1] * 1e3, 2),
                "errors": sum(len(r.errors) for r in self.reports)}
