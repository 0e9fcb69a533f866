"""A CPN service instance on a compute node: answers on every service port (UDP and TCP) with
its own node name, so a client that talks to a VIP learns which node really served it.

One process serves a port range because the steering app gives every service on a node its
own instance port (a reply's source port is how the switch tells services apart).  Every
request is logged as a JSON line (wall-clock receive time, source, port), which the
orchestrator reads beside the captures.

    python -m controllers.cpn.endpoint --ports 9000-9063 [--node NAME] [--log FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TextIO


def parse_ports(text: str) -> list[int]:
    """`9000-9063` or `9000,9001`: the range a node offers to services."""
    ports: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if not 1 <= a <= b <= 65535:
            raise ValueError(f"bad port range {part!r}: use e.g. 9000-9063")
        ports.extend(range(a, b + 1))
    return ports


def answer(node: str, port: int, data: bytes) -> bytes:
    """`<node> <port> <echo>`: small enough for one datagram whatever the request."""
    return f"{node} {port} ".encode() + data[:256]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, node: str, port: int, log: TextIO | None) -> None:
        self.node, self.port, self.log = node, port, log
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's UDP transport is not a DatagramTransport subclass)
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        t = time.time()
        assert self.transport is not None
        self.transport.sendto(answer(self.node, self.port, data), addr)
        if self.log is not None:
            self.log.write(json.dumps({"t": t, "proto": "udp", "port": self.port,
                                       "src": addr[0], "bytes": len(data)}) + "\n")


async def serve(node: str, ports: list[int], log: TextIO | None) -> None:
    loop = asyncio.get_running_loop()
    closers = []
    for port in ports:
        transport, _ = await loop.create_datagram_endpoint(
            lambda port=port: _Udp(node, port, log), local_addr=("0.0.0.0", port))
        closers.append(transport.close)

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         port: int = port) -> None:
            with contextlib.suppress(ConnectionError):
                while line := await reader.readline():
                    writer.write(answer(node, port, line.rstrip(b"\n")) + b"\n")
                    await writer.drain()
                    if log is not None:
                        peer = writer.get_extra_info("peername") or ("?",)
                        log.write(json.dumps({"t": time.time(), "proto": "tcp", "port": port,
                                              "src": peer[0], "bytes": len(line)}) + "\n")
            writer.close()

        server = await asyncio.start_server(on_tcp, "0.0.0.0", port)
        closers.append(server.close)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for close in closers:
        close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m controllers.cpn.endpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ports", default="9000-9063")
    p.add_argument("--node", default=os.environ.get("SAGIN_NODE") or os.uname().nodename)
    p.add_argument("--log", type=Path, help="JSON lines, one per request (default: "
                   "$SAGIN_RUN_DIR/cpn/endpoint-<node>.jsonl when run by the testbed)")
    args = p.parse_args(argv)
    try:
        ports = parse_ports(args.ports)
    except ValueError as exc:
        p.error(str(exc))
    log_path = args.log
    if log_path is None and os.environ.get("SAGIN_RUN_DIR"):
        log_path = Path(os.environ["SAGIN_RUN_DIR"]) / "cpn" / f"endpoint-{args.node}.jsonl"
    log: TextIO | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    try:
        asyncio.run(serve(args.node, ports, log))
    finally:
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
