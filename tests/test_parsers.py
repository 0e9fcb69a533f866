"""Pure helpers: ping and iperf3 output parsers, tc argument builders, engine change ops and
the process start-time reader of the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from testbed.engines.base import Change
from testbed.engines.netem import netem_args
from testbed.lifecycle.ledger import ProcRecord, proc_start_ticks
from testbed.net.network import default_queue, tbf_args
from testbed.run.traffic import parse_iperf3, parse_ping
from testbed.scenario.model import Flow

pytestmark = pytest.mark.unit


# --- ping -D -n -------------------------------------------------------------------------------

PING_REPLIES = """\
PING 198.18.5.2 (198.18.5.2) 56(84) bytes of data.
[1732650001.204518] 64 bytes from 198.18.5.2: icmp_seq=1 ttl=61 time=16.4 ms
[1732650001.405102] 64 bytes from 198.18.5.2: icmp_seq=2 ttl=61 time=14.9 ms
[1732650001.605733] From 198.18.1.1 icmp_seq=3 Destination Host Unreachable
[1732650001.806431] 64 bytes from 198.18.5.2: icmp_seq=4 ttl=61 time=15.3 ms
[1732650002.006877] 64 bytes from 198.18.5.2: icmp_seq=5 ttl=61 time=38.2 ms
"""

PING_SUMMARY = """
--- 198.18.5.2 ping statistics ---
5 packets transmitted, 4 received, +1 errors, 20% packet loss, time 802ms
rtt min/avg/max/mdev = 14.900/21.200/38.200/9.700 ms
"""


def test_ping_complete_run():
    res = parse_ping(PING_REPLIES + PING_SUMMARY)
    assert res["status"] == "ok"
    assert (res["sent"], res["received"]) == (5, 4)
    assert res["loss_pct"] == 20.0
    assert res["rtt_ms_min"] == 14.9
    assert res["rtt_ms_max"] == 38.2
    assert res["rtt_ms_median"] == pytest.approx((15.3 + 16.4) / 2)
    assert res["rtt_ms_p95"] == 38.2


def test_ping_interrupted_run_has_no_summary():
    """Killed before printing statistics: count the replies, do not invent a loss rate."""
    res = parse_ping(PING_REPLIES)
    assert res["status"] == "ok"
    assert res["sent"] is None
    assert res["received"] == 4
    assert "loss_pct" not in res
    assert res["rtt_ms_min"] == 14.9


def test_ping_percentile_and_sub_millisecond_times():
    lines = [f"[1732650000.{i:06d}] 64 bytes from 198.18.6.2: icmp_seq={i} ttl=63 "
             f"time={t} ms" for i, t in enumerate([0.045, 0.051, 0.049, 0.062, 1.903], 1)]
    res = parse_ping("\n".join(lines) + "\n")
    assert res["rtt_ms_min"] == 0.045
    assert res["rtt_ms_median"] == 0.051
    assert res["rtt_ms_max"] == 1.903


def test_ping_no_replies():
    text = ("PING 198.18.5.2 (198.18.5.2) 56(84) bytes of data.\n\n"
            "--- 198.18.5.2 ping statistics ---\n"
            "10 packets transmitted, 0 received, 100% packet loss, time 9215ms\n")
    res = parse_ping(text)
    assert res["status"] == "no replies"
    assert (res["sent"], res["received"], res["loss_pct"]) == (10, 0, 100.0)
    assert not [k for k in res if k.startswith("rtt_")]


def test_ping_empty_output():
    res = parse_ping("")
    assert res == {"status": "no replies", "sent": None, "received": 0}


# --- iperf3 -J --------------------------------------------------------------------------------

def flow(kind: str, rate: float | None = None) -> Flow:
    return Flow(name="f", kind=kind, src="user3", dst="edge1", duration_s=3, rate_mbps=rate)


def iperf3_json(protocol: str, end: dict) -> str:
    """A trimmed iperf3 -J document: start, one interval, and the given end section."""
    doc = {
        "start": {
            "connected": [{"socket": 5, "local_host": "198.18.2.2", "local_port": 43210,
                           "remote_host": "198.18.6.2", "remote_port": 5203}],
            "version": "iperf 3.16",
            "system_info": "Linux sagin 6.8.0-49-generic #49-Ubuntu SMP x86_64",
            "timestamp": {"time": "Tue, 26 Nov 2024 21:23:10 GMT", "timesecs": 1732656190},
            "connecting_to": {"host": "198.18.6.2", "port": 5203},
            "cookie": "p4l3zq2m6x7c5d2gs6slx3uapk6kpiwzvqyb",
            "test_start": {"protocol": protocol, "num_streams": 1, "blksize": 131072,
                           "omit": 0, "duration": 3, "bytes": 0, "blocks": 0, "reverse": 0,
                           "tos": 0, "target_bitrate": 6000000},
        },
        "intervals": [{
            "streams": [{"socket": 5, "start": 0, "end": 1.0, "seconds": 1.0,
                         "bytes": 786432, "bits_per_second": 6291456.0, "omitted": False,
                         "sender": True}],
            "sum": {"start": 0, "end": 1.0, "seconds": 1.0, "bytes": 786432,
                    "bits_per_second": 6291456.0, "omitted": False, "sender": True},
        }],
        "end": end,
    }
    return json.dumps(doc, indent="\t")


TCP_END = {
    "streams": [],
    "sum_sent": {"start": 0, "end": 3.0, "seconds": 3.0, "bytes": 2359296,
                 "bits_per_second": 6291456.0, "retransmits": 3, "sender": True},
    "sum_received": {"start": 0, "end": 3.041, "seconds": 3.041, "bytes": 2228224,
                     "bits_per_second": 5861819.4, "sender": True},
    "cpu_utilization_percent": {"host_total": 1.2, "remote_total": 0.4},
    "sender_tcp_congestion": "cubic",
    "receiver_tcp_congestion": "cubic",
}

UDP_SUM = {"start": 0, "end": 3.0, "seconds": 3.0, "bytes": 750000,
           "bits_per_second": 2000000.0, "jitter_ms": 0.41237, "lost_packets": 5,
           "packets": 625, "lost_percent": 0.8, "sender": True}


def test_iperf3_tcp():
    res = parse_iperf3(iperf3_json("TCP", TCP_END), flow("tcp", 6))
    assert res["status"] == "ok"
    assert res["configured_mbps"] == 6
    assert res["goodput_mbps"] == pytest.approx(5.862, abs=1e-3)  # receiver side
    assert res["retransmits"] == 3


def test_iperf3_udp_sum():
    res = parse_iperf3(iperf3_json("UDP", {"streams": [], "sum": UDP_SUM}), flow("udp", 2))
    assert res["status"] == "ok"
    assert res["goodput_mbps"] == 2.0
    assert res["loss_pct"] == 0.8
    assert res["jitter_ms"] == 0.412


def test_iperf3_udp_prefers_receiver_sum():
    """Newer iperf3 adds sum_sent/sum_received to UDP results: the receiver's counts win."""
    received = dict(UDP_SUM, bits_per_second=1840000.0, lost_percent=8.0, jitter_ms=1.5)
    end = {"streams": [], "sum": UDP_SUM, "sum_sent": UDP_SUM, "sum_received": received}
    res = parse_iperf3(iperf3_json("UDP", end), flow("udp", 2))
    assert (res["goodput_mbps"], res["loss_pct"], res["jitter_ms"]) == (1.84, 8.0, 1.5)


