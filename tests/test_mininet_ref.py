"""The Mininet reference on our own topology (testbed/bench/mininet_ref.py, measure_plan)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from testbed.bench import mininet_ref


def _mininet_importable() -> bool:
    try:
        return subprocess.run([mininet_ref.SYSTEM_PYTHON, "-c", "import mininet.net"],
                              capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_plan_helper_input_is_the_plan() -> None:
    """What the helper gets: every node, every segment's members with the plan's names and
    addresses, the plan's route lines, user0 -> the last edge server, 10 seeded pairs."""
    _, plan = mininet_ref.plan_for(25)
    data = mininet_ref.plan_helper_input(plan)
    assert data["nodes"] == plan.primary_ip
    assert data["src"] == "user0" and data["dst"] == "edge1"  # 25 nodes: edge0, edge1
    assert sum(len(s) for s in data["segments"]) == len(plan.endpoints())
    assert {len(s) for s in data["segments"]} >= {2, 3}  # p2p links and Wi-Fi cells
    m = plan.segments[0].members[0]
    assert data["segments"][0][0] == [m.node, m.ifname, m.ip, m.prefixlen]
    assert data["routes"]["user0"] == [r.line() for r in plan.routes["user0"]]
    assert len(data["pairs"]) == 10 and all(a != b for a, b in data["pairs"])
    assert data["pairs"] == mininet_ref.plan_helper_input(plan)["pairs"]  # seeded


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0, reason="Mininet needs root")
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="Open vSwitch not installed")
@pytest.mark.skipif(not _mininet_importable(),
                    reason=f"{mininet_ref.SYSTEM_PYTHON} cannot import mininet "
                           "(apt install mininet)")
def test_measure_plan_25() -> None:
    r = mininet_ref.measure_plan(25, timeout_s=120)
    assert "error" not in r, r["error"]
    assert r["first_packet_s"] is not None, "user0 never reached the last edge server"
    assert r["ping_sample"]["loss_pct"] == 0, r["ping_sample"]["lost"]
    assert r["route_errors"]["hosts"] == 0, r["route_errors"]
    # every planned route installed, plus one connected route per interface
    assert r["routes_installed"]["total"] == (r["plan"]["routes_total"]
                                              + r["plan"]["interfaces"])
    assert not r["cleaned_with_mn_c"]
    # nothing of Mininet's or OVS's left; the machine-wide counts (netns, links, veths) also
    # move with other emulations running beside this one, so they are checked by name instead
    left = {k: v for k, v in r["leftovers"].items()
            if k in ("mininet_procs", "ovs_bridges", "ovs_procs")}
    assert left == {}, r["leftovers"]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert not re.search(r"\bs\d+-eth\d+", links), "a bridge port's veth is left"
