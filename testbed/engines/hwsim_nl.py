"""mac80211_hwsim radios created and deleted at run time over generic netlink.

Loading the module with `radios=N` fixes the radio count at load time and names them phy0..;
a testbed wants one radio per emulated node, named after it, added and removed while a run
goes on.  hwsim offers that through its generic netlink family "MAC80211_HWSIM"
(HWSIM_CMD_NEW_RADIO / HWSIM_CMD_DEL_RADIO, as wmediumd's and Mininet-WiFi's hwsim_mgmt use),
spoken here with the standard library only (socket + struct), so no libnl/pyroute2 is needed.

Command and attribute numbers are those of the kernel's drivers/net/wireless/mac80211_hwsim.h
(Linux 6.1; the enums only ever grew at the end).  Kernel behaviour this code relies on,
checked on Debian's 6.1 kernel (testbed.vm):

- the new radio's index comes back as the positive `error` of the NLMSG_ERROR ack;
- the requested name becomes the wiphy name, but cfg80211 silently falls back to "phyN" when
  the name is taken (by a wiphy in any netns): `new_radio` detects that and undoes it;
- HWSIM_CMD_DEL_RADIO only finds radios whose wiphy is in the caller's netns (it answers
  ENODEV otherwise): a radio moved into a namespace is deleted by passing `netns=` (the
  netlink socket is then opened in that namespace), or after the namespace is deleted, which
  returns the wiphy to the initial namespace;
- `radios=0` still creates the `hwsim0` monitor interface that sees every frame.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

# --- netlink / generic netlink constants (linux/netlink.h, linux/genetlink.h) --------------
NETLINK_GENERIC = 16  # not exported by Python's socket module
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

# --- drivers/net/wireless/mac80211_hwsim.h (Linux 6.1) --------------------------------------
HWSIM_FAMILY = "MAC80211_HWSIM"
HWSIM_GENL_VERSION = 1
HWSIM_CMD_NEW_RADIO = 4
HWSIM_CMD_DEL_RADIO = 5
HWSIM_ATTR_CHANNELS = 9
HWSIM_ATTR_RADIO_ID = 10
HWSIM_ATTR_RADIO_NAME = 17

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
GENLMSGHDR = struct.Struct("=BBH")  # cmd, version, reserved
NLATTR = struct.Struct("=HH")  # len, type
MAX_NAME = 64  # NL80211_WIPHY_NAME_MAXLEN
CLONE_NEWNET = 0x40000000

SYS_IEEE80211 = Path("/sys/class/ieee80211")
SYS_HWSIM = Path("/sys/devices/virtual/mac80211_hwsim")
LOAD_HINT = "mac80211_hwsim is not loaded (modprobe mac80211_hwsim radios=0)"

_seq = itertools.count(int.from_bytes(os.urandom(2), "little") + 1)


class HwsimError(RuntimeError):
    """A radio operation the kernel refused, or hwsim missing; the message names the fix."""


# --- encoding (pure) ------------------------------------------------------------------------

def align4(n: int) -> int:
    """Netlink pads every attribute and message to 4 bytes."""
    return (n + 3) & ~3


def nla(attr_type: int, payload: bytes) -> bytes:
    """One attribute: its length counts the header and payload, not the padding."""
    head = NLATTR.pack(NLATTR.size + len(payload), attr_type)
    return head + payload + b"\0" * (align4(len(payload)) - len(payload))


def nla_str(attr_type: int, value: str) -> bytes:
    """NLA_STRING, NUL-terminated as libnl's nla_put_string sends it."""
    return nla(attr_type, value.encode() + b"\0")


def nla_u32(attr_type: int, value: int) -> bytes:
    return nla(attr_type, struct.pack("=I", value))


def genl_msg(family: int, cmd: int, attrs: bytes, seq: int, version: int = 1,
             flags: int = NLM_F_REQUEST | NLM_F_ACK) -> bytes:
    """nlmsghdr + genlmsghdr + attributes; the kernel fills in our port id (pid 0)."""
    body = GENLMSGHDR.pack(cmd, version, 0) + attrs
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), family, flags, seq, 0) + body


