"""Users' kernels: tc netem, the Open vSwitch kernel datapath and mac80211_hwsim radios.

Marked `kernel`: on this build host (no sch_netem, hwsim or openvswitch module) they run in
one boot of Debian's stock kernel under qemu (tests/conftest.py), on a researcher's stock
kernel in place.  Under software emulation everything CPU-bound is ~11x slower, so the timing
bounds here are coarse on purpose: they tell a shaped link from an unshaped one, not 1 ms
from 2 ms (`make bench BENCH=engines` measures the errors).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testbed.analysis import wlan
from testbed.engines.base import Change
from testbed.run.cleanup import leftovers
from testbed.run.harness import Emulation, emulated
from testbed.scenario import parse
from testbed.scenario.model import Medium

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="kernel tests need root (namespaces)"),
]


def ping(emu: Emulation, src: str, dst_ip: str, count: int = 8, interval: float = 0.2
         ) -> list[float]:
    res = emu.run(src, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2",
                        dst_ip], timeout=60)
    return [float(x.split("time=")[1].split()[0]) for x in res.stdout.splitlines()
            if "time=" in x]


def assert_clean(tag: str) -> None:
    left = leftovers(tag)
    assert all(not v for v in left.values()), left
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    ours = [line for line in procs.splitlines()
            if (f"-{tag}/" in line or f"sh{tag}" in line) and not line.startswith("[")]
    assert not ours, ours


def wired_and_p2p() -> dict[str, Any]:
    return {
        "name": "kernel-netem", "duration_s": 60,
        "engines": {"p2p": "netem", "switch": "kernel"},
        "nodes": {"gs": {"kind": "ground_station"}, "cloud": {"kind": "cloud"},
                  "edge": {"kind": "edge_server"}, "sw": {"kind": "switch"}},
        "links": [
            {"name": "sat", "kind": "satellite", "endpoints": ["gs", "cloud"],
             "delay_ms": 25, "rate_mbps": 10, "rate_back_mbps": 4},
            {"name": "lan-gs", "kind": "wired", "endpoints": ["gs", "sw"], "rate_mbps": 100},
            {"name": "lan-edge", "kind": "wired", "endpoints": ["edge", "sw"],
             "delay_ms": 5, "rate_mbps": 100},
        ],
        "capture": {"enabled": False},
    }


def test_netem_links_and_the_ovs_kernel_datapath() -> None:
    sc = parse(wired_and_p2p(), "kernel-netem")
    with emulated(sc, Path("/tmp/kernel-runs")) as emu:
        tag = emu.net.plan.tag
        assert emu.net.engine_names() == {"p2p": "netem", "switch": "ovs-kernel"}
        swns = emu.net.plan.switch_netns
        assert swns is not None
        dp = subprocess.run(["ip", "netns", "exec", swns, "ovs-dpctl", "show"],
                            capture_output=True, text=True).stdout
        assert "system@ovs-system" in dp, dp  # the kernel datapath, inside the run's namespace
        qd = emu.run("gs", ["tc", "qdisc", "show"]).stdout
        assert "netem" in qd and "delay 25" in qd, qd

        # configured 50 ms RTT; TCG adds a few ms, nothing like a second unshaped hop
        rtt = statistics.median(ping(emu, "gs", emu.ip("cloud")))
        assert 49.0 <= rtt <= 50.0 * 1.25 + 10, rtt
        got = emu.goodput_mbps("gs", "cloud")
        assert 0.7 * 10 <= got <= 10 * 1.05, got
        # an asymmetric link: the second endpoint's qdisc sends at rate_back_mbps
        back = emu.goodput_mbps("cloud", "gs")
        assert 0.7 * 4 <= back <= 4 * 1.05, back

        # a wired link with delay: netem on both veth ends, through the kernel datapath
        lan = statistics.median(ping(emu, "edge", emu.ip("gs")))
        assert 9.5 <= lan <= 10 * 1.5 + 10, lan

        # runtime change from the timeline's path: 25 -> 5 ms one way
        emu.net.apply([Change("set", link="sat", delay_ms=5.0)])
        fast = statistics.median(ping(emu, "gs", emu.ip("cloud")))
        assert 9.5 <= fast <= 10 * 1.5 + 10, fast

        # cut and restore
        emu.net.apply([Change("set", link="sat", up=False)])
        assert ping(emu, "gs", emu.ip("cloud"), count=4) == []
        emu.net.apply([Change("set", link="sat", up=True)])
        assert len(ping(emu, "gs", emu.ip("cloud"), count=4)) >= 3
    assert_clean(tag)
    dp = subprocess.run(["ovs-dpctl", "show"], capture_output=True, text=True).stdout
    assert "ovs-system" not in dp  # the datapath died with the switch namespace


def hwsim_cells(mode: str) -> dict[str, Any]:
    """Two UAVs over a ground user; ap mode makes both UAVs access points of one ESS."""
    wifi: dict[str, Any] = {"standard": "802.11a", "data_mode": "OfdmRate24Mbps", "mode": mode}
    if mode == "ap":
        wifi.update(aps=["uav1", "uav2"])
    return {
        "name": f"kernel-hwsim-{mode}", "duration_s": 60,
        "engines": {"wifi": "hwsim"},
        "nodes": {"uav1": {"kind": "uav", "position": [-40, 0, 60]},
                  "uav2": {"kind": "uav", "position": [400, 0, 60]},
                  "user": {"kind": "ground_user", "position": [-30, 10, 1.5]},
                  "gs": {"kind": "ground_station"}},
        "links": [
            {"name": "cell", "kind": "air-to-ground", "endpoints": ["uav1", "uav2", "user"],
             "wifi": wifi},
            {"name": "bh1", "kind": "wired", "endpoints": ["uav1", "gs"]},
            {"name": "bh2", "kind": "wired", "endpoints": ["uav2", "gs"]},
        ],
        "capture": {"enabled": mode == "ap"},
    }


@pytest.mark.parametrize("mode", ["adhoc", "mesh"])
def test_hwsim_cell_follows_distance(mode: str) -> None:
    sc = parse(hwsim_cells(mode), f"kernel-hwsim-{mode}")
    with emulated(sc, Path("/tmp/kernel-runs")) as emu:
        tag = emu.net.plan.tag
        assert emu.net.engine_names()["wifi"] == "hwsim"
        link = emu.run("user", ["iw", "dev"]).stdout
        assert {"adhoc": "type IBSS", "mesh": "type mesh point"}[mode] in link, link
        near = ping(emu, "user", emu.ip("uav1", "cell"))
        assert len(near) >= 6
        # uav1 flies 3 km away: the pair's shaping turns to (almost) total loss
        emu.net.apply([Change("position", node="uav1", xyz=(3000.0, 0.0, 60.0))])
        far = ping(emu, "user", emu.ip("uav1", "cell"), count=6)
        assert len(far) <= 1, far
        emu.net.apply([Change("position", node="uav1", xyz=(-40.0, 0.0, 60.0))])
        assert len(ping(emu, "user", emu.ip("uav1", "cell"))) >= 6
    assert_clean(tag)


def mac(emu: Emulation, node: str) -> str:
    found = re.search(r"addr (\S+)", emu.run(node, ["iw", "dev"]).stdout)
    assert found is not None
    return found.group(1)


def connected(emu: Emulation, station: str = "user") -> str:
    """`iw dev <if> link`: 'Connected to <bssid>', 'SSID: ...' of the station."""
    return emu.run(station, ["iw", "dev", emu.net.plan.endpoint("cell", station).ifname,
                             "link"]).stdout


def test_hwsim_access_points_roam_with_a_moving_uav() -> None:
    sc = parse(hwsim_cells("ap"), "kernel-hwsim-ap")
    with emulated(sc, Path("/tmp/kernel-runs")) as emu:
        tag = emu.net.plan.tag
        hw = emu.net.engines[Medium.WIFI]
        stats = hw.stats()
        assert [a["ap"] for a in stats["associations"]] == ["uav1"]
        assert "SSID: cell" in connected(emu) and mac(emu, "uav1") in connected(emu)
        assert len(ping(emu, "user", emu.ip("gs"))) >= 6  # via uav1
        # uav1 flies away, uav2 comes close: the station re-associates (WPA2, real frames)
        emu.net.apply([Change("position", node="uav1", xyz=(2000.0, 0.0, 60.0)),
                       Change("position", node="uav2", xyz=(-20.0, 0.0, 60.0))])
        roams = hw.stats()["roams"]
        assert [(r["from"], r["to"]) for r in roams] == [("uav1", "uav2")], roams
        assert 0 < roams[0]["seconds"] < 30
        assert mac(emu, "uav2") in connected(emu), connected(emu)
        assert len(ping(emu, "user", emu.ip("gs"))) >= 6  # now via uav2: routes followed
        macs = {n: mac(emu, n) for n in ("user", "uav1", "uav2")}
    assert_clean(tag)
    # the monitor capture holds the real management frames of both associations
    rep = wlan.analyse_pcap(emu.run_dir / "wlan" / "hwsim0.pcap")
    sta = rep.stations[macs["user"]]
    assert [b for _, b in sta.associations] == [macs["uav1"], macs["uav2"]]
    assert [(r.from_bssid, r.to_bssid) for r in sta.roams] == [(macs["uav1"], macs["uav2"])]
    assert 0 < sta.roams[0].roam_time_s < 30
    assert rep.data_frames > 0 and {macs["uav1"], macs["uav2"]} <= set(rep.beacons)
