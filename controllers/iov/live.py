"""The IoV chain's processes, started by a scenario's timeline in the vehicles' and RSUs'
namespaces (topologies/iov-drdst.yaml):

    python -m controllers.iov.live node --config FILE [--method M]   one chain node
    python -m controllers.iov.live summarize RUN_DIR                 the run's tables and plots

A node is a ChainNode (controllers.iov.chain) on a UDP socket: its messages are JSON
datagrams through the emulated radio links, so they are delayed, queued, lost and cut off by
ns-3 and the mobility driver like any other traffic.  Its clock counts from the run's time
zero ($SAGIN_T_ZERO), so every node's records share one time axis.  Its GPS is the run's own
record of where it is (mobility/positions.csv, once per second, local frame): a vehicle off the
map has no fix and sends no beacon.  Records go to $SAGIN_RUN_DIR/chain/<node>.jsonl (flushed
every tick) and its traffic counters to <node>.traffic.json; SIGTERM ends it cleanly.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402

MAX_DATAGRAM = 65_000


class Gps:
    """This node's latest position and velocity from mobility/positions.csv (read as it
    grows), in the scenario's local east/north frame."""

    def __init__(self, path: Path, name: str, origin: dict[str, float]) -> None:
        from testbed.mobility.geo import LocalFrame

        self.path, self.name = path, name
        self.frame = LocalFrame(origin.get("lat_deg", 0.0), origin.get("lon_deg", 0.0),
                                origin.get("alt_m", 0.0) / 1000.0)
        self.offset = 0
        self.fixes: list[tuple[float, float, float]] = []  # t_s, x, y
        self.last_t = -1.0

    def _read(self) -> None:
        from testbed.mobility.geo import geodetic_to_ecef

        try:
            with open(self.path) as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind("\n") + 1
        self.offset += len(chunk[:end].encode())
        for line in chunk[:end].splitlines():
            parts = line.split(",")
            if len(parts) != 5 or parts[1] != self.name:
                continue
            t, lat, lon, alt = float(parts[0]), float(parts[2]), float(parts[3]), float(parts[4])
            self.last_t = max(self.last_t, t)
            x, y, _ = self.frame.from_ecef(geodetic_to_ecef(lat, lon, alt))
            self.fixes = [*self.fixes, (t, float(x), float(y))][-2:]
        # the newest rows of any node tell the file's time: a vehicle without one is gone
        for line in chunk[:end].splitlines()[-1:]:
            try:
                self.file_t = float(line.split(",")[0])
            except ValueError:
                pass

    def locate(self, _now_ms: float) -> Any:
        self._read()
        if not self.fixes or getattr(self, "file_t", 0.0) - self.fixes[-1][0] > 1.5:
            return None
        t1, x1, y1 = self.fixes[-1]
        vx = vy = 0.0
        if len(self.fixes) == 2 and t1 > self.fixes[0][0]:
            t0, x0, y0 = self.fixes[0]
            vx, vy = (x1 - x0) / (t1 - t0), (y1 - y0) / (t1 - t0)
        return ((x1, y1), (vx, vy))


class Wire(asyncio.DatagramProtocol):
    def __init__(self, node: Any, clock: Any, counters: dict[str, int]) -> None:
        self.node, self.clock, self.c = node, clock, counters
        self.transport: asyncio.DatagramTransport | None = None
        self.addrs: dict[str, str | None] = {}
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            m = json.loads(data)
        except ValueError:
            return
        self.c["bytes_recv"] += len(data)
        self.c["msgs_recv"] += 1
        self.send(self.node.on_message(self.clock(), m["s"], m["k"], m["b"]))

    def _addr(self, name: str) -> str | None:
        if name not in self.addrs:
            try:
                self.addrs[name] = socket.gethostbyname(name)
            except OSError:
                self.addrs[name] = None
        return self.addrs[name]

    def send(self, sends: list[Any]) -> None:
        assert self.transport is not None
        for s in sends:
            data = json.dumps({"s": self.node.name, "k": s.kind, "b": s.body},
                              separators=(",", ":")).encode()
            ip = self._addr(s.dst)
            if ip is None or len(data) > MAX_DATAGRAM:
                self.c["dropped_local"] += 1
                continue
            self.transport.sendto(data, (ip, self.port))
            self.c["bytes_sent"] += len(data)
            self.c["msgs_sent"] += 1


