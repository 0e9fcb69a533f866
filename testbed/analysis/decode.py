"""Link types and header offsets: where the IP header starts in a frame.

Kept apart from the statistics so that the per-flow pass, the fingerprinting pass of the
one-way delay analysis and the capture reader (which re-frames packets of a pcapng interface
whose link type differs from the file's) take frames apart the same way.
"""

from __future__ import annotations

import socket

# Link types we can take apart (LINKTYPE_* numbers as written in capture files).
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = (
    0, 1, 101, 113, 228, 229, 276)
RAW_ALIASES = {12: LINK_RAW, 14: LINK_RAW}
SUPPORTED_LINKTYPES = {LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6,
                       LINK_SLL2}
LINK_NAMES = {LINK_NULL: "BSD loopback", LINK_ETHERNET: "Ethernet", LINK_RAW: "raw IP",
              LINK_SLL: "Linux cooked (SLL)", LINK_IPV4: "raw IPv4", LINK_IPV6: "raw IPv6",
              LINK_SLL2: "Linux cooked v2 (SLL2)"}

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
IPV6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options: skipped to reach L4


def l3(linktype: int, buf: bytes) -> tuple[int, int]:
    """(IP version 4/6 or 0 for anything else, offset of the IP header)."""
    if linktype == LINK_ETHERNET:
        if len(buf) < 14:
            return 0, 0
        et = (buf[12] << 8) | buf[13]
        off = 14
        while et in (ETH_VLAN, ETH_QINQ) and len(buf) >= off + 4:
            et = (buf[off + 2] << 8) | buf[off + 3]
            off += 4
    elif linktype == LINK_SLL:
        if len(buf) < 16:
            return 0, 0
        et, off = (buf[14] << 8) | buf[15], 16
    elif linktype == LINK_SLL2:
        if len(buf) < 20:
            return 0, 0
        et, off = (buf[0] << 8) | buf[1], 20
    elif linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        if not buf:
            return 0, 0
        v = buf[0] >> 4
        return (v if v in (4, 6) else 0), 0
    elif linktype == LINK_NULL:
        if len(buf) < 4:
            return 0, 0
        fam = int.from_bytes(buf[:4], "little")
        if fam > 0xFFFF:
            fam = int.from_bytes(buf[:4], "big")
        return (4 if fam == 2 else 6 if fam in (24, 28, 30) else 0), 4
    else:
        return 0, 0
    if et == ETH_IPV4:
        return 4, off
    if et == ETH_IPV6:
        return 6, off
    return 0, off


def reframe(src: int, dst: int, buf: bytes) -> bytes:
    """A `src` link-type frame re-written with a `dst` link header, payload untouched.

    For pcapng files whose interfaces have different link types: every frame is decoded as
    the file's one link type.  Frames of an unsupported link type, and non-IP frames going
    to raw IP (which has no way to say "not IP"), become empty frames: counted, not decoded.
    """
    if src not in SUPPORTED_LINKTYPES:
        return b""
    ver, off = l3(src, buf)
    if ver:
        et = ETH_IPV4 if ver == 4 else ETH_IPV6
    elif src == LINK_SLL2 and len(buf) >= 20:
        et = (buf[0] << 8) | buf[1]
    elif src in (LINK_ETHERNET, LINK_SLL) and 2 <= off <= len(buf):
        et = (buf[off - 2] << 8) | buf[off - 1]
    else:
        et = 0
    e = et.to_bytes(2, "big")
    if dst == LINK_ETHERNET:
        head = bytes(12) + e
    elif dst == LINK_SLL:
        head = bytes(14) + e
    elif dst == LINK_SLL2:
        head = e + bytes(18)
    elif dst == LINK_NULL:
        head = (2 if ver == 4 else 24 if ver == 6 else 0).to_bytes(4, "little")
    else:  # raw IP
        return buf[off:] if ver else b""
    return head + buf[off:]


def ip_str(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


PROTO_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 58: "icmpv6",
               89: "ospf", 132: "sctp"}


def proto_name(p: int) -> str:
    return PROTO_NAMES.get(p, str(p))
