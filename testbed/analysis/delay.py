"""One-way delay and loss between two capture points of one run (same host clock).

A packet is recognised at both points by a fingerprint of bytes no router changes: IP id,
protocol, IP payload length, L4 ports, TCP sequence/ack and a payload prefix; TTL and checksums
are left out, and with `nat_robust` the addresses and ports too (NAT rewrites them).  The two
files are merged in time order and only packets younger than `window_s` are remembered, so
memory is bounded by window x rate whatever the files' size.  A packet seen at one point and
not at the other within the window counts as lost in that direction.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testbed.analysis.decode import l3
from testbed.analysis.flows import summary_ms
from testbed.analysis.reader import Capture

PREFIX = 32  # payload bytes in the fingerprint; within tcpdump's 256-byte snaplen
SERIES_CAP = 20_000


def fingerprint(linktype: int, buf: bytes, nat_robust: bool = False) -> bytes | None:
    ver, off = l3(linktype, buf)
    if ver == 4 and len(buf) >= off + 20:
        ihl = (buf[off] & 15) * 4
        proto = buf[off + 9]
        # total length, id, flags/fragment offset | protocol
        inv = buf[off + 2:off + 8] + bytes((proto,))
        addr = b"" if nat_robust else buf[off + 12:off + 20]
        l4 = off + ihl
    elif ver == 6 and len(buf) >= off + 40:
        proto = buf[off + 6]
        inv = buf[off:off + 1] + buf[off + 1:off + 6] + bytes((proto,))  # flow label, length
        addr = b"" if nat_robust else buf[off + 8:off + 40]
        l4 = off + 40
    else:
        return None
    if proto == 6:
        l4b = buf[l4 + 4:l4 + 12] + buf[l4 + 13:l4 + 14] if nat_robust else buf[l4:l4 + 14]
        doff = (buf[l4 + 12] >> 4) * 4 if len(buf) > l4 + 12 else 20
        payload = buf[l4 + doff:l4 + doff + PREFIX]
    elif proto == 17:
        l4b = buf[l4 + 4:l4 + 6] if nat_robust else buf[l4:l4 + 6]
        payload = buf[l4 + 8:l4 + 8 + PREFIX]
    elif proto in (1, 58):
        l4b = buf[l4:l4 + 2] + buf[l4 + 4:l4 + 8]  # type, code, id, seq (checksum varies)
        payload = buf[l4 + 8:l4 + 8 + PREFIX]
    else:
        l4b = b""
        payload = buf[l4:l4 + PREFIX]
    return hashlib.blake2b(inv + addr + l4b + payload, digest_size=12).digest()


def _stream(cap: Capture, side: int, nat_robust: bool) -> Iterator[tuple[float, int, bytes]]:
    for ts, buf, _wl in cap:
        fp = fingerprint(cap.linktype, buf, nat_robust)
        if fp is not None:
            yield ts, side, fp


def one_way_delay(path_a: str | Path, path_b: str | Path, window_s: float = 5.0,
                  nat_robust: bool = False) -> dict[str, Any]:
    """Delay and loss in both directions between captures A and B."""
    caps = (Capture(path_a), Capture(path_b))
    pending: tuple[dict[bytes, deque], dict[bytes, deque]] = ({}, {})
    ages: tuple[deque, deque] = (deque(), deque())  # (ts, fp) in arrival order per side
    delays: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
    seen = [0, 0]
    lost = [0, 0]  # lost[0]: seen at A, never at B
    for ts, side, fp in heapq.merge(_stream(caps[0], 0, nat_robust),
                                    _stream(caps[1], 1, nat_robust)):
        seen[side] += 1
        for s in (0, 1):  # forget packets older than the window: lost toward the other side
            q = ages[s]
            while q and q[0][0] < ts - window_s:
                t_old, fp_old = q.popleft()
                dq = pending[s].get(fp_old)
                if dq and dq[0] == t_old:
                    dq.popleft()
                    lost[s] += 1
                    if not dq:
                        del pending[s][fp_old]
        other = 1 - side
        dq = pending[other].get(fp)
        if dq:
            t_sent = dq.popleft()
            if not dq:
                del pending[other][fp]
            d = delays[other]  # direction other -> side
            d.append((t_sent, ts - t_sent))
            if len(d) > SERIES_CAP * 4:
                del d[::2]
        else:
            pending[side].setdefault(fp, deque()).append(ts)
            ages[side].append((ts, fp))
    for s in (0, 1):
        lost[s] += sum(len(dq) for dq in pending[s].values())
    names = (Path(path_a).stem, Path(path_b).stem)
    out: dict[str, Any] = {"a": str(path_a), "b": str(path_b), "window_s": window_s,
                           "nat_robust": nat_robust, "errors": [c.error for c in caps if c.error],
                           "directions": []}
    for s in (0, 1):
        matched = len(delays[s])
        sent = matched + lost[s]
        if sent == 0:
            continue
        step = max(1, matched // SERIES_CAP)
        out["directions"].append({
            "from": names[s], "to": names[1 - s], "matched": matched, "lost": lost[s],
            "loss_pct": round(100 * lost[s] / sent, 3),
            "delay": summary_ms([d for _, d in delays[s]]),
            "series_ms": [[round(t, 6), round(d * 1000, 3)] for t, d in delays[s][::step]]})
    return out


def pairs_in_run(pcaps: list[Path]) -> list[tuple[Path, Path]]:
    """Captures of the same link at different nodes (`<link>--<node>.pcap`)."""
    by_link: dict[str, list[Path]] = {}
    for p in sorted(pcaps):
        link = p.stem.split("--")[0] if "--" in p.stem else None
        if link:
            by_link.setdefault(link, []).append(p)
    pairs = []
    for files in by_link.values():
        for i in range(len(files)):
            for j in range(i + 1, len(files)):
                pairs.append((files[i], files[j]))
    return pairs
