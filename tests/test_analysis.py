"""Packet-trace analysis on synthetic captures with known answers (and tshark's where present)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from testbed.analysis import synth
from testbed.analysis.delay import one_way_delay
from testbed.analysis.flows import analyze_capture
from testbed.analysis.mavlink import MavlinkStats
from testbed.analysis.parallel import capture_job, combine, part_job, plan
from testbed.analysis.reader import Capture, CaptureError
from testbed.analysis.run import analyze_pcap, analyze_run

pytestmark = pytest.mark.unit


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    p = tmp_path / "mixed.pcap"
    synth.write_pcap(p, synth.mixed_traffic())
    return p


def _flow(res: dict, label: str) -> dict:
    return next(f for f in res["flows"] if f["flow"] == label)


def test_flow_statistics(mixed: Path) -> None:
    res = analyze_capture(Capture(mixed))
    assert res["error"] is None
    assert res["packets"] == len(synth.mixed_traffic())
    data = _flow(res, "tcp 10.0.0.1:40000 > 10.0.0.2:80")
    assert data["packets"] == 53 and data["retransmissions"] == 1
    # 49 data segments + the SYN give samples; the retransmitted one does not (Karn)
    assert data["rtt"]["n"] == 50 and data["rtt"]["median_ms"] == pytest.approx(10, abs=0.01)
    ping = _flow(res, "icmp 10.0.0.1 > 10.0.0.9 id=77")["echo"]
    assert (ping["requests"], ping["replies"], ping["loss_pct"]) == (10, 9, 10.0)
    assert ping["rtt"]["median_ms"] == pytest.approx(30, abs=0.01)
    assert res["protocols"]["udp"]["packets"] == 100


UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
CONV = re.compile(r"\s*(\S+)\s+<->\s+(\S+)\s+(\d+)\s+(\d+) (\w+)\s+(\d+)\s+(\d+) (\w+)")


def _tshark_conv(path: Path) -> dict[tuple[str, str], tuple[int, float, int, float]]:
    """tshark 4.0 prints sizes humanised ("53 kB"): bytes come back with their unit applied."""
    out = subprocess.run(["tshark", "-q", "-n", "-z", "conv,ip", "-r", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    convs = {}
    for line in out.splitlines():
        m = CONV.match(line)
        if m:
            # columns: frames/bytes b->a ("<-") first, then a->b ("->")
            convs[(m.group(1), m.group(2))] = (
                int(m.group(3)), int(m.group(4)) * UNITS[m.group(5)],
                int(m.group(6)), int(m.group(7)) * UNITS[m.group(8)])
    return convs


def _close(ours: int, shown: float) -> bool:
    """tshark truncates to the unit it prints: ours must fall within one unit above."""
    unit = max((u for u in UNITS.values() if u <= max(shown, 1)), default=1)
    return shown <= ours < shown + unit if unit > 1 else ours == shown


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_conversations_match_tshark(mixed: Path, tmp_path: Path) -> None:
    big = tmp_path / "bulk.pcap"
    synth.bulk_file(big, 300_000, flows=8)
    for path in (mixed, big):
        ours = analyze_capture(Capture(path))
        theirs = _tshark_conv(path)
        assert theirs, "could not parse tshark output"
        mine = {}
        for c in ours["conversations"]:
            mine[(c["a"], c["b"])] = c
            mine[(c["b"], c["a"])] = c | {"frames_a_to_b": c["frames_b_to_a"],
                                          "bytes_a_to_b": c["bytes_b_to_a"],
                                          "frames_b_to_a": c["frames_a_to_b"],
                                          "bytes_b_to_a": c["bytes_a_to_b"]}
        assert len(theirs) == len(ours["conversations"])
        for (a, b), (f_in, b_in, f_out, b_out) in theirs.items():
            c = mine[(a, b)]
            assert (c["frames_b_to_a"], c["frames_a_to_b"]) == (f_in, f_out)
            assert _close(c["bytes_b_to_a"], b_in) and _close(c["bytes_a_to_b"], b_out)
        n = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e",
                            "frame.len"], capture_output=True, text=True, timeout=30,
                           check=True).stdout.split()
        assert ours["packets"] == len(n) and ours["bytes"] == sum(map(int, n))


def test_one_way_delay_known_shift(tmp_path: Path) -> None:
    pk = synth.mixed_traffic()
    a, b = tmp_path / "l--a.pcap", tmp_path / "l--b.pcap"
    synth.write_pcap(a, pk)
    kept = [(t + 0.020, f) for i, (t, f) in enumerate(pk) if i % 10 != 3]
    # a router in between: TTL decremented and checksum changed must not break matching
    routed = []
    for t, f in kept:
        e = dpkt.ethernet.Ethernet(f)
        e.data.ttl -= 1
        e.data.sum = 0
        routed.append((t, bytes(e)))
    synth.write_pcap(b, routed)
    res = one_way_delay(a, b)
    fwd = next(d for d in res["directions"] if d["from"] == "l--a")
    assert fwd["matched"] == len(kept) and fwd["lost"] == len(pk) - len(kept)
    assert fwd["delay"]["median_ms"] == pytest.approx(20, abs=0.01)
    assert fwd["delay"]["max_ms"] == pytest.approx(20, abs=0.01)


def test_one_way_delay_nat_robust(tmp_path: Path) -> None:
    pk = [(1.0 + i * 0.01, synth.udp("10.0.0.1", "10.0.0.2", 5000, 6000, bytes([i]) * 40,
                                     ip_id=i)) for i in range(50)]
    natted = [(t + 0.005, synth.udp("100.64.0.1", "10.0.0.2", 5000, 6000, bytes([i]) * 40,
                                    ip_id=i)) for i, (t, _) in enumerate(pk)]
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    synth.write_pcap(a, pk)
    synth.write_pcap(b, natted)
    assert one_way_delay(a, b)["directions"][0]["matched"] == 0
    fwd = one_way_delay(a, b, nat_robust=True)["directions"][0]
    assert fwd["matched"] == 50 and fwd["delay"]["median_ms"] == pytest.approx(5, abs=0.01)


def test_mavlink_decoding(tmp_path: Path) -> None:
    from pymavlink.dialects.v10 import common as v1
    from pymavlink.dialects.v20 import common as v2

    veh = v2.MAVLink(None, srcSystem=1, srcComponent=1)
    gcs = v2.MAVLink(None, srcSystem=255, srcComponent=190)
    old = v1.MAVLink(None, srcSystem=2, srcComponent=1)
    pk = []
    for i in range(10):  # 1 Hz heartbeats, one missing at t=5 (a 2 s gap)
        if i != 5:
            pk.append((100.0 + i, synth.udp("10.0.0.5", "10.0.0.1", 14580, 14540,
                                            veh.heartbeat_encode(2, 3, 0, 0, 4).pack(veh))))
        pk.append((100.0 + i + 0.5, synth.udp("10.0.0.6", "10.0.0.1", 14581, 14541,
                                              old.heartbeat_encode(2, 3, 0, 0, 4).pack(old))))
    cmd = gcs.command_long_encode(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0).pack(gcs)
    pk.append((103.2, synth.udp("10.0.0.1", "10.0.0.5", 40000, 9999, cmd)))  # not 1454x
    pk.append((103.245, synth.udp("10.0.0.5", "10.0.0.1", 14580, 14540,
                                  veh.command_ack_encode(400, 0).pack(veh))))
    pk.append((104.0, synth.udp("10.0.0.7", "10.0.0.1", 1, 2, b"\xfd" + b"\x00" * 30)))
    pk.sort()
    p = tmp_path / "mav.pcap"
    synth.write_pcap(p, pk)
    m = analyze_pcap(p, write=False)["mavlink"]
    assert m["vehicles"]["1"]["messages"]["HEARTBEAT"]["count"] == 9
    assert m["vehicles"]["2"]["messages"]["HEARTBEAT"]["count"] == 10
    assert m["vehicles"]["1"]["gaps"]["HEARTBEAT"]["max_gap_s"] == pytest.approx(2.0)
    assert m["by_version"] == {1: 10, 2: 11}
    assert m["command_ack"]["n"] == 1
    assert m["command_ack"]["median_ms"] == pytest.approx(45, abs=0.01)
    assert m["commands_unanswered"] == 0


def test_truncated_file_keeps_packets(mixed: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    data = mixed.read_bytes()
    cut.write_bytes(data[:-30])  # half-written last record, as tcpdump -U leaves it
    res = analyze_capture(Capture(cut))
    assert res["packets"] == len(synth.mixed_traffic()) - 1
    assert "incomplete" in res["error"]


def test_corrupt_record_header(mixed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    data = bytearray(mixed.read_bytes())
    # third record's captured length set absurdly large
    off = 24
    for _ in range(2):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    struct.pack_into("<I", data, off + 8, 10_000_000)
    bad.write_bytes(bytes(data))
    res = analyze_capture(Capture(bad))
    assert res["packets"] == 2 and "corrupt" in res["error"]


def test_empty_and_garbage_and_unknown_linktype(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    res = analyze_capture(Capture(empty))
    assert res["packets"] == 0 and "empty" in res["error"]
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello world, not a capture")
    with pytest.raises(CaptureError, match="not a pcap"):
        Capture(junk)
    odd = tmp_path / "odd.pcap"
    synth.write_pcap(odd, [(1.0, b"\x00" * 40)], linktype=147)
    with pytest.raises(CaptureError, match="link type 147"):
        list(Capture(odd))
    # the run-level API turns these into entries with a message, not exceptions
    assert "not a pcap" in analyze_pcap(junk, write=False)["error"]


def test_pcapng_and_cooked_and_raw(tmp_path: Path) -> None:
    pk = synth.mixed_traffic()
    ng = tmp_path / "x.pcapng"
    with ng.open("wb") as f:
        w = dpkt.pcapng.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for t, frame in pk:
            w.writepkt(frame, ts=t)
    synth.write_pcap(tmp_path / "ref.pcap", pk)
    ref = analyze_capture(Capture(tmp_path / "ref.pcap"))
    res = analyze_capture(Capture(ng))
    assert res["format"] == "pcapng" and res["error"] is None
    assert res["packets"] == ref["packets"] and res["bytes"] == ref["bytes"]
    # Linux cooked v1 and v2 and raw IP: same flows as Ethernet
    sll = [(t, b"\x00\x00\x00\x01\x00\x06" + f[6:12] + b"\x00\x00" + f[12:14] + f[14:])
           for t, f in pk]
    sll2 = [(t, f[12:14] + b"\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x01\x00\x06" + f[6:12]
             + b"\x00\x00" + f[14:]) for t, f in pk]
    raw = [(t, f[14:]) for t, f in pk]
    for name, pkts, lt in (("sll", sll, 113), ("sll2", sll2, 276), ("raw", raw, 101)):
        p = tmp_path / f"{name}.pcap"
        synth.write_pcap(p, pkts, linktype=lt)
        r = analyze_capture(Capture(p))
        assert [f["flow"] for f in r["flows"]] == [f["flow"] for f in ref["flows"]], name
        assert r["flows"][0]["rtt"]["n"] == 50


def test_run_report_is_self_contained(tmp_path: Path) -> None:
    run = tmp_path / "scen" / "run1"
    (run / "pcaps").mkdir(parents=True)
    pk = synth.mixed_traffic()
    synth.write_pcap(run / "pcaps" / "wan--gs1.pcap", pk)
    synth.write_pcap(run / "pcaps" / "wan--cloud1.pcap", [(t + 0.02, f) for t, f in pk])
    t0 = pk[0][0]
    (run / "events.jsonl").write_text(
        json.dumps({"planned_s": 1, "actual_s": 1.0, "wall": t0 + 1, "event": "link_down "
                    "link=wan"}) + "\n")
    (run / "offload").mkdir()
    (run / "offload" / "tasks.csv").write_text(
        "id,node,t_recv,t_queued,t_start,t_done\n" + "".join(
            f"{i},uav1,{t0 + i},{t0 + i + .01},{t0 + i + .1},{t0 + i + .4}\n" for i in range(4)))
    doc = analyze_run(run, workers=2)
    out = run / "analysis"
    for name in ("analysis.json", "flows.csv", "conversations.csv", "throughput.csv",
                 "delay.csv", "rtt.csv", "one_way_delay.csv", "throughput.png", "rtt.png",
                 "one_way_delay.png", "tasks.png", "report.html"):
        assert (out / name).is_file(), name
    assert doc["delay"][0]["directions"][0]["delay"]["median_ms"] == pytest.approx(20, abs=.01)
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    imgs = re.findall(r"<img[^>]*src=\"([^\"]*)\"", page)
    assert len(imgs) >= 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    from testbed.analysis.compare import compare_runs

    cmp = compare_runs([run, run], out=tmp_path / "cmp")
    assert (cmp / "compare.md").read_text().count("|") > 10
    assert (cmp / "compare.html").is_file() and (cmp / "rtt.png").is_file()





# ---------------------------------------------------------------------------- pcapng


def _two_interfaces(pk: list[tuple[float, bytes]]) -> bytes:
    """Ethernet and raw IP (snaplen 96: frames cut) interfaces, packets alternating."""
    return synth.pcapng_bytes([(1, 65535, "eth0"), (101, 96, "tun0")],
                              [(i % 2, t, f if i % 2 == 0 else f[14:])
                               for i, (t, f) in enumerate(pk)])


def _second_section(pk: list[tuple[float, bytes]]) -> bytes:
    """A big-endian section, nanosecond timestamps, Linux cooked frames cut at 128 bytes,
    then a simple packet block (no timestamp) and an obsolete packet block."""
    sll = [(t + 10, b"\x00\x00\x00\x01\x00\x06" + f[6:12] + b"\x00\x00" + f[12:14] + f[14:])
           for t, f in pk]
    sec = synth.pcapng_bytes([(113, 128, "any")], [(0, t, f) for t, f in sll], endian=">",
                             tsresol=9, extra=False)
    f = sll[5][1]
    sec += synth.ng_block(3, struct.pack(">I", len(f)) + f[:128], ">")
    ticks = round((sll[-1][0] + 1) * 1e9)
    return sec + synth.ng_block(2, struct.pack(">HHIIII", 0, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                               len(f), len(f)) + f, ">")


def _tshark_frames(path: Path) -> dict[str, tuple[int, int]]:
    """(frames, bytes) per interface id; tshark also lists custom blocks, without an id."""
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e",
                          "frame.interface_id", "-e", "frame.len"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    per: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        iid, n = line.split("\t")
        if iid:
            f, b = per.get(iid, (0, 0))
            per[iid] = (f + 1, b + int(n))
    return per


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_pcapng_interfaces_match_tshark(tmp_path: Path) -> None:
    pk = synth.mixed_traffic()
    ng = tmp_path / "two.pcapng"
    # and a third interface of a link type we do not decode: counted, not decoded
    usb = [(2, pk[0][0] + i, bytes(range(40 + i))) for i in range(3)]
    ng.write_bytes(synth.pcapng_bytes(
        [(1, 65535, "eth0"), (101, 96, "tun0"), (147, 0, "usb0")],
        sorted([(i % 2, t, f if i % 2 == 0 else f[14:]) for i, (t, f) in enumerate(pk)] + usb,
               key=lambda p: p[1])))
    res = analyze_capture(Capture(ng))
    assert res["error"] is None and res["linktype"] == 1  # mixed link types: as Ethernet
    assert res["non_ip"] == {"non-ip": {"packets": 3, "bytes": 123}}
    theirs = _tshark_frames(ng)
    ifs = res["interfaces"]
    assert [(i["name"], i["linktype"]) for i in ifs] == [("eth0", 1), ("tun0", 101),
                                                          ("usb0", 147)]
    assert {str(i["id"]): (i["packets"], i["bytes"]) for i in ifs} == theirs
    # byte totals are original lengths (tun0's frames were cut at 96 bytes)
    assert res["bytes"] == sum(b for _, b in theirs.values()) > ng.stat().st_size - 10_000
    conv = _tshark_conv(ng)
    ours = {(c["a"], c["b"]): c for c in res["conversations"]}
    assert len(conv) == len(ours)
    for (a, b), (f_in, _b_in, f_out, _b_out) in conv.items():
        c = ours.get((a, b)) or ours[(b, a)]
        assert c["frames"] == f_in + f_out
    # the raw-IP interface's half of the TCP flow still gives RTT samples (data -> ack)
    assert _flow(res, "tcp 10.0.0.1:40000 > 10.0.0.2:80")["rtt"]["n"] > 10


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_pcapng_sections_spb_pb(tmp_path: Path) -> None:
    pk = synth.mixed_traffic()
    ng = tmp_path / "sections.pcapng"
    ng.write_bytes(_two_interfaces(pk) + _second_section(pk))
    res = analyze_capture(Capture(ng))
    assert res["error"] is None
    ifs = [(i["section"], i["id"], i["name"], i["linktype"], i["packets"])
           for i in res["interfaces"]]
    n = len(pk)
    assert ifs == [(0, 0, "eth0", 1, (n + 1) // 2), (0, 1, "tun0", 101, n // 2),
                   (1, 0, "any", 113, n + 2)]
    theirs = _tshark_frames(ng)
    assert res["packets"] == sum(f for f, _ in theirs.values())
    assert res["bytes"] == sum(b for _, b in theirs.values())
    # nanosecond timestamps of the big-endian section; the SPB took the previous timestamp
    assert res["last"] == pytest.approx(pk[-1][0] + 11, abs=1e-6)
    assert res["duration_s"] == pytest.approx(pk[-1][0] + 11 - pk[0][0], abs=1e-6)
    # a corrupt block keeps what came before it
    cut = tmp_path / "cut.pcapng"
    data = bytearray(ng.read_bytes())
    off = len(_two_interfaces(pk)) - 4  # the trailing length of the first section's last EPB
    data[off:off + 4] = b"\xff" * 4
    cut.write_bytes(bytes(data))
    res = analyze_capture(Capture(cut))
    assert res["packets"] == n - 1 and "corrupt" in res["error"]
    assert f"kept the {res['packets']} packets" in res["error"]


# ---------------------------------------------------------------------------- splitting

DROP = ("elapsed_s", "packets_per_s", "parts")


def _same(a: dict, b: dict) -> None:
    a = {k: v for k, v in a.items() if k not in DROP}
    b = {k: v for k, v in b.items() if k not in DROP}
    for k in a:
        assert a[k] == b.get(k), k
    assert a.keys() == b.keys()


def _split(path: Path, parts: int, warmup: int) -> dict:
    ranges = plan(path, parts, warmup)
    assert ranges is not None
    return combine([part_job(p, 1.0) for p in ranges], 1.0, 1.0)


def _big_endian_ns(pk: list[tuple[float, bytes]]) -> bytes:
    out = [b"\xa1\xb2\x3c\x4d" + struct.pack(">HHiIII", 2, 4, 0, 0, 65535, 1)]
    for t, f in pk:
        ns = round(t * 1e9)
        out.append(struct.pack(">IIII", ns // 10**9, ns % 10**9, len(f), len(f)) + f)
    return b"".join(out)


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The same traffic as little-endian microsecond pcap, pcapng with two interfaces, and
    big-endian nanosecond pcap."""
    d = tmp_path_factory.mktemp("tricky")
    pk = synth.tricky_traffic()
    synth.write_pcap(d / "t.pcap", pk)
    (d / "t.pcapng").write_bytes(_two_interfaces(pk))
    (d / "t-be-ns.pcap").write_bytes(_big_endian_ns(pk))
    return d / "t.pcap", d / "t.pcapng", d / "t-be-ns.pcap"


