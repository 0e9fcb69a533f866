"""802.11 events from a synthetic hwsim0-style radiotap capture: a station associates with AP1,
sends data (some retransmitted), then roams to AP2; plus frames that must not confuse it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import dpkt
import pytest

from testbed.analysis import wlan

pytestmark = pytest.mark.unit

STA = bytes.fromhex("020000000000")
STA2 = bytes.fromhex("020000000300")
AP1 = bytes.fromhex("020000000100")
AP2 = bytes.fromhex("020000000200")
IBSS = bytes.fromhex("4a1b2c3d4e5f")
PEER = bytes.fromhex("020000000400")
BCAST = b"\xff" * 6


def m(b: bytes) -> str:
    return wlan.mac(b)


def radiotap(flags: int = 0, tsft: bool = False) -> bytes:
    """hwsim's header (flags, rate, channel); with TSFT first to exercise field alignment."""
    present = (1 << 1) | (1 << 2) | (1 << 3) | (1 if tsft else 0)
    fields = (struct.pack("<Q", 123456) if tsft else b"") + struct.pack(
        "<BBHH", flags, 12, 2412, 0x00A0)
    return struct.pack("<BBHI", 0, 0, 8 + len(fields), present) + fields


def hdr(subtype: int, ftype: int, a1: bytes, a2: bytes, a3: bytes, seq: int, fc1: int = 0,
        ) -> bytes:
    fc0 = (subtype << 4) | (ftype << 2)
    return bytes([fc0, fc1]) + b"\x3a\x01" + a1 + a2 + a3 + struct.pack("<H", seq << 4)


def mgmt(subtype: int, dst: bytes, src: bytes, bssid: bytes, body: bytes, seq: int,
         retry: bool = False) -> bytes:
    return hdr(subtype, 0, dst, src, bssid, seq, 0x08 if retry else 0) + body


def beacon(bssid: bytes, ssid: bytes, seq: int, cap: int = 0x0401) -> bytes:
    body = struct.pack("<QHH", seq * 102400, 100, cap) + bytes([0, len(ssid)]) + ssid \
        + b"\x01\x04\x82\x84\x8b\x96"
    return mgmt(8, BCAST, bssid, bssid, body, seq)


def auth(dst: bytes, src: bytes, bssid: bytes, auth_seq: int, seq: int) -> bytes:
    return mgmt(11, dst, src, bssid, struct.pack("<HHH", 0, auth_seq, 0), seq)


def assoc_resp(subtype: int, sta: bytes, ap: bytes, status: int, seq: int,
               retry: bool = False) -> bytes:
    return mgmt(subtype, sta, ap, ap, struct.pack("<HHH", 0x0401, status, 0xC001), seq, retry)


def data(ta: bytes, ra: bytes, to_ds: bool, seq: int, retry: bool, qos: bool = False) -> bytes:
    fc1 = (0x01 if to_ds else 0x02) | (0x08 if retry else 0)
    a3 = STA if not to_ds else AP1  # SA / DA; not read
    frame = hdr(8 if qos else 0, 2, ra, ta, a3, seq, fc1)
    return frame + (b"\x00\x00" if qos else b"") + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + bytes(28)


