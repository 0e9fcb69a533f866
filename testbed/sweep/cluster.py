"""A Ray cluster of several nodes on this machine, from real `ray start` processes: the
sweeps' tests use it, and it is how to try `--ray-address` without a second machine.

    python -m testbed.sweep.cluster up [--nodes 2]    prints the address, keeps running
                                                      until Ctrl-C, then stops every node

Each node is one `ray start --block` in its own session (node address 127.0.0.1, no
dashboard, no usage stats, 100 MB object store, its temp dir under /tmp) advertising one
emulation slot.  Ray 2.58 still listens on every interface here: the switch that keeps it on
loopback (rayenv.LOOPBACK_ENV) refuses a second node.  Stopping signals the sessions we
started - by their ids, never `ray stop`, which would take down other people's Ray too - and
waits until none of their processes (raylet, gcs_server, workers) is left.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.sweep.execute import OBJECT_STORE_BYTES
from testbed.sweep.procs import kill, runs_among, session_pids, until
from testbed.sweep.rayenv import RAY_ENV, SLOT

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        until(lambda: not self.left(), grace, self._reap)
        runs = self._runs()
        kill(pid for pid in self.left() if pid not in runs)
        until(lambda: not self._runs(), runs_s, self._reap)
        kill(self.left())
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def _reap(self) -> None:
        for p in self.procs:
            p.poll()  # a finished `ray start` is not counted

    def _runs(self) -> set[int]:
        """Runners (python -m testbed run) in our sessions, and their descendants."""
        return runs_among(self.left())

    def left(self) -> list[int]:
        return [pid for p in self.procs for pid in session_pids(p.pid)]

    def __exit__(self, kind: object, *exc: object) -> None:
        self.stop()
        if kind is None and not self.left():
            shutil.rmtree(self.temp, ignore_errors=True)  # kept, with its logs, on a failure


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