def _record_starts(path: Path) -> list[int]:
    """Every record (pcap) or block (pcapng) start after the header, from the lengths."""
    data = path.read_bytes()
    ng = path.suffix == ".pcapng"
    e = ">" if data[:1] == b"\xa1" else "<"
    pos, starts = (0 if ng else 24), []
    while pos < len(data):
        starts.append(pos)
        pos += struct.unpack_from("<I", data, pos + 4)[0] if ng else (
            16 + struct.unpack_from(e + "I", data, pos + 8)[0])
    return starts


def test_resync_finds_true_boundaries(tricky: tuple[Path, Path, Path]) -> None:
    """Payloads hold chains of fake pcap headers and pcapng blocks; every resync point must
    still be the first real record at or after the offset."""
    import bisect

    for path in tricky:
        cap = Capture(path)
        starts = [s for s in _record_starts(path) if s >= cap.data_start]
        for x in range(cap.data_start + 1, cap.size - 2000, 25_013):
            assert cap.boundary(x) == starts[bisect.bisect_left(starts, x)], (path.name, x)


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["pcap", "pcapng", "pcap-be-ns"])
def test_split_reproduces_single_pass(tricky: tuple[Path, Path, Path], kind: int) -> None:
    path = tricky[kind]
    ref = capture_job(str(path), 1.0)
    tcp = _flow(ref, "tcp 10.0.0.1:40000 > 10.0.0.2:80")
    ping = _flow(ref, "icmp 10.0.0.1 > 10.0.0.9 id=77")["echo"]
    assert tcp["retransmissions"] == 13 and tcp["rtt"]["n"] > 1000
    assert ping["replies"] < ping["requests"] and ref["mavlink"]["command_ack"]["n"] == 5
    for parts in (2, 8):
        res = _split(path, parts, 64 << 10)
        assert len(res["parts"]) == parts and all(p["merged"] for p in res["parts"])
        _same(ref, res)
    # without the warm-up, RTT samples whose segment lies before a boundary are lost
    res = _split(path, 8, 0)
    assert _flow(res, "tcp 10.0.0.1:40000 > 10.0.0.2:80")["rtt"]["n"] < tcp["rtt"]["n"]