def parse_attrs(buf: bytes) -> dict[int, bytes]:
    """Top-level attributes of a genl payload (after the genlmsghdr), type -> payload."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + NLATTR.size <= len(buf):
        length, attr_type = NLATTR.unpack_from(buf, pos)
        if length < NLATTR.size or pos + length > len(buf):
            break
        out[attr_type & 0x3FFF] = buf[pos + NLATTR.size:pos + length]  # strip NESTED/BYTEORDER
        pos += align4(length)
    return out


def parse_msgs(buf: bytes) -> list[tuple[int, int, int, bytes]]:
    """Netlink messages in one datagram as (type, flags, seq, payload)."""
    out = []
    pos = 0
    while pos + NLMSGHDR.size <= len(buf):
        length, msg_type, flags, seq, _pid = NLMSGHDR.unpack_from(buf, pos)
        if length < NLMSGHDR.size or pos + length > len(buf):
            break
        out.append((msg_type, flags, seq, buf[pos + NLMSGHDR.size:pos + length]))
        pos += align4(length)
    return out


# --- transport ------------------------------------------------------------------------------

def _open(netns: str | None) -> socket.socket:
    """A NETLINK_GENERIC socket, in `netns` (a name under /run/netns) when given.

    A socket belongs to the netns of the thread that created it, so for another namespace a
    short-lived thread enters it (setns is per thread; Python 3.11 has no os.setns) and
    creates the socket there; this process itself never changes namespace.
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    result: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise HwsimError(f"setns into netns {netns!r}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                        NETLINK_GENERIC))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result.append(exc)

    t = threading.Thread(target=enter, name=f"netns-{netns}")
    t.start()
    t.join()
    if isinstance(result[0], BaseException):
        if isinstance(result[0], FileNotFoundError):
            raise HwsimError(f"no network namespace {netns!r} (/run/netns/{netns})")
        raise result[0]
    return result[0]


def request(family: int, cmd: int, attrs: bytes, *, version: int = 1,
            netns: str | None = None, timeout_s: float = 5.0) -> tuple[int, list[bytes]]:
    """Send one request with NLM_F_ACK; return (ack error field, reply payloads before it).

    The error field is 0 for success, -errno on failure, and for HWSIM_CMD_NEW_RADIO the new
    radio's index.  Messages for other sequence numbers are ignored.
    """
    seq = next(_seq) & 0xFFFFFFFF
    with _open(netns) as sock:
        sock.settimeout(timeout_s)
        sock.bind((0, 0))
        sock.sendto(genl_msg(family, cmd, attrs, seq, version), (0, 0))
        replies: list[bytes] = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError as exc:
                raise HwsimError(f"no netlink ack within {timeout_s} s (cmd {cmd})") from exc
            for msg_type, _flags, msg_seq, payload in parse_msgs(data):
                if msg_seq != seq:
                    continue
                if msg_type == NLMSG_ERROR:
                    return struct.unpack_from("=i", payload)[0], replies
                if msg_type == NLMSG_DONE:
                    return 0, replies
                replies.append(payload)


# --- public API ---------------------------------------------------------------------------

def family_id(netns: str | None = None) -> int:
    """The numeric id of the MAC80211_HWSIM genl family (assigned at module load)."""
    err, replies = request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                           nla_str(CTRL_ATTR_FAMILY_NAME, HWSIM_FAMILY), version=1,
                           netns=netns)
    if err == -errno.ENOENT:
        raise HwsimError(LOAD_HINT)
    if err < 0:
        raise HwsimError(f"resolving genl family {HWSIM_FAMILY}: {os.strerror(-err)}")
    for payload in replies:
        attrs = parse_attrs(payload[GENLMSGHDR.size:])
        if CTRL_ATTR_FAMILY_ID in attrs:
            return struct.unpack("=H", attrs[CTRL_ATTR_FAMILY_ID][:2])[0]
    raise HwsimError(f"genl controller answered without a family id for {HWSIM_FAMILY}")


