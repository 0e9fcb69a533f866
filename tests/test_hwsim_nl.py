"""mac80211_hwsim over generic netlink: the message encoding (pure) and, where the kernel has
hwsim (inside testbed.vm here), real radios created, seen by iw, moved and deleted."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from testbed.engines import hwsim_nl as h

# --- encoding ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_attribute_padding_and_lengths() -> None:
    # the length field counts header + payload (NUL included), the padding follows it
    assert h.nla_str(h.HWSIM_ATTR_RADIO_NAME, "ab") == b"\x07\x00\x11\x00ab\x00\x00"
    assert h.nla_str(h.HWSIM_ATTR_RADIO_NAME, "abc") == b"\x08\x00\x11\x00abc\x00"
    assert h.nla_u32(h.HWSIM_ATTR_CHANNELS, 2) == struct.pack("=HHI", 8, 9, 2)
    assert h.nla(1, b"") == b"\x04\x00\x01\x00"
    for n in range(9):
        assert len(h.nla(1, b"x" * n)) % 4 == 0


@pytest.mark.unit
def test_genl_message_layout() -> None:
    attrs = h.nla_str(h.HWSIM_ATTR_RADIO_NAME, "r0") + h.nla_u32(h.HWSIM_ATTR_CHANNELS, 1)
    msg = h.genl_msg(0x21, h.HWSIM_CMD_NEW_RADIO, attrs, seq=77)
    length, family, flags, seq, pid = h.NLMSGHDR.unpack_from(msg)
    assert (length, family, seq, pid) == (len(msg), 0x21, 77, 0)
    assert flags == h.NLM_F_REQUEST | h.NLM_F_ACK == 5
    assert h.GENLMSGHDR.unpack_from(msg, 16) == (4, 1, 0)
    assert h.parse_attrs(msg[20:]) == {17: b"r0\0", 9: struct.pack("=I", 1)}


@pytest.mark.unit
def test_numbers_match_mac80211_hwsim_h() -> None:
    # drivers/net/wireless/mac80211_hwsim.h, Linux 6.1 (also checked against the VM's kernel)
    assert (h.HWSIM_CMD_NEW_RADIO, h.HWSIM_CMD_DEL_RADIO) == (4, 5)
    assert (h.HWSIM_ATTR_CHANNELS, h.HWSIM_ATTR_RADIO_ID, h.HWSIM_ATTR_RADIO_NAME) == (9, 10, 17)
    assert (h.GENL_ID_CTRL, h.CTRL_CMD_GETFAMILY, h.CTRL_ATTR_FAMILY_NAME) == (16, 3, 2)


@pytest.mark.unit
def test_parse_stops_at_bad_lengths() -> None:
    good = h.nla_u32(1, 5)
    assert h.parse_attrs(good + b"\x40\x00\x02\x00") == {1: struct.pack("=I", 5)}
    assert h.parse_msgs(b"\x08\x00\x00\x00") == []


def ack(seq: int, error: int) -> bytes:
    """NLMSG_ERROR as the kernel sends it: error field + the request's header."""
    body = struct.pack("=i", error) + h.NLMSGHDR.pack(20, 0, 0, seq, 0)
    return h.NLMSGHDR.pack(16 + len(body), h.NLMSG_ERROR, 0, seq, 1234) + body


def family_reply(seq: int, fam: int) -> bytes:
    attrs = h.nla_str(h.CTRL_ATTR_FAMILY_NAME, h.HWSIM_FAMILY) + h.nla(
        h.CTRL_ATTR_FAMILY_ID, struct.pack("=H", fam))
    body = h.GENLMSGHDR.pack(1, 2, 0) + attrs
    return h.NLMSGHDR.pack(16 + len(body), h.GENL_ID_CTRL, 0, seq, 1234) + body