def test_split_continues_after_a_new_section(tmp_path: Path) -> None:
    """A section (new link type) declared inside a range: the ranges after it were read with
    the wrong interface table, so the rest is read on from that range's state."""
    pk = synth.tricky_traffic(seconds=4.0)
    half = len(pk) // 2
    sll = [(t, b"\x00\x00\x00\x01\x00\x06" + f[6:12] + b"\x00\x00" + f[12:14] + f[14:])
           for t, f in pk[half:]]
    path = tmp_path / "two-sections.pcapng"
    path.write_bytes(synth.pcapng_bytes([(1, 0, "eth0")], [(0, t, f) for t, f in pk[:half]])
                     + synth.pcapng_bytes([(113, 0, "any")], [(0, t, f) for t, f in sll],
                                          tsresol=9))
    ref = capture_job(str(path), 1.0)
    assert ref["error"] is None and len(ref["interfaces"]) == 2
    res = _split(path, 4, 32 << 10)
    assert [p["merged"] for p in res["parts"]] == [True, True, False, False]
    _same(ref, res)


def test_split_stops_at_a_corrupt_record(tricky: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data = bytearray(tricky[0].read_bytes())
    starts = _record_starts(tricky[0])
    bad = starts[len(starts) * 2 // 3]
    struct.pack_into("<I", data, bad + 8, 10_000_000)
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(data))
    ref = capture_job(str(path), 1.0)
    assert ref["packets"] == len(starts) * 2 // 3 and "corrupt" in ref["error"]
    res = _split(path, 4, 32 << 10)
    assert [p["merged"] for p in res["parts"]] == [True, True, True, False]
    _same(ref, res)  # same packets, same sentence (with the whole file's count)


def test_mavlink_stats_merge() -> None:
    """Counts, rates, versions, the telemetry gap across the boundary and a command acked on
    the other side come out of two merged halves as from one pass."""
    from pymavlink.dialects.v20 import common

    veh = common.MAVLink(None, srcSystem=1, srcComponent=1)
    gcs = common.MAVLink(None, srcSystem=255, srcComponent=190)
    hb = veh.heartbeat_encode(2, 3, 0, 0, 4).pack(veh)
    msgs = [(100.0 + i, hb) for i in range(10) if i not in (4, 5)]  # 3 s gap over the cut
    msgs += [(101.5, gcs.command_long_encode(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0).pack(gcs)),
             (101.6, gcs.command_long_encode(1, 1, 21, 0, 1, 0, 0, 0, 0, 0, 0).pack(gcs)),
             (101.7, veh.command_ack_encode(21, 0).pack(veh)),
             (104.55, veh.command_ack_encode(400, 0).pack(veh)),
             (106.0, veh.command_ack_encode(176, 0).pack(veh))]
    msgs.sort()
    one, a, b = MavlinkStats(), MavlinkStats(), MavlinkStats()
    for t, payload in msgs:
        one.feed(t, payload, b"", b"", 1, 2)
        (a if t < 104.5 else b).feed(t, payload, b"", b"", 1, 2)
    a.merge(b)
    assert a.results() == one.results()
    r = one.results()
    assert r["vehicles"]["1"]["gaps"]["HEARTBEAT"]["max_gap_s"] == pytest.approx(3.0)
    assert r["command_ack"]["n"] == 2 and r["command_ack"]["max_ms"] == pytest.approx(3050)


def test_pool_splits_large_captures(tricky: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import os

    ref = capture_job(str(tricky[0]), 1.0)
    res = analyze_pcap(tricky[0], write=False, workers=2, split_min=1 << 20)
    parts = res["parts"]
    assert len(parts) == 2 and os.getpid() not in {p["pid"] for p in parts}
    _same(ref, res)
    # a run with one large capture and small ones: only the large one is split
    run = tmp_path / "run"
    run.mkdir()
    (run / "big.pcap").write_bytes(tricky[0].read_bytes())
    for name in ("l--a.pcap", "l--b.pcap"):
        synth.write_pcap(run / name, synth.mixed_traffic())
    doc = analyze_run(run, workers=2, write=False, split_min=1 << 20)
    assert [len(c.get("parts", [])) for c in doc["captures"]] == [2, 0, 0]
    _same(ref | {"file": str(run / "big.pcap")}, doc["captures"][0])


def _pings(n: int, ident: int, t0: float, rtt: float) -> list[tuple[float, bytes]]:
    req = bytearray(synth.icmp_echo("10.0.0.1", "10.0.0.9", ident, 0))
    rep = bytearray(synth.icmp_echo("10.0.0.9", "10.0.0.1", ident, 0, reply=True))
    out = []
    for i in range(n):
        for frame, t in ((req, t0 + i * 0.01), (rep, t0 + i * 0.01 + rtt)):
            struct.pack_into("!H", frame, 18, i)  # IP id: distinct packets for the delay pass
            struct.pack_into("!H", frame, 40, i)  # ICMP sequence
            out.append((t, bytes(frame)))
    return out


def test_series_go_to_csv_and_json_stays_small(tmp_path: Path) -> None:
    import csv

    run = tmp_path / "scen" / "run1"
    run.mkdir(parents=True)
    pk = sorted(p for k in range(4) for p in _pings(12_500, 100 + k, 1000.0 + k * 0.001,
                                                    0.02 + k * 0.01))
    synth.write_pcap(run / "l--a.pcap", pk)
    synth.write_pcap(run / "l--b.pcap", [(t + 0.005, f) for t, f in pk])
    doc = analyze_run(run, workers=1)
    out = run / "analysis"
    caps = doc["captures"]
    n_rtt = sum(f["echo"]["rtt"]["n"] for c in caps for f in c["flows"] if "echo" in f)
    assert n_rtt == 2 * 50_000
    assert (out / "analysis.json").stat().st_size < 200_000
    summary = json.loads((out / "analysis.json").read_text())
    assert "rtt_series_ms" not in summary["captures"][0]
    assert "series_ms" not in summary["delay"][0]["directions"][0]
    with (out / "rtt.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_rtt
    assert set(rows[0]) == {"capture", "flow", "flow_name", "t_s", "rtt_ms"}
    assert {round(float(r["rtt_ms"])) for r in rows} == {20, 30, 40, 50}
    with (out / "one_way_delay.csv").open(newline="") as f:
        owd = list(csv.DictReader(f))
    series = sum(len(di["series_ms"]) for d in doc["delay"] for di in d["directions"])
    assert len(owd) == series > 10_000 and float(owd[0]["delay_ms"]) == pytest.approx(5)
    from testbed.analysis.compare import _rtt_points

    assert len(_rtt_points(run, summary)) == n_rtt


def test_benchmark_small(tmp_path: Path) -> None:
    from rich.console import Console

    from testbed.bench import analysis as bench

    res = bench.run(Console(quiet=True), size_mb=3, tmpdir=tmp_path, tshark=False)
    for k in ("ours", "ours_single"):
        assert res[k]["packets"] == res["packets"] > 1000 and res[k]["peak_rss_mb"] > 0
        assert res[k]["peak_rss_mb_total"] >= res[k]["peak_rss_mb_coordinator"] > 0
    assert not list(tmp_path.glob("*/*.pcap"))