def scenario() -> list[tuple[float, bytes]]:
    rt = radiotap()
    out: list[tuple[float, bytes]] = []
    for i in range(5):
        out.append((0.1 * i, rt + beacon(AP1, b"sagin", i)))
    for i in range(3):
        out.append((0.05 + 0.1 * i, radiotap(tsft=True) + beacon(AP2, b"sagin", i)))
    out.append((0.07, rt + beacon(IBSS, b"adhoc", 0, cap=0x0002)))
    # association with AP1
    out += [
        (1.000, rt + auth(AP1, STA, AP1, 1, 10)),
        (1.001, rt + auth(STA, AP1, AP1, 2, 20)),
        (1.002, rt + mgmt(0, AP1, STA, AP1, struct.pack("<HH", 0x0401, 10) + b"\0\x05sagin", 11)),
        (1.003, rt + assoc_resp(1, STA, AP1, 0, 21)),
        (1.0035, rt + assoc_resp(1, STA, AP1, 0, 21, retry=True)),  # same frame, resent
    ]
    # data: 10 up (3 retries), 5 QoS down (1 retry)
    t = 1.5
    for i in range(10):
        out.append((t, rt + data(STA, AP1, True, 100 + i, retry=i in (2, 5, 6))))
        t += 0.01
    for i in range(5):
        out.append((t, rt + data(AP1, STA, False, 200 + i, retry=i == 4, qos=True)))
        t += 0.01
    # frames dpkt.ieee80211 would reject: an action frame (radio measurement), a PS-Poll
    out.append((1.8, rt + mgmt(13, AP1, STA, AP1, b"\x05\x00\x01", 12)))
    out.append((1.81, rt + bytes([0xA4, 0x10]) + b"\x01\xc0" + AP1 + STA))
    # another station is refused by AP2: status 17 (AP cannot handle more stations)
    out.append((2.0, rt + mgmt(0, AP2, STA2, AP2, struct.pack("<HH", 0x0401, 10), 1)))
    out.append((2.001, rt + assoc_resp(1, STA2, AP2, 17, 30)))
    # roam to AP2: auth, reassociation request naming AP1, response (with FCS appended)
    out += [
        (3.000, rt + auth(AP2, STA, AP2, 1, 13)),
        (3.001, rt + auth(STA, AP2, AP2, 2, 31)),
        (3.002, rt + mgmt(2, AP2, STA, AP2, struct.pack("<HH", 0x0401, 10) + AP1, 14)),
        (3.004, radiotap(flags=0x10) + assoc_resp(3, STA, AP2, 0, 32) + b"\x12\x34\x56\x78"),
        (4.0, rt + mgmt(12, STA, AP2, AP2, struct.pack("<H", 3), 33)),
    ]
    # broken frames: a cut-off authentication, a radiotap length beyond the record, bad FCS
    out.append((4.1, rt + auth(AP2, STA, AP2, 1, 15)[:20]))
    out.append((4.2, struct.pack("<BBHI", 0, 0, 60, 0) + b"\0" * 8))
    out.append((4.3, radiotap(flags=0x50) + auth(AP2, STA, AP2, 1, 16) + b"\0" * 4))
    return out


def write_pcap(path: Path, frames: list[tuple[float, bytes]], linktype: int = 127) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        for ts, buf in sorted(frames, key=lambda x: x[0]):
            w.writepkt(buf, ts=1_700_000_000 + ts)
    return path


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return write_pcap(tmp_path / "hwsim0.pcap", scenario())


T0 = 1_700_000_000


def test_management_events_in_order(capture: Path) -> None:
    rep = wlan.analyse_pcap(capture)
    kinds = [(e.type, e.src, e.dst, e.bssid) for e in rep.events]
    assert kinds == [
        ("auth", m(STA), m(AP1), m(AP1)), ("auth", m(AP1), m(STA), m(AP1)),
        ("assoc_req", m(STA), m(AP1), m(AP1)), ("assoc_resp", m(AP1), m(STA), m(AP1)),
        ("assoc_resp", m(AP1), m(STA), m(AP1)),
        ("assoc_req", m(STA2), m(AP2), m(AP2)), ("assoc_resp", m(AP2), m(STA2), m(AP2)),
        ("auth", m(STA), m(AP2), m(AP2)), ("auth", m(AP2), m(STA), m(AP2)),
        ("reassoc_req", m(STA), m(AP2), m(AP2)), ("reassoc_resp", m(AP2), m(STA), m(AP2)),
        ("deauth", m(AP2), m(STA), m(AP2)),
    ]
    times = [e.time for e in rep.events]
    assert times == sorted(times) and times[0] == pytest.approx(T0 + 1.0)
    ev = rep.events
    assert (ev[0].auth_seq, ev[1].auth_seq, ev[1].status) == (1, 2, 0)
    assert ev[3].status == 0 and not ev[3].retry and ev[4].retry
    assert ev[6].status == 17  # little-endian, unlike dpkt.ieee80211's 4352
    assert ev[-1].reason == 3