def ensure_module() -> None:
    """Load mac80211_hwsim without default radios unless it is loaded already (then its
    load-time radios, if any, are left alone)."""
    if Path("/sys/module/mac80211_hwsim").exists():
        return
    try:
        res = subprocess.run(["modprobe", "mac80211_hwsim", "radios=0"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HwsimError(f"modprobe mac80211_hwsim radios=0 could not run: {exc}") from exc
    if res.returncode != 0:
        raise HwsimError("modprobe mac80211_hwsim radios=0 failed (needs root and a kernel "
                         "built with CONFIG_MAC80211_HWSIM=m, e.g. a distribution kernel): "
                         + (res.stderr.strip() or f"exit {res.returncode}"))


def check_name(name: str) -> None:
    """Refuse names cfg80211 would replace by phyN or sysfs cannot hold."""
    if not name or len(name) > MAX_NAME or "/" in name or any(c.isspace() for c in name) \
            or name in (".", ".."):
        raise HwsimError(f"bad radio name {name!r}: 1-{MAX_NAME} characters, no '/' or spaces")


def radio_name(index: int) -> str | None:
    """The wiphy name of hwsim radio `index`, while its wiphy is in this netns's sysfs."""
    try:
        return next(p.name for p in (SYS_HWSIM / f"hwsim{index}" / "ieee80211").iterdir())
    except (OSError, StopIteration):
        return None


def new_radio(name: str, channels: int = 1, netns: str | None = None) -> int:
    """Create a radio whose wiphy is called `name`, with one wlanN interface; return its index.

    The radio lives in the caller's netns (or `netns`).  A name already used by any wiphy
    raises HwsimError (the kernel would have called the radio phyN; it is deleted again).
    """
    check_name(name)
    fam = family_id(netns)
    attrs = nla_str(HWSIM_ATTR_RADIO_NAME, name) + nla_u32(HWSIM_ATTR_CHANNELS, channels)
    err, _ = request(fam, HWSIM_CMD_NEW_RADIO, attrs, version=HWSIM_GENL_VERSION, netns=netns)
    if err < 0:
        raise HwsimError(f"creating hwsim radio {name!r}: {os.strerror(-err)}")
    if netns is None:
        actual = radio_name(err)
        if actual is not None and actual != name:
            del_radio_index(err)
            raise HwsimError(f"hwsim radio name {name!r} is taken (by a wiphy in some netns): "
                             f"the kernel named the new radio {actual!r}; deleted it again")
    return err


def _delete(attr: bytes, what: str, netns: str | None) -> bool:
    err, _ = request(family_id(netns), HWSIM_CMD_DEL_RADIO, attr,
                     version=HWSIM_GENL_VERSION, netns=netns)
    if err in (-errno.ENODEV, -errno.ENOENT):
        return False
    if err < 0:
        raise HwsimError(f"deleting hwsim radio {what}: {os.strerror(-err)}")
    return True


def del_radio(name: str, netns: str | None = None) -> bool:
    """Delete the radio whose wiphy is `name`: True when deleted, False when none by that name
    is in the caller's netns (or `netns`; a radio moved into a namespace is only found there).
    """
    return _delete(nla_str(HWSIM_ATTR_RADIO_NAME, name), repr(name), netns)


def del_radio_index(index: int, netns: str | None = None) -> bool:
    """Delete radio `index` (new_radio's return value); same netns rule as del_radio."""
    return _delete(nla_u32(HWSIM_ATTR_RADIO_ID, index), f"#{index}", netns)


def radio_netdevs(name: str) -> list[str]:
    """Network interfaces of wiphy `name` (netdevs hang under the hwsimN device in sysfs);
    [] when the wiphy is not in this netns's sysfs view."""
    net = SYS_IEEE80211 / name / "device" / "net"
    try:
        return sorted(p.name for p in net.iterdir())
    except OSError:
        return []


def list_radios(prefix: str = "") -> list[str]:
    """Wiphy names starting with `prefix` in this sysfs view (the netns sysfs was mounted in,
    so a process that only entered another netns still sees its own)."""
    try:
        return sorted(p.name for p in SYS_IEEE80211.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def del_radio_quietly(name: str) -> bool:
    """Teardown's form: True when deleted, False when gone or undeletable (never raises)."""
    try:
        return del_radio(name)
    except (HwsimError, OSError):
        return False
