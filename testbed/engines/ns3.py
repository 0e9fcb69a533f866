"""Ns3Engine: the default LinkEngine here, one ns-3 real-time process per shard of links.

Host side of testbed.engines.ns3_sim: starts that process early (loading ns-3 takes ~2 s and
overlaps namespace creation), hands it the link spec once namespaces exist, waits until every
tap is open in its namespace, and then talks to it over a loopback JSON-lines channel.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from testbed.engines.base import Change, EngineLink
from testbed.lifecycle.supervisor import Managed, ServiceDied, Supervisor
from testbed.scenario.model import Medium

# Taps per ns-3 process.  Our C++ bridge waits on taps with epoll (no select() limit at
# 1024 descriptors, as ns-3's TapBridge had) and one reader thread, so the bound is the
# simulator thread's CPU: above it, links are split over several processes (shards), which
# also puts the single-threaded simulator on several cores.
MAX_TAPS_PER_PROCESS = 4000


def shard_links(links: list[tuple[str, int]],
                max_taps: int = MAX_TAPS_PER_PROCESS) -> list[list[str]]:
    """Split (link, taps) over as few ns-3 processes as carry at most `max_taps` each,
    evenly, keeping the scenario's order: neighbouring links (a satellite's ISLs, a cell's
    uplinks) usually share a process.  A link is never split (a Wi-Fi channel is one
    simulated medium)."""
    total = sum(n for _, n in links)
    if not links:
        return []
    shards = max(1, -(-total // max_taps))
    target = total / shards
    groups: list[list[str]] = [[]]
    taps = 0
    for name, n in links:
        if groups[-1] and taps + n > target * len(groups) + 1e-9 and len(groups) < shards:
            groups.append([])
        groups[-1].append(name)
        taps += n
    return groups

class Ns3Engine:
    def __init__(self, supervisor: Supervisor, attach_timeout: float = 180.0,
                 shard: int = 0, wifi: bool = True) -> None:
        self.sup = supervisor
        self.shard = shard
        self.wifi = wifi  # carries Wi-Fi links: load ns-3's Wi-Fi modules too
        self.name = "ns3" if shard == 0 else f"ns3-{shard + 1}"
        self.sfx = "" if shard == 0 else f"-{shard + 1}"
        self.attach_timeout = attach_timeout
        self.proc: Managed | None = None
        self.state_dir: Path | None = None
        self.sock: socket.socket | None = None
        self.reader: Any = None
        self.lock = threading.Lock()
        self.timings: dict[str, float] = {}
        # Delay compensation: every p2p hop through ns-3 costs some fixed processing time
        # (tap read thread, real-time wake-up, kernel forwarding), measured at start-up by
        # testbed.net.calibration; configured delays are applied minus that, never below 0.
        self.p2p_delay: dict[str, float] = {}
        self.compensation_ms = 0.0

    def carries(self) -> set[Medium]:
        return {Medium.WIFI, Medium.P2P}

    def static_neighbours(self) -> bool:
        return True  # ns-3 point-to-point devices carry no ARP

    def configured(self) -> None:
        return None

    def start(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.spec_path = state_dir / f"ns3{self.sfx}-spec.json"
        self.macs_file = state_dir / f"ns3{self.sfx}-macs.json"
        self.ready_file = state_dir / f"ns3{self.sfx}-ready.json"
        self.t_start = time.monotonic()
        self.proc = self.sup.start(
            self.name, [sys.executable, "-m", "testbed.engines.ns3_sim", str(self.spec_path),
                        *(["--wifi"] if self.wifi else [])],
            critical=True, env={"PYTHONUNBUFFERED": "1"},
        )

    def _spec(self, links: list[EngineLink], seed: int) -> dict[str, Any]:
        assert self.state_dir is not None
        log_dir = self.sup.log_dir
        spec: dict[str, Any] = {
            "seed": seed, "state_dir": str(self.state_dir),
            "changes_log": str(log_dir / f"link-changes{self.sfx}.jsonl"),
            "lag_log": str(log_dir / f"ns3{self.sfx}-lag.jsonl"), "p2p": [], "wifi": [],
            "macs_file": str(self.macs_file), "ready_file": str(self.ready_file),
        }
        for link in links:
            ends = [{"node": e.node, "tap": e.root_name, "netns": e.netns,
                     "position": list(e.position) if e.position else [0.0, 0.0, 0.0]}
                    for e in link.ends]
            if link.medium is Medium.P2P:
                self.p2p_delay[link.name] = link.delay_ms
                spec["p2p"].append({"name": link.name, "delay_ms": link.delay_ms,
                                    "rate_mbps": link.rate_mbps,
                                    "rate_back_mbps": link.rate_back_mbps,
                                    "loss_pct": link.loss_pct,
                                    "queue_packets": link.queue_packets, "ends": ends})
            else:
                spec["wifi"].append({"name": link.name, **link.wifi, "ends": ends})
        return spec

    def attach(self, links: list[EngineLink], seed: int) -> dict[str, str]:
        assert self.proc is not None and self.state_dir is not None
        tmp = self.spec_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._spec(links, seed), indent=1))
        tmp.replace(self.spec_path)
        macs_file, ready_file = self.macs_file, self.ready_file
        deadline = time.monotonic() + self.attach_timeout
        while not ready_file.exists():
            self.sup.check()
            if time.monotonic() > deadline:
                raise ServiceDied(f"ns-3 did not attach its taps within {self.attach_timeout:.0f}"
                                  f" s; see {self.proc.log}")
            time.sleep(0.05)
        info = json.loads(macs_file.read_text())
        ready = json.loads(ready_file.read_text())
        self.timings = {"ns3_ready_s": round(time.monotonic() - self.t_start, 3),
                        "ns3_tap_attach_s": round(float(ready["attach_s"]), 3)}
        self.sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=10)
        self.reader = self.sock.makefile("rb")
        return dict(info["macs"])

    def request(self, op: dict[str, Any]) -> dict[str, Any]:
        if self.sock is None:
            raise RuntimeError("ns-3 engine is not attached")
        with self.lock:
            self.sock.sendall(json.dumps(op).encode() + b"\n")
            line = self.reader.readline()
        if not line:
            self.sup.check()
            raise ServiceDied("ns-3 closed its control channel")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"ns-3 refused {op}: {reply.get('error')}")
        return reply

    def apply(self, changes: list[Change], at: float | None = None) -> float | None:
        """`at`: the wall time the changes are due; the simulator schedules them then (a
        batch sent ahead of time is applied on time whatever the path here costs)."""
        if not changes:
            return None
        ops = [self._compensate(c.as_op()) for c in changes]
        op = ops[0] if len(ops) == 1 else {"op": "batch", "ops": ops}
        if at is not None:
            op["at"] = at
        reply = self.request(op)
        return float(reply["applied"]) if "applied" in reply else None

    def _compensate(self, op: dict[str, Any]) -> dict[str, Any]:
        link = op.get("link")
        if op.get("delay_ms") is not None and link in self.p2p_delay:
            self.p2p_delay[link] = float(op["delay_ms"])
            if self.compensation_ms:
                op = {**op, "delay_ms": round(max(0.0, op["delay_ms"] - self.compensation_ms),
                                              6), "configured_delay_ms": op["delay_ms"]}
        return op

    def set_compensation(self, ms: float) -> None:
        """Subtract `ms` from every point-to-point delay from now on (and re-apply them)."""
        self.compensation_ms = max(0.0, ms)
        self.apply([Change("set", link=name, delay_ms=d) for name, d in self.p2p_delay.items()])

    def check(self) -> None:
        self.sup.check()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.timings)
        if self.sock is not None:
            try:
                st = self.request({"op": "status"})
                out.update(sim_time_s=st.get("sim"), max_lag_ms=st.get("max_lag_ms"))
            except (OSError, RuntimeError, ValueError):
                pass
        return out

    def stop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.settimeout(2)
                self.sock.sendall(b'{"op": "stop"}\n')
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.popen.wait(timeout=5)
            except Exception:  # noqa: BLE001 - fall through to a hard stop
                pass
            self.sup.stop(self.proc)
            self.proc = None
