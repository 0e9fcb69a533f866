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
                 "delay.csv", "throughput.png", "rtt.png", "one_way_delay.png", "tasks.png",
                 "report.html"):
        assert (out / name).is_file(), name
    assert doc["delay"][0]["directions"][0]["delay"]["median_ms"] == pytest.approx(20, abs=.01)
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    imgs = re.findall(r"<img[^>]*src=\"([^\"]*)\"", page)
    assert len(imgs) >= 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    from testbed.analysis.compare import compare_runs

    cmp = compare_runs([run, run], out=tmp_path / "cmp")
    assert (cmp / "compare.md").read_text().count("|") > 10
    assert (cmp / "compare.html").is_file()


def test_benchmark_small(tmp_path: Path) -> None:
    from rich.console import Console

    from testbed.bench import analysis as bench

    res = bench.run(Console(quiet=True), size_mb=3, tmpdir=tmp_path, tshark=False)
    assert res["ours"]["packets"] > 1000 and res["ours"]["peak_rss_mb"] > 0
    assert not list(tmp_path.glob("*.pcap"))
