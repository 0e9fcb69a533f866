"""The IoV chain in simulation: the very ChainNode objects the live nodes run, their messages
carried over a SUMO drive by a radio model of the emulated network (controllers.iov.netmodel).

Why a simulator besides the emulation: the emulated network holds a few dozen vehicles on two
cores in real time; the paper's comparison needs hundreds, several seeds and every method,
which only a discrete-event run can do.  The protocol code is shared, so the simulator's
numbers differ from the emulation's only by the network model (measured by `make bench
BENCH=iov`: live vs simulated commit latency for the same seed and drive).

Events on one heap, in time order: node ticks (every `tick_ms`, each node with its own
phase), message deliveries (arrival time from RadioNet.deliver: propagation, serialisation,
the sender's radio queue and loss per hop; None = lost or unreachable).  Every message is
counted in bytes at its sender and receiver: the node traffic load.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from controllers.iov.chain import ChainConfig, ChainNode, Method, Position
from controllers.iov.metrics import summarize
from controllers.iov.netmodel import RadioNet
from controllers.iov.traces import CityDrive


@dataclass
class SimResult:
    method: str
    vehicles: int
    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    traffic: dict[str, dict[str, int]]
    wall_s: float
    messages: int


def locator(drive: CityDrive, name: str) -> Any:
    def locate(now_ms: float) -> Position | None:
        t = now_ms / 1000.0
        p = drive.position(name, t)
        if p is None:
            return None
        return (p, drive.velocity(name, t))

    return locate


def simulate(method: Method, drive: CityDrive, cfg: ChainConfig, duration_s: float | None = None,
             seed: int = 1, warmup_s: float | None = None,
             net: RadioNet | None = None) -> SimResult:
    """Runs every vehicle and RSU of the drive as a ChainNode for duration_s."""
    duration_s = duration_s if duration_s is not None else drive.duration_s
    net = net or RadioNet(drive, seed=seed)
    rng = random.Random(seed)
    nodes: dict[str, ChainNode] = {}
    for r in sorted(drive.rsus):
        nodes[r] = ChainNode(r, "rsu", method, cfg, drive.rsus, locator(drive, r))
    for v in drive.vehicles:
        nodes[v] = ChainNode(v, "vehicle", method, cfg, drive.rsus, locator(drive, v))
    traffic: dict[str, dict[str, int]] = defaultdict(lambda: {"bytes_sent": 0, "bytes_recv": 0,
                                                              "msgs_sent": 0})
    heap: list[tuple[float, int, str, Any]] = []
    seq = itertools.count()
    end_ms = duration_s * 1000.0
    for name in nodes:
        heapq.heappush(heap, (rng.uniform(0, cfg.tick_ms), next(seq), "tick", name))
    records: list[dict[str, Any]] = []
    messages = 0
    t0 = time.perf_counter()

    def send(src: str, now: float, sends: list) -> None:
        nonlocal messages
        for s in sends:
            if s.dst == src:
                continue
            tr = traffic[src]
            tr["bytes_sent"] += s.size_bytes
            tr["msgs_sent"] += 1
            messages += 1
            at = net.deliver(src, s.dst, s.size_bytes, now, rng)
            if at is not None and at <= end_ms:
                heapq.heappush(heap, (at, next(seq), "msg", (src, s)))

    while heap:
        now, _, what, payload = heapq.heappop(heap)
        if now > end_ms:
            break
        if what == "tick":
            node = nodes[payload]
            send(payload, now, node.on_tick(now))
            heapq.heappush(heap, (now + cfg.tick_ms, next(seq), "tick", payload))
        else:
            src, s = payload
            traffic[s.dst]["bytes_recv"] += s.size_bytes
            send(s.dst, now, nodes[s.dst].on_message(now, src, s.kind, s.body))
    for name, node in nodes.items():
        for r in node.drain_log():
            r.setdefault("node", name)
            records.append(r)
    metrics = summarize(records, dict(traffic), duration_s, cfg.tx_timeout_ms,
                        warmup_s if warmup_s is not None else cfg.first_epoch_s)
    return SimResult(method.name, len(drive.vehicles), metrics, records, dict(traffic),
                     round(time.perf_counter() - t0, 2), messages)
