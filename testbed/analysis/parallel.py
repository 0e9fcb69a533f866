"""Jobs for the process pool, and one large capture read by several processes.

A capture larger than `split_min` is cut into byte ranges at record boundaries the parent
finds once (Capture.split: a few KB read at each cut, so ranges never overlap or leave gaps).
Each range is a job: it first reads the `warmup` bytes before its start with the counters
off, which rebuilds TCP sequence state, unacknowledged segments and pending echo requests,
then counts its own records.  TCP retransmissions and RTT and ping RTT/loss across a boundary
therefore come out as in one pass, as long as what they depend on lies within the warm-up
(an ACK or echo reply more than `warmup` bytes of capture after its segment or request is
not matched, nor a retransmission of data last seen that far back).  MAVLink is not fed in
the warm-up; MavlinkStats.merge joins the ranges (see there for what can differ).

`combine` merges the ranges' states in file order into the result a single pass gives.  If a
range stopped on an error, the ranges after it are dropped, as one pass would stop there; if
a pcapng section or interface was declared inside a range (later ranges were read with the
wrong interface table), or a range did not end where the next one starts, the rest of the
file is read in the parent, continuing that range's state: correct, only slower.
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.analysis.delay import one_way_delay
from testbed.analysis.flows import State, results, scan
from testbed.analysis.mavlink import MavlinkStats
from testbed.analysis.reader import Capture, CaptureError

SPLIT_MIN = 64 << 20  # captures larger than this are split when that helps
WARMUP = 16 << 20  # bytes before a range read to rebuild TCP and echo state


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _failed(path: str, bin_s: float, error: str) -> dict[str, Any]:
    return {"file": path, "error": error, "packets": 0, "bytes": 0, "flows": [],
            "conversations": [], "throughput": {"bin_s": bin_s, "bytes_per_bin": {}},
            "rtt_series_ms": {}}


def capture_job(path: str, bin_s: float) -> dict[str, Any]:
    """A whole capture in one pass, with MAVLink; an unreadable file gives an `error` entry."""
    t0 = time.perf_counter()
    try:
        cap = Capture(path)
        mav = MavlinkStats()
        st = scan(cap, State(), cap.linktype, bin_s, mav.feed)
    except (CaptureError, OSError) as exc:
        return _failed(path, bin_s, str(exc))
    res = results(cap, st, bin_s, time.perf_counter() - t0)
    res["mavlink"] = mav.results()
    return res


def delay_job(a: str, b: str, window_s: float, nat_robust: bool) -> dict[str, Any]:
    try:
        return one_way_delay(a, b, window_s=window_s, nat_robust=nat_robust)
    except (CaptureError, OSError) as exc:
        return {"a": a, "b": b, "errors": [str(exc)], "directions": []}


@dataclass
class Part:
    """One byte range of a capture: [start, end) after a warm-up from `warm`; then its state."""

    path: str
    warm: int
    start: int
    end: int | None
    state: State = field(default_factory=State)
    cap: Capture | None = None
    mav: MavlinkStats = field(default_factory=MavlinkStats)
    elapsed_s: float = 0.0
    pid: int = 0
    peak_rss_mb: float = 0.0


def part_job(part: Part, bin_s: float) -> Part:
    t0 = time.perf_counter()
    cap = part.cap = Capture(part.path)
    if part.warm < part.start:
        scan(cap.records(part.warm, part.start), part.state, cap.linktype, bin_s)
        part.state.reset_counts()
        cap.reset_counts()
    scan(cap.records(part.start, part.end), part.state, cap.linktype, bin_s, part.mav.feed)
    if not cap.layout_changed and cap.pos == (part.end or cap.pos):
        part.state.trim()  # nobody will read on from this state (see combine)
    part.elapsed_s = round(time.perf_counter() - t0, 3)
    part.pid, part.peak_rss_mb = os.getpid(), peak_rss_mb()
    return part


def plan(path: str | Path, parts: int, warmup: int = WARMUP) -> list[Part] | None:
    """The ranges to read `path` in (at most `parts`), or None if it is not worth splitting."""
    if parts < 2:
        return None
    try:
        cap = Capture(path)
    except (CaptureError, OSError):
        return None  # the whole-file job reports it
    ranges = cap.split(parts, warmup)
    return [Part(str(path), *r) for r in ranges] if len(ranges) > 1 else None


def parts_for(size: int, share: float, workers: int, split_min: int = SPLIT_MIN) -> int:
    """How many ranges a capture of `size` bytes gets when each worker's share of the work is
    `share` bytes: none below split_min, and no range under split_min / 2 (warm-up cost)."""
    if workers < 2 or size <= split_min:
        return 1
    return max(1, min(workers, math.ceil(size / max(share, 1)), size // (split_min // 2)))


def combine(parts: list[Part], bin_s: float, elapsed: float) -> dict[str, Any]:
    """The single-pass result from the ranges' states, merged in file order."""
    k = 1
    for prev, nxt in itertools.pairwise(parts):
        c = prev.cap
        if c is None or c.error or c.layout_changed or c.pos != nxt.start:
            break
        k += 1
    used = parts[:k]
    last = used[-1]
    if last is not parts[-1] and last.cap is not None and not last.cap.error:
        scan(last.cap.records(last.cap.pos, None), last.state, last.cap.linktype, bin_s,
             last.mav.feed)
    report = [{"start": p.start, "end": p.end, "warmup_bytes": p.start - p.warm,
               "packets": p.state.n, "elapsed_s": p.elapsed_s, "pid": p.pid,
               "peak_rss_mb": p.peak_rss_mb, "merged": i < k} for i, p in enumerate(parts)]
    first = used[0]
    cap, st, mav = first.cap, first.state, first.mav
    assert cap is not None
    for p in used[1:]:
        st.merge(p.state)
        mav.merge(p.mav)
        assert p.cap is not None
        for i, theirs in enumerate(p.cap.interfaces):
            if i < len(cap.interfaces):
                cap.interfaces[i][4] += theirs[4]
                cap.interfaces[i][5] += theirs[5]
            else:
                cap.interfaces.append(theirs)
    cap.error = last.cap.error_for(st.n) if last.cap is not None else None
    res = results(cap, st, bin_s, elapsed)
    res["mavlink"] = mav.results()
    res["parts"] = report
    return res
