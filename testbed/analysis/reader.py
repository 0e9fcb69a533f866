"""Streaming capture reader: pcap and pcapng framed here, bounded memory, splittable by bytes.

Both formats are framed by our own code (a few struct calls over large reads, the fast path):
dpkt's readers drop a pcap record's original length (needed for byte totals when tcpdump's
snaplen cut the packet), stop silently at a half-written last record and read one pcapng
interface only.  Whatever goes wrong, the packets read so far are kept and `Capture.error`
says what happened, in words for a person.

pcapng: every section (its byte order from the SHB's magic) and every interface (IDB: link
type, snaplen, if_name, if_tsresol, if_tsoffset) is read; packets come from EPBs, SPBs and
obsolete PBs, byte totals use their original length; other blocks are skipped by length.  An
SPB carries no timestamp: it gets the previous timestamped packet's (0.0 before any).  When
interfaces have different link types, each frame is re-framed to one link type for decoding
(decode.reframe) while its wire length stays as on its interface; `interfaces` counts
packets and bytes per interface.

`records(start, end)` reads the records whose first byte lies in [start, end), and
`split(parts, warmup)` finds record boundaries near evenly spaced offsets by resynchronising
(a chain of plausible record headers / block lengths), so that byte ranges of one file can be
read by several processes and together read every record exactly once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from testbed.analysis.decode import (  # noqa: F401 - re-exported for callers of the reader
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_IPV6,
    LINK_NAMES,
    LINK_NULL,
    LINK_RAW,
    LINK_SLL,
    LINK_SLL2,
    RAW_ALIASES,
    SUPPORTED_LINKTYPES,
    reframe,
)

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
NG_SHB, NG_IDB, NG_PB, NG_SPB, NG_EPB = 0x0A0D0D0A, 1, 2, 3, 6
NG_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
NG_KNOWN = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xBAD, 0x40000BAD}  # block types a resync accepts

CHUNK = 4 << 20  # read size: large enough to amortise calls, small enough to bound memory
MAX_CAPLEN = 262144  # largest captured length accepted (libpcap's own limit)
MAX_BLOCK = 16 << 20  # largest pcapng block accepted
CHAIN = 8  # consecutive plausible records that make a resync point
SKEW = 10.0  # seconds a record's timestamp may step back from the previous one
RESYNC_READ = 1 << 20  # bytes read past a split offset to find a boundary
INF = float("inf")

_STRUCTS: dict[str, tuple[struct.Struct, ...]] = {
    e: tuple(struct.Struct(e + f) for f in ("IIII", "II", "IIIII", "HHIIII", "I"))
    for e in "<>"}


class CaptureError(Exception):
    """A capture that cannot be read at all (not pcap/pcapng, unknown link type)."""


class Capture:
    """One capture file, iterated as (timestamp_s, captured_bytes, wire_length).

    `error` is None after a clean read, or a sentence saying where reading stopped; the
    packets yielded before that point are valid and callers keep their statistics.  The
    object holds no open file and pickles, so a worker can hand its reading state back.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.error: str | None = None
        self.stop: str | None = None  # why reading stopped early, without the packet count
        self.linktype = -1  # the link type frames are decoded as
        self.format = "?"
        self.packets_read = 0
        self.bytes_read = 0
        self.pos = 0  # file offset after the last record read
        self.data_start = 0  # offset of the first packet record (pcap) or data block (pcapng)
        self.endian, self.res, self.snaplen = "<", 1e-6, 0
        # pcapng: [section, id, name, linktype, packets, bytes] per interface in file order;
        # the current section's byte order and [divisor, offset, reframe-from, stats, snaplen]
        self.interfaces: list[list] = []
        self.table: list[list] = []
        self.section = -1
        self.layout_changed = False  # an SHB or IDB was met after the file's first data block
        self._last_ts = 0.0
        self._span: tuple[float, float] | None = None
        self.size = self.path.stat().st_size
        with self.path.open("rb") as f:
            head = f.read(4)
            if self.size == 0 or not head:
                self.format = "empty"
                self.error = f"{self.path.name}: the file is empty (capture never started?)"
            elif head in PCAP_MAGICS:
                self.format = "pcap"
                self._pcap_header(f)
            elif head == PCAPNG_MAGIC:
                self.format = "pcapng"
                self._pcapng_header(f)
            else:
                raise CaptureError(f"{self.path.name}: not a pcap or pcapng file "
                                   f"(starts with {head.hex()})")

    def __iter__(self) -> Iterator[tuple[float, bytes, int]]:
        return self.records()

    def records(self, start: int | None = None,
                end: int | None = None) -> Iterator[tuple[float, bytes, int]]:
        """Records whose first byte lies in [start, end): default the whole file."""
        if self.error and self.stop is None:
            return iter(())
        start = self.data_start if start is None else start
        end = INF if end is None else end
        if self.format == "pcap":
            return self._pcap(start, end)
        return self._pcapng(start, end)

    def reset_counts(self) -> None:
        """Forget what was read so far (after a warm-up pass), keeping the section state."""
        self.packets_read = self.bytes_read = 0
        self.error = self.stop = None
        self.layout_changed = False
        for i in self.interfaces:
            i[4] = i[5] = 0

    def error_for(self, packets: int) -> str | None:
        """The error sentence, counting `packets` read before the stop (merged ranges)."""
        if self.stop is None:
            return self.error
        return f"{self.path.name}: {self.stop}; kept the {packets} packets before it"

    def _stopped(self, what: str) -> None:
        self.stop = what
        self.error = self.error_for(self.packets_read)

    def _supported(self, lt: int) -> int:
        lt = RAW_ALIASES.get(lt, lt)
        if lt not in SUPPORTED_LINKTYPES:
            raise CaptureError(
                f"{self.path.name}: link type {lt} is not supported (supported: "
                + ", ".join(f"{k} {v}" for k, v in sorted(LINK_NAMES.items())) + ")")
        return lt

    # ------------------------------------------------------------------------ pcap

    def _pcap_header(self, f: BinaryIO) -> None:
        f.seek(0)
        gh = f.read(24)
        if len(gh) < 24:
            self.error = f"{self.path.name}: truncated global header ({len(gh)} of 24 bytes)"
            return
        self.endian, self.res = PCAP_MAGICS[gh[:4]]
        self.snaplen, lt = struct.unpack(self.endian + "II", gh[16:24])
        self.linktype = self._supported(lt & 0x0FFFFFFF)
        self.data_start = self.pos = 24

    def _pcap(self, start: int, end: float) -> Iterator[tuple[float, bytes, int]]:
        unpack_hdr = _STRUCTS[self.endian][0].unpack_from
        res = self.res
        buf = b""
        pos = 0
        base = start  # file offset of buf[0]
        n = self.packets_read
        nbytes = self.bytes_read
        stop_msg = None
        try:
            with self.path.open("rb") as f:
                f.seek(start)
                read = f.read
                while base + pos < end:
                    chunk = read(CHUNK)
                    if not chunk:
                        if pos < len(buf):
                            stop_msg = (f"the last record is incomplete ({len(buf) - pos} bytes "
                                        f"at byte {base + pos}: capture still being written or "
                                        f"cut short)")
                        break
                    buf = buf[pos:] + chunk if pos < len(buf) else chunk
                    base += pos
                    pos = 0
                    size = len(buf)
                    last = min(size - 16, end - base - 1)  # start of the last record to read
                    while pos <= last:
                        sec, frac, caplen, wirelen = unpack_hdr(buf, pos)
                        if caplen > MAX_CAPLEN or caplen > wirelen + 65535:
                            stop_msg = (f"corrupt record header at byte {base + pos} (captured "
                                        f"length {caplen})")
                            return
                        stop = pos + 16 + caplen
                        if stop > size:
                            break
                        n += 1
                        nbytes += wirelen
                        yield sec + frac * res, buf[pos + 16:stop], wirelen
                        pos = stop
        finally:
            self.packets_read = n
            self.bytes_read = nbytes
            self.pos = base + pos
            if stop_msg:
                self._stopped(stop_msg)

    def _pcap_walk(self, buf: bytes, base: int, p: int, count: float, until: float,
                   t_lo: float, t_hi: float) -> tuple[int, int, float | None]:
        """Follow plausible record headers from buf[p]: (where it stopped, records, last ts)."""
        hdr = _STRUCTS[self.endian][0].unpack_from
        caplim = min(self.snaplen or MAX_CAPLEN, MAX_CAPLEN)
        fracmax = 1e6 if self.res == 1e-6 else 1e9
        k = 0
        prev = None
        while k < count and base + p < until and p + 16 <= len(buf):
            sec, frac, caplen, wirelen = hdr(buf, p)
            ts = sec + frac * self.res
            if (caplen > caplim or caplen > wirelen or frac >= fracmax or not t_lo <= ts <= t_hi
                    or (prev is not None and ts < prev - SKEW) or p + 16 + caplen > len(buf)):
                break
            prev = ts
            p += 16 + caplen
            k += 1
        return p, k, prev

    def _time_span(self) -> tuple[float, float]:
        """Timestamps a plausible record may carry: the first and last records' +- SKEW."""
        if self._span is None:
            head = self._read(self.data_start, 16)
            t0 = -INF
            if len(head) == 16:
                sec, frac, _, _ = _STRUCTS[self.endian][0].unpack(head)
                t0 = sec + frac * self.res - SKEW
            lo = max(self.data_start, self.size - RESYNC_READ)
            buf = self._read(lo, RESYNC_READ)
            t1, p = None, 0
            while p + 16 <= len(buf):  # the latest timestamp on a chain running to the end
                q, k, last = self._pcap_walk(buf, lo, p, INF, INF, t0, INF)
                if (k >= CHAIN or (k and lo + q == self.size)) and last is not None:
                    t1 = last if t1 is None else max(t1, last)
                    p = max(q, p + 1)
                else:
                    p += 1
            self._span = (t0, INF if t1 is None else t1 + SKEW)
        return self._span

    # ------------------------------------------------------------------------ pcapng

    def _pcapng_header(self, f: BinaryIO) -> None:
        """Header blocks up to the first packet block: byte order, interfaces, link type."""
        pos = 0
        while True:
            f.seek(pos)
            head = f.read(12)
            if len(head) < 12:
                break
            e = NG_BOM.get(head[8:12], "?") if head[:4] == PCAPNG_MAGIC else self.endian
            if e == "?":
                self.error = f"{self.path.name}: unreadable pcapng header (bad byte-order magic)"
                return
            btype, blen = struct.unpack_from(e + "II", head)
            if btype in (NG_EPB, NG_SPB, NG_PB):
                break
            if blen < 12 or blen & 3 or blen > MAX_BLOCK:
                self.error = f"{self.path.name}: unreadable pcapng header (block length {blen})"
                return
            f.seek(pos)
            block = f.read(blen)
            if len(block) < blen:
                break
            if btype in (NG_SHB, NG_IDB):
                self._ng_meta(btype, block, 0, blen, e)
            pos += blen
        self.data_start = self.pos = pos
        self.layout_changed = False
        kinds = {i[3] for i in self.interfaces if i[3] in SUPPORTED_LINKTYPES}
        if self.interfaces and not kinds:
            self._supported(self.interfaces[0][3])  # raises with the list of supported types
        self.linktype = kinds.pop() if len(kinds) == 1 else LINK_ETHERNET
        for t in self.table:
            t[2] = None if t[2] == self.linktype else t[2]

    def _ng_meta(self, btype: int, buf: bytes, pos: int, stop: int, e: str) -> None:
        """An SHB (new section, byte order `e`) or an IDB (a new interface of the section)."""
        self.layout_changed = True
        if btype == NG_SHB:
            self.endian = e
            self.section += 1
            self.table = []
            return
        lt, _, snap = struct.unpack_from(e + "HHI", buf, pos + 8)
        lt = RAW_ALIASES.get(lt, lt)
        name, div, tsoff = None, 1e6, 0.0
        p = pos + 16
        while p + 4 <= stop - 4:
            code, olen = struct.unpack_from(e + "HH", buf, p)
            val = buf[p + 4:p + 4 + olen]
            if code == 0:
                break
            if code == 2:
                name = val.decode(errors="replace").rstrip("\x00")
            elif code == 9 and val:
                div = float(2 ** (val[0] & 0x7F)) if val[0] & 0x80 else float(10 ** val[0])
            elif code == 14 and olen == 8:
                tsoff = float(struct.unpack(e + "q", val)[0])
            p += 4 + ((olen + 3) & ~3)
        stats = [self.section, len(self.table), name, lt, 0, 0]
        self.interfaces.append(stats)
        self.table.append([div, tsoff, None if lt == self.linktype else lt, stats, snap])

    def _pcapng(self, start: int, end: float) -> Iterator[tuple[float, bytes, int]]:
        hdr, epb, pb, u32 = (s.unpack_from for s in _STRUCTS[self.endian][1:])
        table = self.table
        lt = self.linktype
        buf = b""
        pos = 0
        base = start
        need = CHUNK
        n = self.packets_read
        nbytes = self.bytes_read
        ts = self._last_ts
        stop_msg = None
        try:
            with self.path.open("rb") as f:
                f.seek(start)
                read = f.read
                while base + pos < end:
                    chunk = read(max(CHUNK, need))
                    if not chunk:
                        if pos < len(buf):
                            stop_msg = (f"the last block is incomplete ({len(buf) - pos} bytes "
                                        f"at byte {base + pos}: capture still being written or "
                                        f"cut short)")
                        break
                    buf = buf[pos:] + chunk if pos < len(buf) else chunk
                    base += pos
                    pos = 0
                    size = len(buf)
                    last = min(size - 12, end - base - 1)
                    while pos <= last:
                        btype, blen = hdr(buf, pos)
                        tail = u32
                        if btype == NG_SHB:  # its lengths are in the new section's byte order
                            e = NG_BOM.get(buf[pos + 8:pos + 12])
                            if e is None:
                                stop_msg = f"corrupt section header at byte {base + pos}"
                                return
                            tail = _STRUCTS[e][4].unpack_from
                            blen = tail(buf, pos + 4)[0]
                        if blen < 12 or blen & 3 or blen > MAX_BLOCK:
                            stop_msg = f"corrupt block at byte {base + pos} (length {blen})"
                            return
                        stop = pos + blen
                        if stop > size:
                            need = blen
                            break
                        if tail(buf, stop - 4)[0] != blen:
                            stop_msg = (f"corrupt block at byte {base + pos} (lengths at its "
                                        f"two ends differ)")
                            return
                        if btype in (NG_EPB, NG_PB):
                            if btype == NG_EPB:
                                iface, tsh, tsl, caplen, wirelen = epb(buf, pos + 8)
                            else:
                                iface, _, tsh, tsl, caplen, wirelen = pb(buf, pos + 8)
                            if caplen > blen - 32 or iface >= len(table):
                                stop_msg = (f"corrupt packet block at byte {base + pos} "
                                            f"(interface {iface}, captured length {caplen})")
                                return
                            div, tsoff, rf, st, _ = table[iface]
                            data = buf[pos + 28:pos + 28 + caplen]
                            ts = ((tsh << 32) | tsl) / div + tsoff
                        elif btype == NG_SPB:
                            if not table:
                                stop_msg = f"packet block at byte {base + pos} before any interface"
                                return
                            wirelen = u32(buf, pos + 8)[0]
                            _, _, rf, st, snap = table[0]
                            data = buf[pos + 12:pos + 12 + min(wirelen, blen - 16,
                                                               snap or wirelen)]
                        else:
                            if btype in (NG_SHB, NG_IDB):
                                self._ng_meta(btype, buf, pos, stop, e if btype == NG_SHB
                                              else self.endian)
                                hdr, epb, pb, u32 = (s.unpack_from
                                                     for s in _STRUCTS[self.endian][1:])
                                table = self.table
                            pos = stop
                            continue
                        if rf is not None:
                            data = reframe(rf, lt, data)
                        st[4] += 1
                        st[5] += wirelen
                        n += 1
                        nbytes += wirelen
                        yield ts, data, wirelen
                        pos = stop
        finally:
            self.packets_read = n
            self.bytes_read = nbytes
            self.pos = base + pos
            self._last_ts = ts
            if stop_msg:
                self._stopped(stop_msg)

    def _ng_walk(self, buf: bytes, base: int, p: int, count: float, until: float,
                 t_lo: float = 0.0, t_hi: float = 0.0) -> tuple[int, int, None]:
        """Follow plausible blocks from buf[p]: (where it stopped, blocks followed, None)."""
        _, hdr, epb, _, u32 = (s.unpack_from for s in _STRUCTS[self.endian])
        nif = len(self.table)
        k = 0
        while k < count and base + p < until and p + 12 <= len(buf):
            btype, blen = hdr(buf, p)
            if (btype not in NG_KNOWN or blen < 12 or blen & 3 or p + blen > len(buf)
                    or u32(buf, p + blen - 4)[0] != blen):
                break
            if btype == NG_EPB:
                iface, _, _, caplen, wirelen = epb(buf, p + 8)
                if iface >= nif or caplen > wirelen or caplen > blen - 32:
                    break
            p += blen
            k += 1
        return p, k, None

    # ------------------------------------------------------------------------ splitting

    def _read(self, offset: int, n: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(n)

    def boundary(self, x: int) -> int | None:
        """The first record (block) start at or after byte x, by resynchronising; None if none.

        Scanning starts one largest record before x, so that a chain found there has passed
        through whatever packet contents lie around x: a candidate must start CHAIN plausible
        records (or a shorter chain ending exactly at the end of the file); it is followed to
        x, and the position reached must itself start such a chain.  A chain that breaks is
        left and the scan goes on from where it broke.
        """
        if self.format == "pcap":
            walk, align = self._pcap_walk, 1
            maxrec = 16 + min(self.snaplen or MAX_CAPLEN, MAX_CAPLEN)
            t_lo, t_hi = self._time_span()
        else:
            walk, align = self._ng_walk, 4
            maxrec = 64 + MAX_CAPLEN
            t_lo = t_hi = 0.0
        lo = max(self.data_start, x - maxrec)
        lo -= lo % align
        buf = self._read(lo, x - lo + RESYNC_READ)

        def starts_chain(p: int) -> bool:
            q, k, _ = walk(buf, lo, p, CHAIN, INF, t_lo, t_hi)
            return k >= CHAIN or (k > 0 and lo + q == self.size)

        p = 0
        while p + 12 <= len(buf):
            if not starts_chain(p):
                p += align
                continue
            q, _, _ = walk(buf, lo, p, INF, x, t_lo, t_hi)
            if lo + q >= x and lo + q < self.size and starts_chain(q):
                return lo + q
            p = q if q > p else p + align
        return None

    def split(self, parts: int, warmup: int) -> list[tuple[int, int, int | None]]:
        """(warm-up start, start, end) byte ranges that read every record exactly once.

        Boundaries near `parts` evenly spaced offsets; a range's warm-up starts at a boundary
        about `warmup` bytes before it (its records belong to the range before).  Where no
        boundary is found the two ranges are one.  The last range ends at the end of the file.
        """
        starts = [self.data_start]
        if self.format in ("pcap", "pcapng") and not self.error and parts > 1:
            span = self.size - self.data_start
            for i in range(1, parts):
                b = self.boundary(self.data_start + span * i // parts)
                if b is not None and b > starts[-1]:
                    starts.append(b)
        out: list[tuple[int, int, int | None]] = []
        for i, s in enumerate(starts):
            w: int | None = s
            if i and s - warmup > self.data_start:
                w = self.boundary(s - warmup)
            elif i:
                w = self.data_start
            out.append((s if w is None or w > s else w, s,
                        starts[i + 1] if i + 1 < len(starts) else None))
        return out
