"""One streaming pass over a capture: per-flow, per-protocol and per-IP-pair statistics.

Memory depends on the number of flows and the capture's duration (throughput bins), never on
the number of packets: TCP retransmissions are found from the highest sequence number seen
(as Wireshark does), RTT matching keeps a bounded queue of unacknowledged segments, and RTT
sample lists are thinned when they grow past a cap.  The per-packet loop (`scan`) is written
inline (no per-packet objects, no dpkt decoding) because it sets the analyzer's speed; it
works on an explicit `State`, so that ranges of one file can be read by separate processes
(testbed.analysis.parallel) and their states merged.
"""

from __future__ import annotations

import statistics
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from testbed.analysis.decode import ip_str, l3, proto_name
from testbed.analysis.reader import LINK_ETHERNET, Capture

MOD = 0xFFFFFFFF
HALF = 0x80000000
RTT_CAP = 20_000  # samples kept per flow; past it every other sample is dropped
OUTSTANDING_CAP = 8192  # unacknowledged segments remembered per TCP flow
ECHO_CAP = 100_000  # unanswered ICMP echo requests remembered before counting them lost
TCP_SYN, TCP_FIN, TCP_ACK = 0x02, 0x01, 0x10

_u16 = struct.Struct("!H").unpack_from
_ip4 = struct.Struct("!H2xH").unpack_from  # total length, flags + fragment offset
_tcp = struct.Struct("!IIBB").unpack_from
_udp = struct.Struct("!HHH").unpack_from


