"""Wire format of the payload agent: length-prefixed JSON header, then a raw binary body.

Every message, in either direction, is

    4 bytes   big-endian unsigned length N of the header
    N bytes   UTF-8 JSON object (the header)
    B bytes   binary body, B = header["body_bytes"] (0 when absent)

JSON keeps the headers readable in logs and captures; the body stays binary so that a task's
input data costs its own size on the emulated links, not a base64 inflation of it.  Both sizes
are capped (a 64 KiB header, a 64 MiB body) so that a confused or hostile peer cannot make the
agent allocate without bound; a violation raises `ProtocolError` naming the field and the limit.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

_PREFIX = struct.Struct(">I")


class ProtocolError(Exception):
    """A message that does not follow the wire format (size, encoding, JSON shape)."""


class ConnectionClosed(ConnectionError):
    """The peer closed the connection cleanly between two messages."""


async def _read_exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"connection closed after {len(exc.partial)} of {n} bytes of the "
                            f"{what}") from None


async def read_header(reader: asyncio.StreamReader, *, max_header: int = MAX_HEADER_BYTES,
                      max_body: int = MAX_BODY_BYTES,
                      stall_timeout: float | None = None) -> dict[str, Any]:
    """Read one message's header (the body stays in the stream; see `read_body`).

    Split from `read_body` so that a server can time-stamp the header's arrival and check
    credentials before it takes in a large body.  Raises `ConnectionClosed` if the peer closed
    before the first byte, `ProtocolError` for anything malformed.  A connection may idle
    between messages for as long as it likes, but once a message's first byte has arrived,
    with `stall_timeout` the rest of its header must follow within that many seconds (a
    slow-loris peer trickling bytes holds no connection for long).
    """
    try:
        first = await reader.readexactly(1)
    except asyncio.IncompleteReadError:
        raise ConnectionClosed("peer closed the connection") from None

    async def rest() -> bytes:
        more = await _read_exactly(reader, _PREFIX.size - 1, "length prefix")
        (length,) = _PREFIX.unpack(first + more)
        if length > max_header:
            raise ProtocolError(f"header of {length} bytes exceeds the limit of {max_header} "
                                "bytes")
        return await _read_exactly(reader, length, "header")

    try:
        raw = await asyncio.wait_for(rest(), stall_timeout)
    except asyncio.TimeoutError:  # noqa: UP041 - a board's Python 3.10 has its own class
        raise ProtocolError(f"header not complete within {stall_timeout:g} s of its first "
                            "byte") from None
    return _decode_header(raw, max_body)


async def read_body(reader: asyncio.StreamReader, header: dict[str, Any]) -> bytes:
    """Read the body announced by `header` (already checked by `read_header`)."""
    n = header.get("body_bytes", 0)
    return await _read_exactly(reader, n, "body") if n else b""


async def read_message(reader: asyncio.StreamReader, *, max_header: int = MAX_HEADER_BYTES,
                       max_body: int = MAX_BODY_BYTES) -> tuple[dict[str, Any], bytes]:
    """Read one whole message: (header, body)."""
    header = await read_header(reader, max_header=max_header, max_body=max_body)
    return header, await read_body(reader, header)


async def write_message(writer: asyncio.StreamWriter, header: dict[str, Any], body: bytes = b"",
                        *, max_header: int = MAX_HEADER_BYTES,
                        max_body: int = MAX_BODY_BYTES) -> None:
    """Send one message; `body_bytes` is set from `body` (the caller's dict is not changed)."""
    writer.write(encode_frame(header, len(body), max_header=max_header, max_body=max_body))
    if body:
        writer.write(body)  # separate write: no copy of a large body
    await writer.drain()


def encode_frame(header: dict[str, Any], body_bytes: int = 0, *,
                 max_header: int = MAX_HEADER_BYTES, max_body: int = MAX_BODY_BYTES) -> bytes:
    """Length prefix + JSON header: what precedes a message's body on the wire."""
    raw = encode_header(header, body_bytes, max_header=max_header, max_body=max_body)
    return _PREFIX.pack(len(raw)) + raw


def message_bytes(header: dict[str, Any], body: bytes = b"") -> int:
    """Bytes one message puts on the wire above TCP: length prefix + JSON header + body."""
    return _PREFIX.size + len(encode_header(header, len(body))) + len(body)


def encode_header(header: dict[str, Any], body_bytes: int, *, max_header: int = MAX_HEADER_BYTES,
                  max_body: int = MAX_BODY_BYTES) -> bytes:
    """The JSON bytes of `header` with `body_bytes` set, checked against the limits."""
    if body_bytes > max_body:
        raise ProtocolError(f"body of {body_bytes} bytes exceeds the limit of {max_body} bytes")
    try:
        raw = json.dumps({**header, "body_bytes": body_bytes}, separators=(",", ":"),
                         allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header is not representable as strict JSON: {exc}") from None
    if len(raw) > max_header:
        raise ProtocolError(f"header of {len(raw)} bytes exceeds the limit of {max_header} bytes")
    return raw


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_header(raw: bytes, max_body: int) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"header is not UTF-8: {exc}") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, got {type(header).__name__}")
    n = header.get("body_bytes", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ProtocolError(f"body_bytes must be an integer >= 0, got {n!r}")
    if n > max_body:
        raise ProtocolError(f"body of {n} bytes exceeds the limit of {max_body} bytes")
    return header