class FakeKernel:
    """Stands in for the netlink socket: answers each request by its command."""

    def __init__(self, answers: dict[int, int], fam: int = 0x22):
        self.answers, self.fam = answers, fam
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []

    def __enter__(self) -> FakeKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def settimeout(self, t: float) -> None:
        pass

    def bind(self, addr: tuple[int, int]) -> None:
        pass

    def sendto(self, msg: bytes, addr: tuple[int, int]) -> None:
        self.sent.append(msg)
        _len, family, _flags, seq, _pid = h.NLMSGHDR.unpack_from(msg)
        cmd = msg[16]
        stray = ack(seq + 1000, -errno.EINVAL)  # someone else's answer: must be skipped
        if family == h.GENL_ID_CTRL:
            err = self.answers.get(-1, 0)
            reply = family_reply(seq, self.fam) if err == 0 else b""
            self.pending = [stray + reply + ack(seq, err)]
        else:
            self.pending = [stray, ack(seq, self.answers[cmd])]

    def recv(self, n: int) -> bytes:
        return self.pending.pop(0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    kernel = FakeKernel({h.HWSIM_CMD_NEW_RADIO: 7, h.HWSIM_CMD_DEL_RADIO: 0})
    monkeypatch.setattr(h, "_open", lambda netns: kernel)
    monkeypatch.setattr(h, "radio_name", lambda index: None)
    return kernel


@pytest.mark.unit
def test_new_radio_returns_the_index_from_the_ack(fake: FakeKernel) -> None:
    assert h.family_id() == 0x22
    assert h.new_radio("sgr0", channels=2) == 7
    msg = fake.sent[-1]
    assert h.NLMSGHDR.unpack_from(msg)[1] == 0x22
    assert h.parse_attrs(msg[20:]) == {17: b"sgr0\0", 9: struct.pack("=I", 2)}


@pytest.mark.unit
def test_errors_map_to_hwsim_error(fake: FakeKernel) -> None:
    fake.answers[h.HWSIM_CMD_NEW_RADIO] = -errno.ENOMEM
    with pytest.raises(h.HwsimError, match=os.strerror(errno.ENOMEM)):
        h.new_radio("sgr0")
    assert h.del_radio("sgr0") is True
    fake.answers[h.HWSIM_CMD_DEL_RADIO] = -errno.ENODEV
    assert h.del_radio("sgr0") is False
    fake.answers[h.HWSIM_CMD_DEL_RADIO] = -errno.EPERM
    with pytest.raises(h.HwsimError, match="Operation not permitted"):
        h.del_radio("sgr0")
    fake.answers[-1] = -errno.ENOENT
    with pytest.raises(h.HwsimError, match=r"modprobe mac80211_hwsim radios=0"):
        h.family_id()


@pytest.mark.unit
def test_bad_names_are_refused() -> None:
    for bad in ("", "a b", "a/b", "x" * 65, ".."):
        with pytest.raises(h.HwsimError, match="bad radio name"):
            h.check_name(bad)
    h.check_name("sg-node_1")


@pytest.mark.unit
def test_sysfs_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "devices/virtual/mac80211_hwsim/hwsim4"
    (dev / "net/wlan4").mkdir(parents=True)
    (dev / "ieee80211/sgr4").mkdir(parents=True)
    cls = tmp_path / "class/ieee80211"
    cls.mkdir(parents=True)
    (cls / "sgr4").symlink_to(dev / "ieee80211/sgr4")
    (dev / "ieee80211/sgr4/device").symlink_to(dev)
    (cls / "phy9").mkdir()
    monkeypatch.setattr(h, "SYS_IEEE80211", cls)
    monkeypatch.setattr(h, "SYS_HWSIM", tmp_path / "devices/virtual/mac80211_hwsim")
    assert h.list_radios("sg") == ["sgr4"]
    assert h.list_radios() == ["phy9", "sgr4"]
    assert h.radio_netdevs("sgr4") == ["wlan4"]
    assert h.radio_netdevs("nope") == []
    assert h.radio_name(4) == "sgr4"
    assert h.radio_name(5) is None


# --- the kernel -------------------------------------------------------------------------------


def _hwsim_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("creating hwsim radios needs root")
    try:
        h.ensure_module()
    except h.HwsimError as exc:
        pytest.skip(f"no mac80211_hwsim here: {exc}")
    if shutil.which("iw") is None:
        pytest.skip("iw is not installed")


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.kernel
def test_radios_are_created_seen_by_iw_and_deleted() -> None:
    _hwsim_or_skip()
    prefix = f"sgkt{uuid.uuid4().hex[:4]}r"
    names = [f"{prefix}{i}" for i in range(2)]
    try:
        indexes = [h.new_radio(n) for n in names]
        assert len(set(indexes)) == 2 and all(i >= 0 for i in indexes)
        assert h.list_radios(prefix) == names
        netdevs = [h.radio_netdevs(n) for n in names]
        assert all(len(d) == 1 for d in netdevs), netdevs
        phys, devs = _sh("iw", "phy"), _sh("iw", "dev")
        for name, (dev,) in zip(names, netdevs, strict=True):
            assert f"Wiphy {name}\n" in phys
            assert f"Interface {dev}\n" in devs
        with pytest.raises(h.HwsimError, match="is taken"):
            h.new_radio(names[0])
    finally:
        deleted = [h.del_radio(n) for n in names]
    assert deleted == [True, True]
    assert h.list_radios(prefix) == []
    phys, devs = _sh("iw", "phy"), _sh("iw", "dev")
    for name, (dev,) in zip(names, netdevs, strict=True):
        assert f"Wiphy {name}\n" not in phys
        assert f"Interface {dev}\n" not in devs
    assert h.del_radio(names[0]) is False


@pytest.mark.kernel
def test_a_radio_moved_into_a_netns_is_deleted_from_there() -> None:
    """The kernel matches DEL_RADIO only against wiphys in the caller's netns."""
    _hwsim_or_skip()
    ns = f"sgkt{uuid.uuid4().hex[:6]}"
    name = f"{ns}r"
    _sh("ip", "netns", "add", ns)
    try:
        h.new_radio(name)
        _sh("iw", "phy", name, "set", "netns", "name", ns)
        assert h.list_radios(name) == []  # gone from this netns's sysfs view
        assert f"Wiphy {name}\n" in _sh("ip", "netns", "exec", ns, "iw", "phy")
        assert h.del_radio(name) is False  # ENODEV from the initial netns
        assert h.del_radio(name, netns=ns) is True
        assert f"Wiphy {name}\n" not in _sh("ip", "netns", "exec", ns, "iw", "phy")
    finally:
        h.del_radio(name, netns=ns)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        h.del_radio(name)
