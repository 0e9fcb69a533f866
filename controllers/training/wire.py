"""Frames on the training nodes' TCP connections, and the connections themselves.

A frame is a 4-byte length, a JSON header and `n` raw bytes (a gradient chunk, a shard of
the state).  JSON for the header keeps every message readable in the logs; the payload is
never encoded, so a 100 MB state crosses the links as 100 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from typing import Any

LEN = struct.Struct(">I")
CONNECT_TIMEOUT_S = 2.0


def pack(head: dict[str, Any], payload: bytes | memoryview = b"") -> list[bytes | memoryview]:
    raw = json.dumps({**head, "n": len(payload)}).encode()
    return [LEN.pack(len(raw)) + raw, payload] if len(payload) else [LEN.pack(len(raw)) + raw]


async def send(writer: asyncio.StreamWriter, head: dict[str, Any],
               payload: bytes | memoryview = b"") -> None:
    # written without an await in between, so concurrent senders never interleave frames
    writer.writelines(pack(head, payload))
    await writer.drain()


async def recv(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    (k,) = LEN.unpack(await reader.readexactly(LEN.size))
    head = json.loads(await reader.readexactly(k))
    n = int(head.get("n", 0))
    return head, (await reader.readexactly(n) if n else b"")


def address(node: str, port: int, offset: int = 0) -> tuple[str, int]:
    """Where `node` listens: its name (resolved inside its namespace to the node address) at
    the experiment's port + `offset` (0: data and control, 1: the monitor) - or, for tests on
    one host, what $SAGIN_TRAIN_ADDRS says ({"node": "127.0.0.1:7900", ...}) + `offset`."""
    table = os.environ.get("SAGIN_TRAIN_ADDRS")
    if table:
        host, _, p = json.loads(table)[node].rpartition(":")
        return host, int(p) + offset
    return node, port + offset


class Peers:
    """One outgoing connection per peer, opened on first use and again after a failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def open(self, peer: str) -> asyncio.StreamWriter:
        lock = self.locks.setdefault(peer, asyncio.Lock())
        async with lock:
            if peer in self.conns:
                r, w = self.conns[peer]
                if not (r.at_eof() or w.is_closing()):
                    return w
                self.drop(peer)  # the peer closed it (it exited or restarted): a write to
                # it now would be lost without an error
            r, w = await asyncio.wait_for(asyncio.open_connection(*address(peer, self.port)),
                                          CONNECT_TIMEOUT_S)
            self.conns[peer] = (r, w)
            return w

    async def send(self, peer: str, head: dict[str, Any], payload: bytes | memoryview = b""
                   ) -> bool:
        """False when the peer cannot be reached; the caller's failure detector decides what
        that means (a lost frame on a broken ring is redone after the view change)."""
        try:
            w = await self.open(peer)
            await send(w, head, payload)
            return True
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            self.drop(peer)
            return False

    def drop(self, peer: str) -> None:
        conn = self.conns.pop(peer, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn[1].close()

    def close(self) -> None:
        for p in list(self.conns):
            self.drop(p)
