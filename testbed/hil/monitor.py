"""Watching the boards while a run goes: a real board can lose power, crash, or have a cable
pulled mid-run, and a run must say so rather than record a silent hole in its results.

Each board is probed once per `interval_s` on its two paths:

* management - its SSH server answers with a banner (TCP to address:port, on this host's
  management network: loopback for an emulated board);
* data - its emulated address answers a ping from the replaced node's namespace (through the
  tunnel or NIC, i.e. the path its tasks take).

An outage of either path is recorded (what, from, to: wall-clock times) and printed, and the
run goes on: the agent keeps serving over the data path when only management is cut, and the
workload sees its own failures when only the data path is cut.  When BOTH paths stay down for
`lost_after_s`, the board is lost (powered off, crashed, or unplugged): `check()` raises, and
the run ends as `failed: board <name>` with what it measured so far kept.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from testbed.lifecycle.sh import in_netns


class BoardLost(RuntimeError):
    """A board stopped answering on both paths; the message names it and when."""


@dataclass
class Watched:
    name: str
    address: str
    port: int
    netns: str
    board_ip: str
    down: dict[str, float] = field(default_factory=dict)  # path -> down since (wall time)
    outages: list[dict[str, Any]] = field(default_factory=list)
    lost: str | None = None


def ssh_answers(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def ping_answers(netns: str, ip: str, timeout: float) -> bool:
    proc = subprocess.run(in_netns(netns, ["ping", "-n", "-q", "-c", "1", "-W",
                                           str(max(1, round(timeout))), ip]),
                          capture_output=True, timeout=timeout + 5)
    return proc.returncode == 0


class BoardMonitor:
    def __init__(self, boards: list[Watched], interval_s: float = 1.0,
                 lost_after_s: float = 3.0, say: Any = print) -> None:
        self.boards, self.interval_s, self.lost_after_s = boards, interval_s, lost_after_s
        self.say = say
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="board-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, list[dict[str, Any]]]:
        """Stop watching; every board's outages (one still open has `to: None`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return {b.name: b.outages for b in self.boards}

    def check(self) -> None:
        for b in self.boards:
            if b.lost:
                raise BoardLost(b.lost)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            for b in self.boards:
                if not b.lost:
                    self._probe(b)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def _probe(self, b: Watched) -> None:
        now = time.time()
        state = {"management": ssh_answers(b.address, b.port, 1.5),
                 "data": ping_answers(b.netns, b.board_ip, 1.0)}
        for path, ok in state.items():
            if not ok and path not in b.down:
                b.down[path] = now
                b.outages.append({"path": path, "from": now, "to": None})
                self.say(f"board {b.name}: its {path} path stopped answering")
            elif ok and path in b.down:
                del b.down[path]
                for o in b.outages:
                    if o["path"] == path and o["to"] is None:
                        o["to"] = now
                        self.say(f"board {b.name}: its {path} path is back after "
                                 f"{now - o['from']:.1f} s")
        if len(b.down) == 2 and now - max(b.down.values()) >= self.lost_after_s:
            since = min(b.down.values())
            b.lost = (f"board {b.name}: lost - no answer over SSH ({b.address}:{b.port}) nor on "
                      f"its emulated address {b.board_ip} for {now - since:.1f} s (powered off, "
                      "crashed or unplugged?)")
