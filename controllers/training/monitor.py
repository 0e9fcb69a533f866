"""The cluster monitor: UDP heartbeats between every pair of training nodes.

Each node pings every node of the experiment every `heartbeat_ms` and answers pings; the
answers give it round-trip times, who is alive, and which membership view each peer holds.
Pings carry the sender's own row of round-trip times, so any node - the coordinator of an
event in particular - knows the whole matrix: what Chaos's ring order and replication plans
are computed from.  A peer unheard for `suspect_after_ms` is suspected (crashed, or cut off
by a link change: the two look the same from here, and are handled the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from controllers.training.wire import address


class Monitor(asyncio.DatagramProtocol):
    def __init__(self, me: str, peers: list[str], port: int, period_s: float,
                 status: Callable[[], dict[str, Any]]) -> None:
        """`port` is the experiment's data port; the monitor uses the one after it."""
        self.me, self.peers, self.port = me, [p for p in peers if p != me], port
        self.period = period_s
        self.status = status  # what our pings say about us: view version, members, role
        self.rtt: dict[str, float] = {}  # peer -> last round trip, s
        self.last: dict[str, float] = {}  # peer -> monotonic time of its last answer
        self.view: dict[str, dict[str, Any]] = {}  # peer -> its status
        self.rows: dict[str, dict[str, float]] = {}  # peer -> its own rtt row
        self.addr: dict[str, tuple[str, int]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    # ---- asyncio protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            m = json.loads(data)
        except ValueError:
            return
        src = m.get("from")
        if not isinstance(src, str) or src == self.me:
            return
        now = time.monotonic()
        if m.get("t") == "ping":
            reply = {"t": "pong", "from": self.me, "ts": m.get("ts"), **self.status()}
            self._send_to(addr, reply)
        elif m.get("t") == "pong" and isinstance(m.get("ts"), float):
            sample = now - m["ts"]
            old = self.rtt.get(src)  # smoothed like TCP's srtt, so one late pong moves it 1/8
            self.rtt[src] = sample if old is None else old + (sample - old) / 8
            self.last[src] = now
        if "v" in m:
            self.view[src] = {k: m[k] for k in ("v", "m", "role", "step") if k in m}
        if isinstance(m.get("row"), dict):
            self.rows[src] = m["row"]

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP unreachable: ignore
        pass

    def _send_to(self, addr: tuple[str, int], obj: dict[str, Any]) -> None:
        if self.transport is not None:
            with contextlib.suppress(OSError):
                self.transport.sendto(json.dumps(obj).encode(), addr)

    # ---- ours ----------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = address(self.me, self.port, 1)
        bind = host if os.environ.get("SAGIN_TRAIN_ADDRS") else "0.0.0.0"
        await loop.create_datagram_endpoint(lambda: self, local_addr=(bind, port))

    def resolve(self, peer: str) -> tuple[str, int] | None:
        if peer not in self.addr:
            host, port = address(peer, self.port, 1)
            try:
                self.addr[peer] = (socket.gethostbyname(host), port)
            except OSError:
                return None
        return self.addr[peer]

    async def run(self) -> None:
        while True:
            row = {p: round(r * 1000, 3) for p, r in self.rtt.items() if self.alive(p)}
            ping = {"t": "ping", "from": self.me, "ts": time.monotonic(), "row": row,
                    **self.status()}
            for p in self.peers:
                a = self.resolve(p)
                if a is not None:
                    self._send_to(a, ping)
            await asyncio.sleep(self.period)

    def alive(self, peer: str, within_s: float | None = None) -> bool:
        last = self.last.get(peer)
        return last is not None and time.monotonic() - last <= (within_s or 3 * self.period)

    def silent_for(self, peer: str) -> float:
        last = self.last.get(peer)
        return float("inf") if last is None else time.monotonic() - last

    def matrix(self, members: list[str]) -> dict[tuple[str, str], float]:
        """Round trips (ms) between members as the monitor knows them (ours and peers')."""
        out: dict[tuple[str, str], float] = {}
        for p, r in self.rtt.items():
            out[(self.me, p)] = out[(p, self.me)] = r * 1000
        for src, row in self.rows.items():
            for dst, ms in row.items():
                if src in members and dst in members and isinstance(ms, int | float):
                    out.setdefault((src, dst), float(ms))
                    out.setdefault((dst, src), float(ms))
        return out

    async def watch_routes(self, changed: Callable[[float, dict[str, tuple[str, str]]], None],
                           period_s: float = 0.02) -> None:
        """Topology: the node's IPv4 routes (/proc/net/route, this namespace's), read every
        20 ms; `changed(t, {destination: (gateway, interface)})` gets each change - the
        testbed re-routes when a link is cut or restored, so that is how a link event shows
        here.  (Reading a small proc file is far cheaper than a netlink subscriber process.)"""
        last = read_routes()
        while True:
            await asyncio.sleep(period_s)
            now = read_routes()
            if now != last:
                diff = {d: r for d, r in now.items() if last.get(d) != r}
                diff.update({d: ("", "") for d in last if d not in now})
                last = now
                changed(time.time(), diff)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def read_routes() -> dict[str, tuple[str, str]]:
    """{destination/prefix: (gateway, interface)} of the main table, from /proc/net/route."""
    out: dict[str, tuple[str, str]] = {}
    try:
        lines = open("/proc/net/route").read().splitlines()[1:]  # noqa: SIM115
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) < 8:
            continue
        dst, gw = (socket.inet_ntoa(int(x, 16).to_bytes(4, "little")) for x in (f[1], f[2]))
        out[f"{dst}/{bin(int(f[7], 16)).count('1')}"] = (gw, f[0])
    return out
