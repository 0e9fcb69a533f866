"""Synthetic captures written with dpkt: known ground truth for tests and the benchmark.

The packets are built once per template and written many times with changing timestamps,
IP ids and TCP sequence numbers patched in, because building dpkt objects per packet would
make generating a gigabyte take minutes.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import dpkt

MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def ip4(s: str) -> bytes:
    return socket.inet_aton(s)


def eth(ip: dpkt.ip.IP, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=dpkt.ethernet.ETH_TYPE_IP,
                                        data=ip))


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ip_id: int = 0,
        ttl: int = 64) -> bytes:
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    u.ulen = len(u)
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_UDP, id=ip_id, ttl=ttl,
                    data=u)
    ip.len = len(ip)
    return eth(ip)


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"", ip_id: int = 0) -> bytes:
    t = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, data=payload,
                     win=65535)
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_TCP, id=ip_id, data=t)
    ip.len = len(ip)
    return eth(ip)


def icmp_echo(src: str, dst: str, ident: int, seq: int, reply: bool = False,
              ip_id: int = 0) -> bytes:
    ic = dpkt.icmp.ICMP(type=0 if reply else 8, data=dpkt.icmp.ICMP.Echo(
        id=ident, seq=seq, data=b"x" * 56))
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_ICMP, id=ip_id, data=ic)
    ip.len = len(ip)
    return eth(ip)


def write_pcap(path: Path, packets: Iterator[tuple[float, bytes]] | list[tuple[float, bytes]],
               linktype: int = dpkt.pcap.DLT_EN10MB, snaplen: int = 65535) -> int:
    """Write (ts, frame) pairs; frames longer than snaplen are cut as tcpdump would."""
    n = 0
    with Path(path).open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype, snaplen=snaplen)
        for ts, frame in packets:
            if len(frame) > snaplen:  # keep the original length in the record header
                sec = int(ts)
                usec = round((ts - sec) * 1e6)
                f.write(struct.pack("<IIII", sec, usec, snaplen, len(frame)) + frame[:snaplen])
            else:
                w.writepkt(frame, ts=ts)
            n += 1
    return n


def mixed_traffic(t0: float = 1_700_000_000.0, seconds: float = 5.0,
                  seed: int = 1) -> list[tuple[float, bytes]]:
    """A small run: one TCP transfer with a retransmission, UDP, and pings with one lost."""
    rng = random.Random(seed)
    pkts: list[tuple[float, bytes]] = []
    a, b = "10.0.0.1", "10.0.0.2"
    rtt = 0.010
    # TCP handshake + 50 data segments of 1000 bytes, acked after 10 ms; segment 20 resent
    isn, rsn = 1000, 5000
    t = t0
    pkts.append((t, tcp(a, b, 40000, 80, isn, 0, dpkt.tcp.TH_SYN)))
    pkts.append((t + rtt, tcp(b, a, 80, 40000, rsn, isn + 1, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)))
    pkts.append((t + rtt + 0.0001, tcp(a, b, 40000, 80, isn + 1, rsn + 1, dpkt.tcp.TH_ACK)))
    seq = isn + 1
    t += 0.1
    for i in range(50):
        data = rng.randbytes(1000)
        pkts.append((t, tcp(a, b, 40000, 80, seq, rsn + 1, dpkt.tcp.TH_ACK, data, ip_id=i)))
        if i == 20:  # first copy "lost": resent 50 ms later, then acked
            pkts.append((t + 0.05, tcp(a, b, 40000, 80, seq, rsn + 1, dpkt.tcp.TH_ACK, data,
                                       ip_id=1000 + i)))
            pkts.append((t + 0.05 + rtt, tcp(b, a, 80, 40000, rsn + 1, seq + 1000,
                                             dpkt.tcp.TH_ACK)))
        else:
            pkts.append((t + rtt, tcp(b, a, 80, 40000, rsn + 1, seq + 1000, dpkt.tcp.TH_ACK)))
        seq += 1000
        t += 0.06
    # UDP 20 packets/s of 200 bytes for the whole time
    for i in range(int(seconds * 20)):
        pkts.append((t0 + i * 0.05 + 0.003, udp("10.0.0.3", "10.0.0.4", 5000, 6000,
                                                 rng.randbytes(200), ip_id=i)))
    # 10 pings, number 7 never answered
    for i in range(10):
        ts = t0 + 0.5 * i + 0.001
        pkts.append((ts, icmp_echo(a, "10.0.0.9", 77, i, ip_id=200 + i)))
        if i != 7:
            pkts.append((ts + 0.030, icmp_echo("10.0.0.9", a, 77, i, reply=True,
                                                ip_id=300 + i)))
    pkts.sort(key=lambda p: p[0])
    return pkts


def bulk_file(path: Path, size_bytes: int, seed: int = 7, flows: int = 64,
              sizes: tuple[int, ...] = (64, 128, 256, 576, 1200, 1500)) -> int:
    """A capture of about `size_bytes` with random payloads over `flows` UDP/TCP flows.

    Templates are built with dpkt once; each record patches the IP id (and TCP sequence) so
    that fingerprints and retransmission logic see distinct packets.  Returns packets written.
    """
    rng = random.Random(seed)
    templates = []
    for i in range(flows):
        src, dst = f"10.{i % 250}.0.1", f"10.{i % 250}.1.{1 + i // 250}"
        for size in sizes:
            payload = rng.randbytes(max(0, size - 54))
            if i % 2:
                frame = tcp(src, dst, 10000 + i, 80, 0, 1, dpkt.tcp.TH_ACK, payload)
            else:
                frame = udp(src, dst, 20000 + i, 9000, payload)
            templates.append((bytearray(frame), i % 2 == 1, len(payload)))
    seqs = [1] * len(templates)
    rec = struct.Struct("<IIII")
    n = 0
    written = 24
    t = 1_700_000_000.0
    with Path(path).open("wb") as f:
        dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB, snaplen=65535)
        out: list[bytes] = []
        pending = 0
        picks = [rng.randrange(len(templates)) for _ in range(4096)]
        while written < size_bytes:
            k = picks[n & 4095]
            frame, is_tcp, plen = templates[k]
            struct.pack_into("!H", frame, 18, n & 0xFFFF)
            if is_tcp:
                struct.pack_into("!I", frame, 38, seqs[k])
                seqs[k] = (seqs[k] + plen) & 0xFFFFFFFF
            t += 0.00001
            sec = int(t)
            out.append(rec.pack(sec, int((t - sec) * 1e6), len(frame), len(frame)))
            out.append(bytes(frame))
            pending += 16 + len(frame)
            written += 16 + len(frame)
            n += 1
            if pending > 8 << 20:
                f.write(b"".join(out))
                out.clear()
                pending = 0
        f.write(b"".join(out))
    return n


def ng_block(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _ng_opts(opts: list[tuple[int, bytes]], e: str = "<") -> bytes:
    out = b""
    for code, val in opts:
        out += struct.pack(e + "HH", code, len(val)) + val + b"\x00" * (-len(val) % 4)
    return out + (struct.pack(e + "HH", 0, 0) if opts else b"")


def pcapng_bytes(interfaces: list[tuple[int, int, str]],
                 packets: list[tuple[int, float, bytes]], endian: str = "<",
                 tsresol: int = 6, extra: bool = True) -> bytes:
    """A pcapng section: SHB, one IDB per (linktype, snaplen, name), an EPB per
    (interface, ts, frame) cut to its interface's snaplen with the original length kept.
    `extra` adds blocks a reader must skip (name resolution, interface statistics, custom)."""
    e = endian
    out = [ng_block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)]
    for lt, snap, name in interfaces:
        out.append(ng_block(1, struct.pack(e + "HHI", lt, 0, snap) + _ng_opts(
            [(2, name.encode()), (9, bytes([tsresol]))], e), e))
    if extra:
        out.append(ng_block(4, struct.pack(e + "HH", 1, 9) + ip4("10.0.0.1") + b"host\x00"
                             + bytes(3) + struct.pack(e + "HH", 0, 0), e))  # NRB
        out.append(ng_block(0x40000BAD, struct.pack(e + "I", 32473) + b"custom", e))
    mult = 10 ** tsresol
    for k, (i, ts, frame) in enumerate(packets):
        snap = interfaces[i][1] or len(frame)
        cap = frame[:snap]
        ticks = round(ts * mult)
        out.append(ng_block(6, struct.pack(e + "IIIII", i, ticks >> 32, ticks & 0xFFFFFFFF,
                                            len(cap), len(frame)) + cap, e))
        if extra and k == len(packets) // 2:
            out.append(ng_block(5, struct.pack(e + "III", 0, ticks >> 32, ticks & 0xFFFFFFFF),
                                 e))  # ISB
    return b"".join(out)


def tricky_traffic(t0: float = 1_700_000_000.0, seconds: float = 8.0,
                   seed: int = 3) -> list[tuple[float, bytes]]:
    """Traffic for split tests: a TCP transfer acked 20 ms later with retransmissions, pings
    (some lost), MAVLink heartbeats and command/ack pairs, and UDP datagrams whose random
    payloads embed chains of fake pcap record headers and pcapng blocks with plausible
    timestamps and lengths, so that a resynchronising reader has something to trip on."""
    from pymavlink.dialects.v20 import common

    rng = random.Random(seed)
    pkts: list[tuple[float, bytes]] = []
    a, b = "10.0.0.1", "10.0.0.2"
    seq, ack0 = 1000, 5000
    n_seg = int(seconds * 150)
    for i in range(n_seg):
        t = t0 + i / 150
        data = rng.randbytes(rng.choice((200, 600, 1000)))
        pkts.append((t, tcp(a, b, 40000, 80, seq, ack0, 0x18, data, ip_id=i & 0xFFFF)))
        if i % 97 == 5:  # first copy "lost": sent again 30 ms later, acked after that
            pkts.append((t + 0.03, tcp(a, b, 40000, 80, seq, ack0, 0x18, data)))
            pkts.append((t + 0.05, tcp(b, a, 80, 40000, ack0, seq + len(data), 0x10)))
        else:
            pkts.append((t + 0.02, tcp(b, a, 80, 40000, ack0, seq + len(data), 0x10)))
        seq += len(data)
    for i in range(int(seconds * 10)):
        t = t0 + i * 0.1 + 0.004
        pkts.append((t, icmp_echo(a, "10.0.0.9", 77, i)))
        if i % 13 != 4:
            pkts.append((t + 0.03, icmp_echo("10.0.0.9", a, 77, i, reply=True)))
    veh = common.MAVLink(None, srcSystem=1, srcComponent=1)
    gcs = common.MAVLink(None, srcSystem=255, srcComponent=190)
    for i in range(int(seconds * 2)):
        t = t0 + i * 0.5 + 0.002
        pkts.append((t, udp("10.0.0.5", "10.0.0.1", 14580, 14540,
                            veh.heartbeat_encode(2, 3, 0, 0, 4).pack(veh))))
        if i % 3 == 1:
            cmd = gcs.command_long_encode(1, 1, 400 + i, 0, 1, 0, 0, 0, 0, 0, 0).pack(gcs)
            pkts.append((t + 0.1, udp("10.0.0.1", "10.0.0.5", 40001, 14580, cmd)))
            pkts.append((t + 0.145, udp("10.0.0.5", "10.0.0.1", 14580, 40001,
                                        veh.command_ack_encode(400 + i, 0).pack(veh))))
    for i in range(int(seconds * 300)):
        t = t0 + i / 300 + 0.001
        fake = b""
        for k in range(10):  # a chain of plausible empty-ish pcap records
            sec = int(t)
            fake += struct.pack("<IIII", sec, int((t - sec) * 1e6) + k, 4, 4) + b"\x00" * 4
        blk = ng_block(6, struct.pack("<IIIII", 0, 0, 0, 4, 4) + b"abcd")
        payload = rng.randbytes(rng.randrange(0, 40)) + fake + blk * 9 + rng.randbytes(
            rng.randrange(0, 300))
        pkts.append((t, udp("10.0.0.3", "10.0.0.4", 5000, 6000, payload, ip_id=i & 0xFFFF)))
    pkts.sort(key=lambda p: p[0])
    return pkts