def test_associations_and_roam(capture: Path) -> None:
    rep = wlan.analyse_pcap(capture)
    assert set(rep.stations) == {m(STA)}  # STA2 was refused
    sta = rep.stations[m(STA)]
    # the retransmitted response does not count twice
    assert [(round(t - T0, 4), b) for t, b in sta.associations] == [
        (1.003, m(AP1)), (3.004, m(AP2))]
    (roam,) = sta.roams
    assert (roam.from_bssid, roam.to_bssid) == (m(AP1), m(AP2))
    assert roam.time - T0 == pytest.approx(3.004)
    assert roam.start - T0 == pytest.approx(3.000)
    assert roam.roam_time_s == pytest.approx(0.004, abs=1e-6)


def test_data_retries(capture: Path) -> None:
    rep = wlan.analyse_pcap(capture)
    up = rep.data[(m(STA), m(AP1))]
    down = rep.data[(m(AP1), m(STA))]
    assert (up.frames, up.retries) == (10, 3)
    assert (down.frames, down.retries) == (5, 1)
    assert up.retry_ratio == pytest.approx(0.3)
    assert (rep.data_frames, rep.data_retries) == (15, 4)
    assert rep.retry_ratio == pytest.approx(4 / 15)


def test_beacons_malformed_and_counts(capture: Path) -> None:
    rep = wlan.analyse_pcap(capture)
    assert {b: (c.count, c.ssid, c.mode) for b, c in rep.beacons.items()} == {
        m(AP1): (5, "sagin", "ess"), m(AP2): (3, "sagin", "ess"), m(IBSS): (1, "adhoc", "ibss")}
    assert rep.malformed == 2  # the cut-off auth and the overlong radiotap length
    assert rep.bad_fcs == 1
    assert rep.control_frames == 1  # the PS-Poll: neither malformed nor an error
    assert rep.frames == len(scenario())
    assert rep.error is None


def test_to_dict_and_cli(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = wlan.analyse_pcap(capture).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert wlan.main([str(capture)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == d
    roam = out["stations"][m(STA)]["roams"][0]
    assert roam["roam_time_s"] == pytest.approx(0.004)
    assert out["data"]["retries"] == 4 and out["beacons"][m(AP1)]["count"] == 5
    link = next(x for x in out["data"]["links"] if x["transmitter"] == m(STA))
    assert (link["receiver"], link["retry_ratio"]) == (m(AP1), 0.3)


def test_truncated_file_keeps_what_was_read(capture: Path, tmp_path: Path) -> None:
    first = min(scenario(), key=lambda x: x[0])[1]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(capture.read_bytes()[:24 + 16 + len(first) + 8])  # in the 2nd record header
    rep = wlan.analyse_pcap(cut)
    assert rep.frames == 1 and rep.beacons[m(AP1)].count == 1  # what came before is kept
    assert rep.error is not None and "truncated record after 1 frames" in rep.error


def test_wrong_link_type_and_not_a_pcap(tmp_path: Path) -> None:
    eth = write_pcap(tmp_path / "eth.pcap", [(0.0, bytes(60))], linktype=1)
    with pytest.raises(wlan.WlanCaptureError, match="link type 1"):
        wlan.analyse_pcap(eth)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello world, not a capture")
    with pytest.raises(wlan.WlanCaptureError, match="not a pcap"):
        wlan.analyse_pcap(junk)
    assert wlan.main([str(junk)]) == 2