def pctl(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def summary_ms(values_s: list[float]) -> dict[str, Any]:
    """Distribution of delays given in seconds, reported in milliseconds."""
    if not values_s:
        return {"n": 0}
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "min_ms": round(min(ms), 3), "median_ms": round(statistics.median(ms), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "p95_ms": round(pctl(ms, 0.95), 3),
            "max_ms": round(max(ms), 3)}


def _thin(samples: list[tuple[float, float]]) -> None:
    del samples[::2]


def flow_label(key: tuple) -> str:
    proto, src, dst, sport, dport = key
    if proto in (1, 58):
        return f"{proto_name(proto)} {ip_str(src)} > {ip_str(dst)} id={sport}"
    if proto in (6, 17, 132):
        return f"{proto_name(proto)} {ip_str(src)}:{sport} > {ip_str(dst)}:{dport}"
    return f"{proto_name(proto)} {ip_str(src)} > {ip_str(dst)}"


class State:
    """What one pass over packets accumulates; picklable, so that byte ranges of one capture
    can be analysed by separate processes and merged in file order (`merge`)."""

    def __init__(self) -> None:
        self.flows: dict[tuple, list] = {}  # key -> [pkts, bytes, first, last, {bin: bytes}]
        self.tcp: dict[tuple, list] = {}  # key -> [next_end, retrans, outstanding, karn, rtts,
        #                                           reverse key]
        self.non_ip: dict[str, list] = {}  # name -> [pkts, bytes]
        self.echo_pending: dict[tuple, float] = {}  # (addrs, id, seq) -> request time
        self.echo: dict[tuple, list] = {}  # request flow key -> [requests, replies, rtts, evicted]
        self.n = 0
        self.total = 0
        self.first: float | None = None
        self.last: float | None = None

    def reset_counts(self) -> None:
        """After a warm-up pass: keep TCP sequence state, unacknowledged segments and pending
        echo requests (what the packets before a range start tell about the ones in it),
        forget every count."""
        self.flows, self.non_ip = {}, {}
        self.n = self.total = 0
        self.first = self.last = None
        for st in self.tcp.values():
            st[1], st[4] = 0, []
        for e in self.echo.values():
            e[:] = [0, 0, [], 0]

    def trim(self) -> None:
        """Drop what only reading on would need (unacknowledged segments, pending echo
        requests), before a range's state travels back to be merged: it is most of the
        state's memory (up to OUTSTANDING_CAP segments per TCP flow)."""
        for st in self.tcp.values():
            st[2] = deque(maxlen=OUTSTANDING_CAP)
        self.echo_pending = {}

    def merge(self, later: State) -> None:
        """Add the state of the range that follows this one in the file."""
        self.n += later.n
        self.total += later.total
        if self.first is None:
            self.first = later.first
        if later.last is not None:
            self.last = later.last
        for key, (pk, by, t0, t1, bins) in later.flows.items():
            f = self.flows.get(key)
            if f is None:
                self.flows[key] = [pk, by, t0, t1, bins]
                continue
            f[0] += pk
            f[1] += by
            f[3] = t1
            mine = f[4]
            for b, v in bins.items():
                mine[b] = mine.get(b, 0) + v
        for name, (pk, by) in later.non_ip.items():
            e = self.non_ip.setdefault(name, [0, 0])
            e[0] += pk
            e[1] += by
        for key, st in later.tcp.items():
            mine = self.tcp.setdefault(key, st)
            if mine is not st:  # sequence state is the later range's; counts add up
                mine[:] = [st[0], mine[1] + st[1], st[2], st[3], _capped(mine[4] + st[4]),
                           st[5]]
        for key, e in later.echo.items():
            mine = self.echo.setdefault(key, e)
            if mine is not e:
                mine[:] = [mine[0] + e[0], mine[1] + e[1], _capped(mine[2] + e[2]),
                           mine[3] + e[3]]
        self.echo_pending = later.echo_pending


def _capped(samples: list) -> list:
    while len(samples) > RTT_CAP:
        _thin(samples)
    return samples


def analyze_capture(cap: Capture, bin_s: float = 1.0,
                    mavlink_feed: Callable[..., None] | None = None) -> dict[str, Any]:
    """Statistics of one capture; partial results with `error` set if reading stopped early."""
    t_start = time.perf_counter()
    st = scan(cap, State(), cap.linktype, bin_s, mavlink_feed)
    return results(cap, st, bin_s, time.perf_counter() - t_start)


def scan(packets: Iterable[tuple[float, bytes, int]], state: State, lt: int, bin_s: float = 1.0,
         mavlink_feed: Callable[..., None] | None = None) -> State:
    """Add (timestamp, frame, wire length) records of link type `lt` to `state`; return it.

    The per-packet loop: everything it touches is a local name, no per-packet objects beyond
    the flow key, no dpkt decoding; it sets the analyzer's speed.
    """
    flows, tcp, non_ip, echo = state.flows, state.tcp, state.non_ip, state.echo
    echo_pending = state.echo_pending
    n, total, first, last = state.n, state.total, state.first, state.last
    fast_eth = lt == LINK_ETHERNET
    inv_bin = 1.0 / bin_s
    for ts, buf, wirelen in packets:
        n += 1
        total += wirelen
        last = ts
        if first is None:
            first = ts
        caplen = len(buf)
        # Key = (protocol, source+destination address bytes, port bytes or ICMP id bytes):
        # slices of the frame, decoded into text only once per flow at the end.
        if fast_eth and caplen >= 34 and buf[12] == 8 and buf[13] == 0 and buf[14] == 0x45:
            # Ethernet + IPv4 without options: the common case, fixed offsets
            proto = buf[23]
            addrs = buf[26:34]
            l4 = 34
            l4len, frag = _ip4(buf, 16)
            l4len -= 20
            frag &= 0x1FFF
            alen = 4
        else:
            ver, off = l3(lt, buf)
            if ver == 4 and caplen >= off + 20:
                ihl = (buf[off] & 15) * 4
                proto = buf[off + 9]
                addrs = buf[off + 12:off + 20]
                l4 = off + ihl
                l4len = _u16(buf, off + 2)[0] - ihl
                frag = _u16(buf, off + 6)[0] & 0x1FFF
                alen = 4
            elif ver == 6 and caplen >= off + 40:
                proto = buf[off + 6]
                l4len = _u16(buf, off + 4)[0]
                addrs = buf[off + 8:off + 40]
                l4 = off + 40
                frag = 0
                alen = 16
                while proto in (0, 43, 60) and caplen >= l4 + 8:
                    ext = (buf[l4 + 1] + 1) * 8
                    proto = buf[l4]
                    l4 += ext
                    l4len -= ext
                if proto == 44:  # fragment header: only the first fragment has ports
                    if caplen >= l4 + 8:
                        frag = _u16(buf, l4 + 2)[0] >> 3
                        proto = buf[l4]
                    l4 += 8
                    l4len -= 8
            else:
                name = "non-ip" if caplen < 14 or lt != LINK_ETHERNET else (
                    "arp" if buf[12:14] == b"\x08\x06" else f"ethertype 0x{buf[12:14].hex()}")
                e = non_ip.get(name)
                if e is None:
                    non_ip[name] = [1, wirelen]
                else:
                    e[0] += 1
                    e[1] += wirelen
                continue
        ports = b""
        if frag == 0:
            if proto == 6 or proto == 17:
                if caplen >= l4 + 4:
                    ports = buf[l4:l4 + 4]
            elif (proto == 1 or proto == 58) and caplen >= l4 + 8 and buf[l4] in (8, 0, 128, 129):
                ports = buf[l4 + 4:l4 + 6]
        key = (proto, addrs, ports)
        f = flows.get(key)
        b = int(ts * inv_bin)
        if f is None:
            flows[key] = [1, wirelen, ts, ts, {b: wirelen}]
        else:
            f[0] += 1
            f[1] += wirelen
            f[3] = ts
            bins = f[4]
            bins[b] = bins.get(b, 0) + wirelen
        if frag or not ports:
            continue
        if proto == 17:
            if mavlink_feed is not None and caplen > l4 + 8 and (
                    buf[l4 + 8] == 0xFD or buf[l4 + 8] == 0xFE):
                sport, dport, ulen = _udp(buf, l4)
                # cut: tcpdump's snaplen truncated the datagram (from the UDP length, which
                # stays right when a pcapng frame was re-framed to another link type)
                mavlink_feed(ts, buf[l4 + 8:], addrs[:alen], addrs[alen:], sport, dport,
                             ulen > caplen - l4)
        elif proto == 6:
            if caplen < l4 + 14:
                continue
            seq, ack, doff, flags = _tcp(buf, l4 + 4)
            seglen = l4len - (doff >> 4) * 4 + (flags & TCP_SYN) // 2 + (flags & TCP_FIN)
            st = tcp.get(key)
            if st is None:  # the last item is the reverse direction's key, for its ACKs
                st = tcp[key] = [None, 0, deque(maxlen=OUTSTANDING_CAP), None, [],
                                 (6, addrs[alen:] + addrs[:alen], ports[2:] + ports[:2])]
            if seglen > 0:
                end = (seq + seglen) & MOD
                nxt = st[0]
                if nxt is None or (0 < ((end - nxt) & MOD) < HALF):
                    if nxt is not None and ((seq - nxt) & MOD) >= HALF:
                        # overlaps old data and extends it: a repacketised retransmission
                        st[1] += 1
                        st[3] = end
                    st[0] = end
                    st[2].append((end, ts))
                else:  # ends at or before data already seen: sent again
                    st[1] += 1
                    st[3] = nxt if st[3] is None or ((nxt - st[3]) & MOD) < HALF else st[3]
            if flags & TCP_ACK:
                rst = tcp.get(st[5])
                if rst is not None and rst[2]:
                    q = rst[2]
                    hit = None
                    while q and ((ack - q[0][0]) & MOD) < HALF:
                        hit = q.popleft()
                    if hit is not None and hit[0] == ack:
                        karn = rst[3]  # Karn: no sample for data that was retransmitted
                        if karn is None or 0 < ((ack - karn) & MOD) < HALF:
                            rtts = rst[4]
                            rtts.append((ts, ts - hit[1]))
                            if len(rtts) > RTT_CAP:
                                _thin(rtts)
        elif proto == 1 or proto == 58:
            itype = buf[l4]
            ek = (addrs, ports, buf[l4 + 6:l4 + 8])
            if itype == 8 or itype == 128:
                echo_pending[ek] = ts
                e = echo.get(key)
                if e is None:
                    e = echo[key] = [0, 0, [], 0]
                e[0] += 1
                if len(echo_pending) > ECHO_CAP:
                    old = next(iter(echo_pending))
                    del echo_pending[old]
                    rq = echo.get((proto, old[0], old[1]))
                    if rq is not None:
                        rq[3] += 1
            else:
                rk = (addrs[alen:] + addrs[:alen], ports, ek[2])
                t0 = echo_pending.pop(rk, None)
                if t0 is not None:
                    e = echo[(proto, rk[0], ports)]
                    e[1] += 1
                    e[2].append((ts, ts - t0))
                    if len(e[2]) > RTT_CAP:
                        _thin(e[2])
    state.n, state.total, state.first, state.last = n, total, first, last
    return state


def split_key(key: tuple) -> tuple[int, bytes, bytes, int, int]:
    """(protocol, source, destination, source port or ICMP id, destination port)."""
    proto, addrs, ports = key
    half = len(addrs) // 2
    sport = int.from_bytes(ports[:2], "big") if ports else 0
    dport = int.from_bytes(ports[2:4], "big") if len(ports) == 4 else 0
    return proto, addrs[:half], addrs[half:], sport, dport


def results(cap: Capture, state: State, bin_s: float, elapsed: float) -> dict[str, Any]:
    """The capture's result: per flow, conversation and protocol; RTT series kept apart."""
    flows, tcp, non_ip, echo = state.flows, state.tcp, state.non_ip, state.echo
    n, total, first, last = state.n, state.total, state.first, state.last
    # Conversations and protocol totals are sums over flows: cheaper than per packet.
    convs: dict[tuple, list] = {}
    protos: dict[int, list] = {}
    for key, (pk, by, t0, t1, _bins) in flows.items():
        proto, src, dst, _sp, _dp = split_key(key)
        p = protos.setdefault(proto, [0, 0])
        p[0] += pk
        p[1] += by
        fwd = src <= dst
        c = convs.setdefault((src, dst) if fwd else (dst, src), [0, 0, 0, 0, t0, t1])
        c[0 if fwd else 2] += pk
        c[1 if fwd else 3] += by
        c[4] = min(c[4], t0)
        c[5] = max(c[5], t1)
    out_flows = []
    series: dict[str, dict[str, int]] = {}
    rtt_series: dict[str, list[list[float]]] = {}
    for key, (pk, by, t0, t1, bins) in sorted(flows.items(), key=lambda kv: -kv[1][1]):
        skey = split_key(key)
        label = flow_label(skey)
        dur = t1 - t0
        row: dict[str, Any] = {
            "flow": label, "proto": proto_name(skey[0]), "src": ip_str(skey[1]),
            "dst": ip_str(skey[2]), "sport": skey[3], "dport": skey[4], "packets": pk,
            "bytes": by, "first": t0, "last": t1, "duration_s": round(dur, 6),
            "mean_bps": round(by * 8 / dur, 1) if dur > 0 else None}
        st = tcp.get(key)
        if st is not None:
            row["retransmissions"] = st[1]
            rtts = [r for _, r in st[4]]
            row["rtt"] = summary_ms(rtts)
            if st[4]:
                rtt_series[label] = [[round(t, 6), round(r * 1000, 3)] for t, r in st[4]]
        e = echo.get(key)
        if e is not None:
            req, rep, samples, _evicted = e
            row["echo"] = {"requests": req, "replies": rep,
                           "loss_pct": round(100 * (req - rep) / req, 3) if req else None,
                           "rtt": summary_ms([r for _, r in samples])}
            if samples:
                rtt_series[label] = [[round(t, 6), round(r * 1000, 3)] for t, r in samples]
        out_flows.append(row)
        series[label] = {str(b): v for b, v in sorted(bins.items())}
    out_convs = []
    for (a, b), (fab, bab, fba, bba, t0, t1) in sorted(
            convs.items(), key=lambda kv: -(kv[1][1] + kv[1][3])):
        out_convs.append({"a": ip_str(a), "b": ip_str(b), "frames_a_to_b": fab,
                          "bytes_a_to_b": bab, "frames_b_to_a": fba, "bytes_b_to_a": bba,
                          "frames": fab + fba, "bytes": bab + bba, "first": t0,
                          "duration_s": round(t1 - t0, 6)})
    return {
        "file": str(cap.path), "format": cap.format, "linktype": cap.linktype,
        "packets": n, "bytes": total, "first": first, "last": last,
        "duration_s": round(last - first, 6) if n else 0.0,
        "error": cap.error, "elapsed_s": round(elapsed, 3),
        "packets_per_s": round(n / elapsed) if elapsed > 0 else None,
        "protocols": {proto_name(p): {"packets": v[0], "bytes": v[1]}
                      for p, v in sorted(protos.items(), key=lambda kv: -kv[1][1])},
        "non_ip": {k: {"packets": v[0], "bytes": v[1]} for k, v in non_ip.items()},
        "flows": out_flows, "conversations": out_convs,
        "throughput": {"bin_s": bin_s, "bytes_per_bin": series},
        "rtt_series_ms": rtt_series,
    } | ({"interfaces": [
        {"section": i[0], "id": i[1], "name": i[2], "linktype": i[3], "packets": i[4],
         "bytes": i[5]} for i in cap.interfaces]} if cap.format == "pcapng" else {})
