"""What the captures say about steering: when the first packet of a service reached its
instance, and how long the arrivals stopped when a link was cut.

Read with the testbed's streaming capture reader (testbed.analysis), because captures are taken
on the instance's own access link while the run is still going (tcpdump -U): the last record
may be half written, which ends the read instead of failing it.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from testbed.analysis.decode import l3
from testbed.analysis.reader import Capture, CaptureError

Key = tuple[str, int]  # (destination address, destination UDP/TCP port)


def arrivals(pcaps: Iterable[Path], wanted: set[Key]) -> dict[Key, list[float]]:
    """Capture timestamps of IPv4 UDP/TCP packets addressed to the wanted (address, port)."""
    out: dict[Key, list[float]] = {k: [] for k in wanted}
    for path in pcaps:
        try:
            capture = Capture(path)
            # the reader stops at a record still being written and keeps what came before
            for ts, buf, _ in capture:
                key = _key(capture.linktype, buf)
                if key is not None and key in out:
                    out[key].append(ts)
        except (OSError, CaptureError):
            continue  # missing, not yet headed, or not a capture: nothing captured there
    for times in out.values():
        times.sort()
    return out


def _key(linktype: int, buf: bytes) -> Key | None:
    version, off = l3(linktype, buf)
    if version != 4 or len(buf) < off + 20:
        return None
    proto, ihl = buf[off + 9], (buf[off] & 0x0F) * 4
    if proto not in (6, 17) or len(buf) < off + ihl + 4:
        return None
    dport = int.from_bytes(buf[off + ihl + 2:off + ihl + 4], "big")
    return socket.inet_ntoa(buf[off + 16:off + 20]), dport


def first_after(times: list[float], t0: float) -> float | None:
    return next((t for t in times if t >= t0), None)


def outage(times: list[float], t_cut: float, window_s: float = 1.0) -> dict[str, Any] | None:
    """The longest silence in arrivals from the last packet before the cut to `window_s` after
    it, and when arrivals resumed.  The window must end before the stream does; no arrival in
    it at all means the traffic did not recover (reported, never hidden)."""
    before = [t for t in times if t <= t_cut]
    if not before:
        return None
    after = [t for t in times if t_cut < t <= t_cut + window_s]
    if not after:
        return {"gap_ms": None, "resumed_after_cut_ms": None, "recovered": False}
    points = [before[-1], *after]
    gaps = [(b - a, a, b) for a, b in itertools.pairwise(points)]
    gap, _, end = max(gaps)
    return {"gap_ms": round(gap * 1000, 2), "resumed_after_cut_ms":
            round((after[0] - t_cut) * 1000, 2) if gap == gaps[0][0] else
            round((end - t_cut) * 1000, 2), "recovered": True}
