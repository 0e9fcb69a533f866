"""Once a second, every link's measured throughput and every node's CPU, to
`logs/link-load.jsonl` - what the live view and a replay draw as link widths and node load.

Cheap by construction, because it runs beside the mobility driver's 10 Hz tick: each
namespace's `/proc/net/dev` is opened once, from a thread that enters the namespace only for
the `open` (a proc file keeps the namespace it was opened in), and re-read with one `pread` a
second; no `ip -n ... -s link` process per namespace per second.  Node CPU sums the
utime+stime of the processes whose network namespace is the node's (payload agents, servers,
iperf3), found through /proc/<pid>/ns/net.

The record, one JSON line a second:
    {"wall": ..., "t": <s after time zero>, "dt": <s since the previous>,
     "links": {link: mbps}, "nodes": {node: cpu_pct}}
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.lifecycle.netns import inside

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: str) -> tuple[bytes, int] | None:
    """(command name, utime + stime in clock ticks) of a process from /proc/<pid>/stat, or
    None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            head, _, rest = f.read().rpartition(b")")
        fields = rest.split()
        return head.partition(b"(")[2], int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """{ifname: (rx_bytes, tx_bytes)} of a /proc/net/dev text."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        cols = rest.split()
        if len(cols) >= 9:
            out[name.strip()] = (int(cols[0]), int(cols[8]))
    return out


def link_members(network: dict[str, Any]) -> dict[str, list[tuple[str, str, bool]]]:
    """link -> [(node, ifname, count_rx)] from a network.json plan.  A link between two
    namespaces is counted by what each end transmits (each packet once); a node's link to a
    switch has one namespace end, whose rx and tx both count."""
    spaces = network.get("namespaces", {})
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for seg in network.get("segments", []):
        by_link: dict[str, list[dict[str, Any]]] = {}
        for m in seg.get("members", []):
            by_link.setdefault(m["link"], []).append(m)
        for link, members in by_link.items():
            ns_members = [m for m in members if m["node"] in spaces]
            one_sided = len(ns_members) < 2
            out[link] = [(m["node"], m["ifname"], one_sided) for m in ns_members]
    return out


class LoadLog:
    """The sampler thread; `start()` after the network is built, `stop()` before teardown."""

    def __init__(self, network: dict[str, Any], path: Path,
                 netns_dir: Path = Path("/run/netns"), interval_s: float = 1.0,
                 t_zero_wall: Callable[[], float | None] = lambda: None) -> None:
        self.spaces: dict[str, str] = dict(network.get("namespaces", {}))
        self.members = link_members(network)
        self.path, self.netns_dir, self.interval = path, netns_dir, interval_s
        self.t_zero_wall = t_zero_wall
        self.files: dict[str, int] = {}  # node -> fd of its /proc/net/dev
        self.inodes: dict[int, str] = {}  # netns inode -> node
        self.pid_node: dict[str, str | None] = {}  # pid -> its node (None: not a node's)
        self.error: str | None = None
        self.samples = 0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Open every namespace's counters (in a short-lived thread: setns changes only the
        calling thread, and that thread must not be one the run uses for anything else)."""
        def opener() -> None:
            try:
                for node, ns in self.spaces.items():
                    nsfile = str(self.netns_dir / ns)
                    self.inodes[os.stat(nsfile).st_ino] = node
                    with inside(nsfile):
                        self.files[node] = os.open("/proc/thread-self/net/dev", os.O_RDONLY)
            except OSError as exc:
                self.error = f"opening counters: {exc}"
        t = threading.Thread(target=opener, name="loadlog-open")
        t.start()
        t.join()

    def counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        out = {}
        for node, fd in self.files.items():
            try:
                out[node] = parse_net_dev(os.pread(fd, 1 << 20, 0).decode(errors="replace"))
            except OSError:  # a namespace gone (node crashed and was removed): no numbers
                continue
        return out

    def cpu_ticks(self) -> dict[str, int]:
        """Per node, the CPU ticks of the processes in its namespace.  Which node a pid is
        in is looked up once per pid (a process does not change namespace; a pid reused
        within the run's seconds is not worth a stat per process per second, which at 1,000
        nodes and ~3,000 processes cost a tenth of a core)."""
        out: dict[str, int] = {}
        seen: dict[str, str | None] = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            if pid in self.pid_node:
                node = self.pid_node[pid]
            else:
                try:
                    node = self.inodes.get(os.stat(f"/proc/{pid}/ns/net").st_ino)
                except OSError:
                    continue
            seen[pid] = node
            cpu = process_cpu(pid) if node is not None else None
            if node is not None and cpu is not None:
                out[node] = out.get(node, 0) + cpu[1]
        self.pid_node = seen
        return out

    def loads(self, before: dict[str, dict[str, tuple[int, int]]],
              after: dict[str, dict[str, tuple[int, int]]], dt: float) -> dict[str, float]:
        out = {}
        for link, members in self.members.items():
            total = 0
            for node, ifname, count_rx in members:
                a, b = before.get(node, {}).get(ifname), after.get(node, {}).get(ifname)
                if a is None or b is None:
                    continue
                total += max(0, b[1] - a[1]) + (max(0, b[0] - a[0]) if count_rx else 0)
            out[link] = round(total * 8 / 1e6 / dt, 4)
        return out

    def start(self) -> None:
        self.open()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="loadlog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        with open(self.path, "a", buffering=1) as out:
            prev, prev_cpu, t_prev = self.counters(), self.cpu_ticks(), time.monotonic()
            while not self._stop.wait(self.interval):
                try:
                    now, cpu = self.counters(), self.cpu_ticks()
                    t = time.monotonic()
                    dt = t - t_prev
                    wall = time.time()
                    zero = self.t_zero_wall()
                    rec = {"wall": round(wall, 3),
                           "t": round(wall - zero, 3) if zero is not None else None,
                           "dt": round(dt, 3), "links": self.loads(prev, now, dt),
                           "nodes": {n: round(100.0 * (c - prev_cpu.get(n, c)) / _TICKS / dt, 1)
                                     for n, c in cpu.items()}}
                    out.write(json.dumps(rec, separators=(",", ":")) + "\n")
                    prev, prev_cpu, t_prev = now, cpu, t
                    self.samples += 1
                except Exception as exc:  # noqa: BLE001 - the view's numbers never stop a run
                    self.error = f"{type(exc).__name__}: {exc}"
        self.cpu_s = time.thread_time() - cpu0

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()
