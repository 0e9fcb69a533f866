"""Streaming capture reader: pcap (own framing) and pcapng (dpkt), bounded memory.

Classic pcap is framed here rather than with dpkt.pcap.Reader because dpkt drops each record's
original length (needed for byte totals when tcpdump's snaplen cut the packet) and stops
silently at a half-written last record; the framing is a few struct calls over large reads, so
it is also the fast path.  pcapng goes through dpkt.pcapng.Reader.  Whatever goes wrong, the
packets read so far are kept and `Capture.error` says what happened, in words for a person.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import dpkt

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# Link types we can take apart (LINKTYPE_* numbers as written in capture files).
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = (
    0, 1, 101, 113, 228, 229, 276)
RAW_ALIASES = {12: LINK_RAW, 14: LINK_RAW}
SUPPORTED_LINKTYPES = {LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6,
                       LINK_SLL2}
LINK_NAMES = {LINK_NULL: "BSD loopback", LINK_ETHERNET: "Ethernet", LINK_RAW: "raw IP",
              LINK_SLL: "Linux cooked (SLL)", LINK_IPV4: "raw IPv4", LINK_IPV6: "raw IPv6",
              LINK_SLL2: "Linux cooked v2 (SLL2)"}

CHUNK = 4 << 20  # read size: large enough to amortise calls, small enough to bound memory


class CaptureError(Exception):
    """A capture that cannot be read at all (not pcap/pcapng, unknown link type)."""


class Capture:
    """One capture file, iterated once as (timestamp_s, captured_bytes, wire_length).

    `error` is None after a clean read, or a sentence saying where reading stopped; the
    packets yielded before that point are valid and callers keep their statistics.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.error: str | None = None
        self.linktype = -1
        self.format = "?"
        self.packets_read = 0
        self.bytes_read = 0
        size = self.path.stat().st_size
        self.size = size
        with self.path.open("rb") as f:
            head = f.read(4)
        if size == 0 or not head:
            self.format = "empty"
            self.error = f"{self.path.name}: the file is empty (capture never started?)"
        elif head in PCAP_MAGICS:
            self.format = "pcap"
        elif head == PCAPNG_MAGIC:
            self.format = "pcapng"
        else:
            raise CaptureError(f"{self.path.name}: not a pcap or pcapng file "
                               f"(starts with {head.hex()})")

    def __iter__(self) -> Iterator[tuple[float, bytes, int]]:
        if self.format == "pcap":
            yield from self._pcap()
        elif self.format == "pcapng":
            yield from self._pcapng()

    def _set_linktype(self, lt: int) -> None:
        lt = RAW_ALIASES.get(lt, lt)
        if lt not in SUPPORTED_LINKTYPES:
            raise CaptureError(
                f"{self.path.name}: link type {lt} is not supported (supported: "
                + ", ".join(f"{k} {v}" for k, v in sorted(LINK_NAMES.items())) + ")")
        self.linktype = lt

    def _pcap(self) -> Iterator[tuple[float, bytes, int]]:
        with self.path.open("rb") as f:
            gh = f.read(24)
            if len(gh) < 24:
                self.error = f"{self.path.name}: truncated global header ({len(gh)} of 24 bytes)"
                return
            endian, res = PCAP_MAGICS[gh[:4]]
            self._set_linktype(struct.unpack(endian + "I", gh[20:24])[0] & 0x0FFFFFFF)
            yield from self._pcap_records(f, endian, res)

    def _pcap_records(self, f: BinaryIO, endian: str,
                      res: float) -> Iterator[tuple[float, bytes, int]]:
        unpack_hdr = struct.Struct(endian + "IIII").unpack_from
        buf = b""
        pos = 0
        offset = 24  # file offset of buf[0], for messages
        n = 0
        nbytes = 0
        read = f.read
        try:
            while True:
                chunk = read(CHUNK)
                if not chunk:
                    break
                buf = buf[pos:] + chunk if pos < len(buf) else chunk
                offset += pos
                pos = 0
                end = len(buf)
                while pos + 16 <= end:
                    sec, frac, caplen, wirelen = unpack_hdr(buf, pos)
                    if caplen > 262144 or caplen > wirelen + 65535:
                        self.error = (f"{self.path.name}: corrupt record header at byte "
                                      f"{offset + pos} (captured length {caplen}); kept the "
                                      f"{n} packets before it")
                        return
                    stop = pos + 16 + caplen
                    if stop > end:
                        break
                    n += 1
                    nbytes += wirelen
                    yield sec + frac * res, buf[pos + 16:stop], wirelen
                    pos = stop
            if pos < len(buf):
                self.error = (f"{self.path.name}: the last record is incomplete "
                              f"({len(buf) - pos} bytes at byte {offset + pos}: capture still "
                              f"being written or cut short); kept the {n} packets before it")
        finally:
            self.packets_read = n
            self.bytes_read = nbytes

    def _pcapng(self) -> Iterator[tuple[float, bytes, int]]:
        n = 0
        nbytes = 0
        with self.path.open("rb") as f:
            try:
                rd = dpkt.pcapng.Reader(f)
            except (ValueError, struct.error, dpkt.UnpackError) as exc:
                self.error = f"{self.path.name}: unreadable pcapng header ({exc})"
                return
            self._set_linktype(rd.datalink())
            it = iter(rd)
            try:
                while True:
                    try:
                        ts, pkt = next(it)
                    except StopIteration:
                        break
                    n += 1
                    nbytes += len(pkt)
                    yield ts, bytes(pkt), len(pkt)
            except (ValueError, struct.error, dpkt.UnpackError, dpkt.NeedData) as exc:
                self.error = (f"{self.path.name}: pcapng block after packet {n} is truncated "
                              f"or corrupt ({type(exc).__name__}); kept the {n} packets before it")
            finally:
                self.packets_read = n
                self.bytes_read = nbytes
