"""Client side of the payload agent: submit a task, ask for health, reuse a connection.

An agent's refusals ("unauthorized", "overloaded", "bad request: ...") come back as the reply
dict with ok false, because for an offloading experiment they are outcomes to record, not
crashes; only a failure to talk to the agent at all (refused or broken connection, malformed
reply, timeout) raises.  Each task reply is the agent's header plus two client-side clocks:
"t_sent" just before the request was written and "t_result" when the whole result body had
arrived, so t_result - t_sent is the end-to-end offloading latency over the emulated network.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from payloads.protocol import message_bytes, read_message, write_message


class AgentConnection:
    """One TCP connection to an agent, carrying requests one after another.

    Use as ``async with AgentConnection(host, port, token) as conn: await conn.submit(...)``.
    `timeout` (seconds, None for none) bounds each request's round trip and the connect; after
    a timeout the connection is closed, since the reply may still be on its way.
    """

    def __init__(self, host: str, port: int, token: str, timeout: float | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._token = token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> AgentConnection:
        # wait_for, not asyncio.timeout: shard nodes use this class on boards' Python 3.10
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout)
        return self

    async def __aenter__(self) -> AgentConnection:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def request(self, header: dict[str, Any],
                      body: bytes = b"") -> tuple[dict[str, Any], bytes, float, float]:
        """Send one message (the token is added) and read the reply: (header, body, t_sent,
        t_result)."""
        reader, writer = await self._stream()
        msg = {**header, "token": self._token}

        async def exchange() -> tuple[dict[str, Any], bytes, float, float]:
            t_sent = time.time()
            await write_message(writer, msg, body)
            reply, result = await read_message(reader)
            return reply, result, t_sent, time.time()

        return await self._guarded(exchange())

    async def send(self, header: dict[str, Any], body: bytes = b"") -> int:
        """One-way message (the token is added; no reply is read): the bytes it put on the
        wire.  For peers that answer some messages with none, like LLM pipeline steps."""
        _, writer = await self._stream()
        msg = {**header, "token": self._token}
        await self._guarded(write_message(writer, msg, body))
        return message_bytes(msg, body)

    async def _stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            await self.open()
        assert self._reader is not None and self._writer is not None
        return self._reader, self._writer

    async def _guarded(self, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except BaseException:
            await self.close()  # the stream's state is unknown: never reuse it
            raise

    async def submit(self, task_id: str, body: bytes, cycles: float, share: float = 1.0,
                     result_bytes: int = 64) -> dict[str, Any]:
        """Offload one task; the agent's reply header plus "t_sent" and "t_result"."""
        reply, _, t_sent, t_result = await self.request(
            {"kind": "task", "id": task_id, "cycles": cycles, "share": share,
             "result_bytes": result_bytes}, body)
        return {**reply, "t_sent": t_sent, "t_result": t_result}

    async def infer(self, task_id: str, images: int = 1, body: bytes = b"") -> dict[str, Any]:
        """Offload an image-inference task (payloads/inference.py): `body` holds `images`
        64x64 RGB uint8 images, or is empty for the agent's synthetic ones."""
        reply, _, t_sent, t_result = await self.request(
            {"kind": "task", "op": "infer", "id": task_id, "images": images}, body)
        return {**reply, "t_sent": t_sent, "t_result": t_result}

    async def health(self) -> dict[str, Any]:
        reply, *_ = await self.request({"kind": "health"})
        return reply


async def submit(host: str, port: int, token: str, task_id: str, body: bytes, cycles: float,
                 share: float = 1.0, result_bytes: int = 64,
                 timeout: float | None = None) -> dict[str, Any]:
    """Offload one task on a connection of its own (see `AgentConnection.submit`)."""
    async with AgentConnection(host, port, token, timeout) as conn:
        return await conn.submit(task_id, body, cycles, share, result_bytes)


async def health(host: str, port: int, token: str, timeout: float | None = None) -> dict[str, Any]:
    """The agent's health reply (queue, counters, mode, calibration)."""
    async with AgentConnection(host, port, token, timeout) as conn:
        return await conn.health()
