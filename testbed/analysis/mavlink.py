"""MAVLink seen in the captures: message rates per vehicle, command latency, telemetry gaps.

Vehicles here talk over UDP on 14540+/14550+, but ports are not relied on: any UDP payload
starting with a MAVLink 2 (0xFD) or 1 (0xFE) magic byte is offered to pymavlink's parser,
which rejects non-MAVLink by CRC.  Each datagram is parsed on its own (UDP carries whole
frames), so one bad datagram cannot corrupt the next.

`MavlinkStats.merge` adds the statistics of the next byte range of a capture read by another
process (testbed.analysis.parallel).  Counts, rates, versions and telemetry gaps (including
the gap across the boundary) come out as in one pass.  An ACK that found no COMMAND_LONG in
its own range is matched at merge time against the commands still pending before it, so
command latency is exact too, except in two cases: the same command to the same target is
outstanding on both sides of a boundary (an ACK may then pair with the later copy instead of
the earlier one), or more than PENDING_CAP commands are pending.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from testbed.analysis.flows import summary_ms

GAP_TYPES = ("HEARTBEAT", "GLOBAL_POSITION_INT")
PENDING_CAP = 10_000


class MavlinkStats:
    """Accumulates decoded messages; `feed` is the hook analyze_capture calls per datagram."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, str], list[float]] = {}  # (sysid, type) -> [n, first, last]
        self.last_seen: dict[tuple[int, str], float] = {}
        self.gaps: dict[tuple[int, str], tuple[float, float]] = {}  # -> (gap_s, at)
        self.commands: deque = deque(maxlen=PENDING_CAP)  # (ts, target_sys, command, src_sys)
        self.latencies: list[tuple[float, float, int, int]] = []  # (ts, s, sysid, command)
        self.orphan_acks: deque = deque(maxlen=PENDING_CAP)  # (ts, sysid, command) unmatched
        self.bad = 0
        self.versions = {1: 0, 2: 0}

    def feed(self, ts: float, payload: bytes, src: bytes, dst: bytes, sport: int,
             dport: int, cut: bool = False) -> None:
        """One UDP payload; `cut` when tcpdump's snaplen truncated the datagram."""
        if not frames_fit(payload, cut):
            return
        # A fresh parser per datagram: UDP carries whole frames, and a parser left holding a
        # partial frame would re-scan an ever-growing buffer on every later datagram.
        from pymavlink.dialects.v20 import common  # deferred: costs 40 ms and 10 MB

        p = common.MAVLink(None)
        p.robust_parsing = True
        try:
            msgs = p.parse_buffer(payload) or []
        except Exception:  # noqa: BLE001 - pymavlink raises many types on garbage; skip it
            self.bad += 1
            return
        for m in msgs:
            mtype = m.get_type()
            if mtype == "BAD_DATA":
                self.bad += 1
                continue
            self._msg(ts, m, mtype)

    def _msg(self, ts: float, m: Any, mtype: str) -> None:
        sysid = m.get_srcSystem()
        self.versions[2 if payload_is_v2(m) else 1] += 1
        k = (sysid, mtype)
        c = self.counts.get(k)
        if c is None:
            self.counts[k] = [1, ts, ts]
        else:
            c[0] += 1
            c[2] = ts
        if mtype in GAP_TYPES:
            prev = self.last_seen.get(k)
            if prev is not None:
                gap = ts - prev
                if gap > self.gaps.get(k, (0.0, 0.0))[0]:
                    self.gaps[k] = (gap, prev)
            self.last_seen[k] = ts
        if mtype == "COMMAND_LONG":
            self.commands.append((ts, m.target_system, m.command, sysid))
        elif mtype == "COMMAND_ACK" and not self._ack(ts, sysid, m.command):
            self.orphan_acks.append((ts, sysid, m.command))

    def _ack(self, ts: float, sysid: int, command: int) -> bool:
        for i, (t0, target, cmd, _src) in enumerate(self.commands):
            if cmd == command and (target in (0, sysid)):
                self.latencies.append((t0, ts - t0, sysid, cmd))
                del self.commands[i]
                return True
        return False

    def merge(self, later: MavlinkStats) -> None:
        """Add the statistics of the byte range that follows this one in the capture."""
        for k, (n, t0, t1) in later.counts.items():
            c = self.counts.get(k)
            if c is None:
                self.counts[k] = [n, t0, t1]
            else:
                c[0] += n
                c[2] = t1
            prev = self.last_seen.get(k)
            if prev is not None and t0 - prev > self.gaps.get(k, (0.0, 0.0))[0]:
                self.gaps[k] = (t0 - prev, prev)  # the gap across the boundary
        for k, g in later.gaps.items():
            if g[0] > self.gaps.get(k, (0.0, 0.0))[0]:
                self.gaps[k] = g
        self.last_seen.update(later.last_seen)
        kept = deque(maxlen=PENDING_CAP)
        for ts, sysid, cmd in later.orphan_acks:
            if not self._ack(ts, sysid, cmd):
                kept.append((ts, sysid, cmd))
        self.orphan_acks = kept
        self.commands.extend(later.commands)
        self.latencies += later.latencies
        self.latencies.sort(key=lambda x: x[0] + x[1])  # in ACK order, as one pass has them
        self.bad += later.bad
        for v, k in later.versions.items():
            self.versions[v] += k

    def results(self) -> dict[str, Any]:
        vehicles: dict[str, dict[str, Any]] = {}
        for (sysid, mtype), (n, t0, t1) in sorted(self.counts.items()):
            v = vehicles.setdefault(str(sysid), {"messages": {}, "gaps": {}})
            dur = t1 - t0
            v["messages"][mtype] = {"count": int(n),
                                    "rate_hz": round((n - 1) / dur, 3) if dur > 0 else None}
        for (sysid, mtype), (gap, at) in self.gaps.items():
            vehicles[str(sysid)]["gaps"][mtype] = {"max_gap_s": round(gap, 4), "at": at}
        return {
            "messages": int(sum(c[0] for c in self.counts.values())),
            "bad_datagrams": self.bad, "by_version": dict(self.versions), "vehicles": vehicles,
            "command_ack": summary_ms([d for _, d, _, _ in self.latencies]),
            "command_ack_samples": [{"t": t, "latency_ms": round(d * 1000, 3), "sysid": s,
                                     "command": c} for t, d, s, c in self.latencies[:10_000]],
            "commands_unanswered": len(self.commands),
        }


def frames_fit(payload: bytes, snap_cut: bool = False) -> bool:
    """Whether the datagram is a chain of MAVLink frames by their length fields.

    Random UDP payloads start with 0xFD/0xFE one time in 128; pymavlink would then scan them
    byte by byte in Python.  Walking the length fields rejects nearly all of them for free.
    A chain running past the captured bytes is accepted (tcpdump's snaplen cuts datagrams).
    """
    pos, end = 0, len(payload)
    while pos < end:
        magic = payload[pos]
        if pos + 2 > end:
            return snap_cut
        if magic == 0xFD:
            signed = pos + 3 <= end and payload[pos + 2] & 1
            pos += 12 + payload[pos + 1] + (13 if signed else 0)
        elif magic == 0xFE:
            pos += 8 + payload[pos + 1]
        else:
            return False
    return pos == end or snap_cut


def payload_is_v2(m: Any) -> bool:
    buf = m.get_msgbuf()
    return bool(buf) and buf[0] == 0xFD