def test_iperf3_truncated():
    text = iperf3_json("TCP", TCP_END)
    res = parse_iperf3(text[: len(text) // 2], flow("tcp", 6))
    assert res["status"].startswith("incomplete")
    assert "goodput_mbps" not in res


def test_iperf3_empty_output():
    assert parse_iperf3("", flow("tcp")).get("status", "").startswith("incomplete")


def test_iperf3_error_report():
    text = json.dumps({"start": {"connected": []}, "intervals": [], "end": {},
                       "error": "unable to connect to server - server may have stopped "
                                "running or use a different port, firewall issue, etc.: "
                                "Connection refused"})
    res = parse_iperf3(text, flow("tcp"))
    assert res["status"].startswith("error: unable to connect to server")


# --- tc arguments -----------------------------------------------------------------------------

def test_netem_args_full():
    args = netem_args(25, 10, 1, 1000)
    assert args[0] == "netem"
    assert args[args.index("delay") + 1] == "25.000ms"
    assert args[args.index("loss") + 1] == "1.0000%"
    assert args[args.index("rate") + 1] == "10000kbit"
    assert args[args.index("limit") + 1] == "1000"


def test_netem_args_leave_out_zero_loss_and_rate():
    args = netem_args(6, 0, 0, 100)
    assert args == ["netem", "delay", "6.000ms", "limit", "100"]


def test_netem_args_fractional_values():
    args = netem_args(0.25, 0.5, 0.01, 64)
    assert "0.250ms" in args and "0.0100%" in args and "500kbit" in args


def test_tbf_args():
    args = tbf_args(10)
    assert args[0] == "tbf"
    assert args[args.index("rate") + 1] == "10000kbit"
    assert int(args[args.index("burst") + 1]) == 5000  # 4 ms at 10 Mbit/s
    assert "latency" in args


def test_tbf_args_minimum_burst():
    args = tbf_args(1)
    assert args[args.index("rate") + 1] == "1000kbit"
    assert int(args[args.index("burst") + 1]) == 1600  # at least one full frame


def test_default_queue_floor_and_bdp():
    assert default_queue(50, 6) == 100  # 50 packets BDP: the floor wins
    # 1 Gbit/s over 300 ms RTT: 50 000 packets of BDP, 1.5x headroom
    assert default_queue(1000, 150) == 37500
    assert default_queue(1000, 300) == 75000
    assert default_queue(1000, 300) > default_queue(1000, 150) > default_queue(100, 150)


# --- engine changes ---------------------------------------------------------------------------

def test_change_as_op_set():
    assert Change("set", link="x", delay_ms=5).as_op() == {"op": "set", "link": "x",
                                                          "delay_ms": 5}


def test_change_as_op_keeps_falsy_values():
    op = Change("set", link="sat-up", node="gs1", loss_pct=0.0, up=False).as_op()
    assert op == {"op": "set", "link": "sat-up", "node": "gs1", "loss_pct": 0.0, "up": False}


def test_change_as_op_position():
    op = Change("position", node="uav2", xyz=(60.0, 40.0, 120.0)).as_op()
    assert op == {"op": "position", "node": "uav2", "xyz": [60.0, 40.0, 120.0]}
    json.dumps(op)  # goes over a pipe as JSON


def test_ns3_delay_compensation_rewrites_p2p_delays_only():
    from testbed.engines.ns3 import Ns3Engine

    eng = Ns3Engine(supervisor=None)  # type: ignore[arg-type]  # no process: pure rewrite
    eng.p2p_delay = {"sat": 6.0, "short": 0.1}
    assert eng._compensate({"op": "set", "link": "sat", "delay_ms": 7.0})["delay_ms"] == 7.0
    eng.compensation_ms = 0.2
    op = eng._compensate({"op": "set", "link": "sat", "delay_ms": 8.0})
    assert op["delay_ms"] == pytest.approx(7.8) and op["configured_delay_ms"] == 8.0
    assert eng.p2p_delay["sat"] == 8.0  # remembers the configured value, not the applied one
    assert eng._compensate({"op": "set", "link": "short", "delay_ms": 0.1})["delay_ms"] == 0.0
    wifi = {"op": "set", "link": "cell", "up": False}
    assert eng._compensate(wifi) == wifi


# --- ledger: process start time ---------------------------------------------------------------

def test_proc_start_ticks_of_self():
    ticks = proc_start_ticks(os.getpid())
    assert isinstance(ticks, int)
    assert ticks == proc_start_ticks(os.getpid())
    uptime_ticks = float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK")
    assert 0 <= ticks <= uptime_ticks + 1


def test_proc_start_ticks_of_missing_pid():
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert proc_start_ticks(pid_max + 1) is None


def test_proc_start_ticks_of_zombie():
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 5
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.01)
        assert proc_start_ticks(child.pid) is None
    finally:
        child.wait()


def test_proc_record_alive():
    me = os.getpid()
    ticks = proc_start_ticks(me)
    assert ProcRecord(pid=me, start_ticks=ticks, name="pytest").alive()
    assert not ProcRecord(pid=me, start_ticks=ticks + 1, name="reused pid").alive()


def test_fping_probe_lines_padded_addresses_and_timeouts(tmp_path: Path):
    """fping pads the address column to its longest target; a timeout still counts as sent
    (a link whose every probe timed out reads 100 % loss, not 'no data')."""
    from testbed.run.probes import Probes

    (tmp_path / "a.txt").write_text(
        "[1.0] 198.18.1.2    : [0], 64 bytes, 19.9 ms (19.9 avg, 0% loss)\n"
        "[1.1] 198.18.13.186 : [0], 64 bytes, 9.03 ms (9.03 avg, 0% loss)\n"
        "[2.0] 198.18.1.2    : [1], timed out (19.9 avg, 50% loss)\n"
        "[2.1] 198.18.41.18  : [0], timed out (NaN avg, 100% loss)\n"
        "[3.0] 198.18.41.18  : [1], timed out (NaN avg, 100% loss)\n")
    probes = Probes.__new__(Probes)
    probes.dir = tmp_path
    probes.pairs = {"a": [("l1", "b", "198.18.1.2"), ("l2", "c", "198.18.13.186"),
                          ("l3", "d", "198.18.41.18")]}
    s = probes.samples()
    assert s[("l1", "b")]["rtt"] == [19.9] and s[("l1", "b")]["max_seq"] == 1
    assert s[("l2", "c")]["rtt"] == [9.03]
    assert s[("l3", "d")]["rtt"] == [] and s[("l3", "d")]["max_seq"] == 1