async def run_node(name: str, exp: Any, run_dir: Path) -> int:
    from controllers.iov.chain import METHODS, ChainNode

    sc = yaml.safe_load((run_dir / "scenario.resolved.yaml").read_text())
    nodes = sc["nodes"]
    rsus = {n: (float(d["position"][0]), float(d["position"][1]))
            for n, d in nodes.items() if d.get("kind") == "rsu"}
    kind = nodes[name]["kind"]
    if kind == "rsu":
        here = rsus[name]

        def locate(_now: float) -> Any:
            return (here, (0.0, 0.0))
    else:
        locate = Gps(run_dir / "mobility" / "positions.csv", name,
                     (sc.get("mobility") or {}).get("origin") or {}).locate
    node = ChainNode(name, kind, METHODS[exp.method], exp.chain, rsus, locate)
    out = run_dir / "chain"
    out.mkdir(parents=True, exist_ok=True)
    # one run-relative clock for every node: the run's time zero when the timeline gives it
    # (nodes start seconds apart on a loaded host), else this process's start
    t0 = float(os.environ.get("SAGIN_T_ZERO") or time.time())

    def clock() -> float:
        return (time.time() - t0) * 1000.0

    counters = {"bytes_sent": 0, "bytes_recv": 0, "msgs_sent": 0, "msgs_recv": 0,
                "dropped_local": 0}
    loop = asyncio.get_running_loop()
    wire = Wire(node, clock, counters)
    wire.port = exp.port
    await loop.create_datagram_endpoint(lambda: wire, local_addr=("0.0.0.0", exp.port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log = open(out / f"{name}.jsonl", "a", buffering=1)  # noqa: SIM115
    log.write(json.dumps({"ev": "start", "node": name, "kind": kind, "method": exp.method,
                          "wall": time.time()}) + "\n")
    tick = exp.chain.tick_ms / 1000.0
    next_tick = time.monotonic()
    last_dump = 0.0
    try:
        while not stop.is_set():
            wire.send(node.on_tick(clock()))
            for r in node.drain_log():
                log.write(json.dumps(r) + "\n")
            if time.monotonic() - last_dump >= 5.0:
                last_dump = time.monotonic()
                _dump(out / f"{name}.traffic.json", counters)
            next_tick += tick
            delay = next_tick - time.monotonic()
            if delay < -5 * tick:  # fell far behind: skip, do not burst
                next_tick = time.monotonic()
            try:
                await asyncio.wait_for(stop.wait(), max(delay, 0.0))
            except TimeoutError:
                pass
    finally:
        for r in node.drain_log():
            log.write(json.dumps(r) + "\n")
        log.close()
        _dump(out / f"{name}.traffic.json", counters)
    return 0


def _dump(path: Path, counters: dict[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counters))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controllers.iov.live")
    ap.add_argument("what", choices=["node", "summarize"])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--config")
    ap.add_argument("--method")
    ap.add_argument("--name", default=os.environ.get("SAGIN_NODE"))
    a = ap.parse_args(argv)
    if a.what == "summarize":
        from controllers.iov.summary import summarize

        print(json.dumps(summarize(Path(a.run_dir or ".")), indent=1)[:4000])
        return 0
    from controllers.iov.config import ConfigError, load_experiment

    if not a.config or not a.name:
        ap.error("--config FILE and a node name (--name or $SAGIN_NODE) are needed")
    try:
        exp = load_experiment(a.config, a.method)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    run_dir = Path(os.environ.get("SAGIN_RUN_DIR", "results/iov-live"))
    return asyncio.run(run_node(a.name, exp, run_dir))


if __name__ == "__main__":
    sys.exit(main())
