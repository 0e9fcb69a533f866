"""A Ray cluster of several nodes on this machine, from real `ray start` processes: the
sweeps' tests use it, and it is how to try `--ray-address` without a second machine.

    python -m testbed.sweep.cluster up [--nodes 2]    prints the address, keeps running
                                                      until Ctrl-C, then stops every node

Each node is one `ray start --block` in its own session (bound to 127.0.0.1 where Ray allows,
no dashboard, no usage stats, 100 MB object store, its temp dir under /tmp) advertising one
emulation slot.  Stopping signals the sessions we started - by their ids, never `ray stop`,
which would take down other people's Ray too - and waits until none of their processes
(raylet, gcs_server, workers) is left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from testbed.sweep.execute import OBJECT_STORE_BYTES, RAY_ENV, SLOT

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (what one `ray start` left, workers included)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d.name))
    return out


class LocalCluster:
    """`nodes` Ray nodes on this machine (the first is the head), each with `cpus` CPUs and
    one emulation slot."""

    def __init__(self, nodes: int = 2, cpus: int = 1) -> None:
        self.nodes, self.cpus = nodes, cpus
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="ray-sg-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started_s: float | None = None

    def _start(self, head: bool) -> None:
        common = ["--num-cpus", str(self.cpus), "--object-store-memory",
                  str(OBJECT_STORE_BYTES), "--resources", json.dumps({SLOT: 1}),
                  "--disable-usage-stats", "--node-ip-address", "127.0.0.1", "--block"]
        where = (["--head", "--port", str(self.port), "--include-dashboard=false",
                  "--temp-dir", str(self.temp)] if head else ["--address", self.address])
        log = (self.temp / f"node{len(self.procs)}.log").open("wb")
        env = {**os.environ, **RAY_ENV}
        self.procs.append(subprocess.Popen([RAY, "start", *where, *common], stdout=log,
                                           stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True))

    def __enter__(self) -> LocalCluster:
        t0 = time.monotonic()
        try:
            self._start(head=True)
            self._wait(1, t0)
            for _ in range(self.nodes - 1):
                self._start(head=False)
            self._wait(self.nodes, t0)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        return self

    def _wait(self, n: int, t0: float, timeout: float = 90.0) -> None:
        """Until `n` nodes are alive (asked of the GCS with `ray list nodes`-free means:
        a short-lived driver would itself be a job; the CLI's status is enough)."""
        while time.monotonic() - t0 < timeout:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited ({p.returncode}); see {self.temp}")
            r = subprocess.run([RAY, "status", "--address", self.address],
                               capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.count("node_") >= n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{n} Ray nodes not up after {timeout:.0f} s; see {self.temp}")

    def stop(self, grace: float = 5.0, runs_s: float = 120.0) -> None:
        """SIGTERM to each `ray start` we started; after `grace`, SIGKILL what is left of
        Ray in their sessions - but a testbed run still in them (a cancelled task's runner,
        which got SIGTERM when its worker died) is given `runs_s` to tear its network down."""
        sids = [p.pid for p in self.procs]
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._until(lambda: not self.left(), grace)
        runs = self._runs()
        self._kill([pid for s in sids for pid in session_pids(s) if pid not in runs])
        self._until(lambda: not (set(self.left()) & self._runs()), runs_s)
        self._kill([pid for s in sids for pid in session_pids(s)])
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def _until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            for p in self.procs:
                p.poll()  # reap, so a finished `ray start` is not counted
            time.sleep(0.2)

    def _runs(self) -> set[int]:
        """Runners (python -m testbed run) in our sessions, and all their descendants."""
        pids = [pid for p in self.procs for pid in session_pids(p.pid)]
        runners = {pid for pid in pids if b"testbed\0run\0" in _cmdline(pid)}
        parent = {pid: _ppid(pid) for pid in pids}
        out = set(runners)
        changed = True
        while changed:
            more = {pid for pid, pp in parent.items() if pp in out} - out
            changed = bool(more)
            out |= more
        return out

    @staticmethod
    def _kill(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def left(self) -> list[int]:
        return [pid for p in self.procs for pid in session_pids(p.pid)]

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.sweep.cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up"])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=1, help="CPUs each node advertises")
    args = ap.parse_args(argv)
    with LocalCluster(args.nodes, args.cpus) as cl:
        print(f"{args.nodes} Ray nodes up in {cl.started_s:.1f} s: --ray-address "
              f"{cl.address}  (Ctrl-C stops them)", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
