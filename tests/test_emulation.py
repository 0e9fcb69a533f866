"""Real emulation: namespaces, ns-3, Open vSwitch and os-ken are started for each test, and
each test checks that nothing of its run is left on the host, even when it fails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.engines.base import Change
from testbed.run.cleanup import leftovers
from testbed.run.harness import emulated
from testbed.scenario import load, parse

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None or shutil.which("fping") is None,
                       reason="Open vSwitch / fping missing: run `make setup`"),
]


def small(**extra: Any) -> dict[str, Any]:
    """A p2p satellite hop, a Wi-Fi cell and a switched LAN: every medium, 5 nodes."""
    sc: dict[str, Any] = {
        "name": "emu-small", "duration_s": 30,
        "nodes": {
            "gs": {"kind": "ground_station", "position": [0, 0, 10]},
            "sat": {"kind": "satellite"},
            "uav": {"kind": "uav", "position": [50, 0, 80]},
            "edge": {"kind": "edge_server"},
            "sw": {"kind": "switch"},
        },
        "links": [
            {"name": "sat-link", "kind": "satellite", "endpoints": ["gs", "sat"],
             "delay_ms": 10, "rate_mbps": 50},
            {"name": "air", "kind": "air-to-ground", "endpoints": ["uav", "gs"]},
            {"name": "lan-gs", "kind": "wired", "endpoints": ["gs", "sw"]},
            {"name": "lan-edge", "kind": "wired", "endpoints": ["edge", "sw"]},
        ],
        "capture": {"enabled": False},
    }
    sc.update(extra)
    return sc


def ping_rtts(emu: Any, src: str, dst_ip: str, count: int = 10) -> list[float]:
    res = emu.run(src, ["ping", "-n", "-c", str(count), "-i", "0.1", "-W", "1", dst_ip])
    return [float(x.split("time=")[1].split()[0]) for x in res.stdout.splitlines()
            if "time=" in x]


def assert_clean(tag: str) -> None:
    left = leftovers(tag)
    assert not any(left.values()), left
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    ours = [line for line in procs.splitlines() if f"-{tag}/" in line or f"sh{tag}" in line]
    assert not ours, ours


def test_reachability_every_medium_and_teardown(tmp_path: Path) -> None:
    sc = parse(small(), "small")
    with emulated(sc, tmp_path) as emu:
        tag = emu.net.plan.tag
        # the harness already checked all pairs; check real paths and delays on top
        assert len(leftovers(tag)["namespaces"]) == 5  # 4 hosts + the switch namespace
        rtts = ping_rtts(emu, "uav", emu.ip("edge"))  # Wi-Fi -> gs -> OVS LAN
        assert len(rtts) >= 8
        sat = ping_rtts(emu, "uav", emu.ip("sat"))  # Wi-Fi -> gs -> 10 ms satellite hop
        assert sat and min(sat) >= 20.0, sat
        flows = emu.net.ovs.dump_flows(emu.net.plan.switches["sw"].bridge)
        assert "actions=drop" in flows and "dl_dst=" in flows
        ns_root = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        assert "198.18." not in ns_root  # the root namespace has no route into the emulation
    assert_clean(tag)


def test_quickstart_topology_reachability(tmp_path: Path) -> None:
    sc = load(ROOT / "topologies" / "quickstart.yaml", cut_to_s=30)
    with emulated(sc, tmp_path) as emu:
        tag = emu.net.plan.tag
        assert emu.net.timings["pairs"] >= 10 * 9  # every host reached every other host
        rtts = ping_rtts(emu, "user1", emu.ip("cloud1"))
        # user1 -> uav1 -> gs1 -> sat1 -> cloud1: two 6 ms satellite hops each way
        assert rtts and min(rtts) >= 24.0, rtts
    assert_clean(tag)


def test_link_parameter_changes_are_observed(tmp_path: Path) -> None:
    sc = parse(small(), "small")
    with emulated(sc, tmp_path) as emu:
        tag = emu.net.plan.tag
        sat_ip = emu.ip("sat", "sat-link")
        before = min(ping_rtts(emu, "gs", sat_ip))
        # delay compensation removes the emulator's median per-hop time, so the fastest of
        # ten pings may come in a little under 2 x 10 ms
        assert 19.5 <= before < 21.5, before
        emu.net.apply([Change("set", link="sat-link", delay_ms=40.0)])
        after = min(ping_rtts(emu, "gs", sat_ip))
        assert 79.5 <= after < 81.5, after
        emu.net.apply([Change("set", link="sat-link", up=False)])
        assert ping_rtts(emu, "gs", sat_ip, count=5) == []
        emu.net.apply([Change("set", link="sat-link", up=True, delay_ms=5.0)])
        back = min(ping_rtts(emu, "gs", sat_ip))
        assert 9.5 <= back < 11.5, back
        # Wi-Fi: moving the UAV 20 km away cuts the link, moving it back restores it
        emu.net.apply([Change("position", node="uav", xyz=(20000.0, 0.0, 80.0))])
        assert ping_rtts(emu, "uav", emu.ip("gs", "air"), count=5) == []
        emu.net.apply([Change("position", node="uav", xyz=(50.0, 0.0, 80.0))])
        assert ping_rtts(emu, "uav", emu.ip("gs", "air"), count=5)
        log = [json.loads(x) for x in
               (emu.run_dir / "logs" / "link-changes.jsonl").read_text().splitlines()]
        comp = emu.net.timings["delay_compensation_ms"]
        sets = [e["op"] for e in log if e["op"]["op"] == "set"]
        forty = [op for op in sets if op.get("configured_delay_ms", op.get("delay_ms")) == 40.0]
        assert forty and forty[0]["delay_ms"] == pytest.approx(40.0 - comp)
        assert all(e["wall"] >= e["received"] for e in log)
    assert_clean(tag)


def test_asymmetric_point_to_point_rates(tmp_path: Path) -> None:
    """rate_back_mbps: each ns-3 device sends at its own direction's rate, from the scenario
    and from runtime changes (rate_mbps resets both directions, rate_back_mbps then the
    second endpoint's alone)."""
    sc = parse({"name": "emu-asym", "duration_s": 60, "capture": {"enabled": False},
                "nodes": {"term": {"kind": "ground_user"}, "sat": {"kind": "satellite"}},
                "links": [{"name": "gsl", "kind": "satellite", "endpoints": ["term", "sat"],
                           "delay_ms": 5, "rate_mbps": 2, "rate_back_mbps": 8}]}, "asym")
    with emulated(sc, tmp_path) as emu:
        tag = emu.net.plan.tag
        up, down = emu.goodput_mbps("term", "sat", 3), emu.goodput_mbps("sat", "term", 3)
        assert 0.8 * 2 <= up <= 2 * 1.05, up
        assert 0.8 * 8 <= down <= 8 * 1.05, down
        emu.net.apply([Change("set", link="gsl", rate_mbps=6.0)])  # symmetric again
        both = emu.goodput_mbps("sat", "term", 3)
        assert 0.8 * 6 <= both <= 6 * 1.05, both
        emu.net.apply([Change("set", link="gsl", rate_mbps=8.0, rate_back_mbps=1.5)])
        up, down = emu.goodput_mbps("term", "sat", 3), emu.goodput_mbps("sat", "term", 3)
        assert 0.8 * 8 <= up <= 8 * 1.05, up
        assert 0.8 * 1.5 <= down <= 1.5 * 1.05, down
    assert_clean(tag)


def _start_run(tmp_path: Path, scenario: dict[str, Any]) -> tuple[subprocess.Popen[str], Path]:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    results = tmp_path / "results"
    env = {**os.environ, "SAGIN_RESULTS": str(results)}
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "run", "--file", str(path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, results / scenario["name"] / "latest"


def _wait_running(proc: subprocess.Popen[str], run_dir: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        man = run_dir / "manifest.json"
        if man.exists() and json.loads(man.read_text())["status"] == "running":
            return run_dir.resolve().name.rsplit("-", 1)[1]
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("run never reached time zero")


def test_ctrl_c_mid_run_leaves_nothing_and_keeps_results(tmp_path: Path) -> None:
    sc = small(duration_s=60, capture={"enabled": True},
               traffic=[{"name": "p", "kind": "ping", "src": "uav", "dst": "sat",
                         "duration_s": 50}])
    proc, run_dir = _start_run(tmp_path, sc)
    tag = _wait_running(proc, run_dir)
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["status"] == "interrupted"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert metrics["flows"]["p"]["received"] > 0  # what was measured before Ctrl-C is kept
    pcaps = list((run_dir / "pcaps").glob("*.pcap"))
    assert pcaps and all(p.stat().st_size >= 24 for p in pcaps)
    assert_clean(tag)


def test_sigkill_then_make_clean(tmp_path: Path) -> None:
    proc, run_dir = _start_run(tmp_path, small(duration_s=60))
    tag = _wait_running(proc, run_dir)
    proc.kill()
    proc.wait()
    assert leftovers(tag)["namespaces"]  # SIGKILL leaves the network behind ...
    res = subprocess.run([sys.executable, "-m", "testbed", "clean"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and tag in res.stdout, res.stdout + res.stderr
    assert_clean(tag)  # ... and `make clean` removes exactly it
    man = json.loads((run_dir / "manifest.json").read_text())  # and says how the run ended
    assert man["status"] == "killed" and "phase running" in man["error"], man
