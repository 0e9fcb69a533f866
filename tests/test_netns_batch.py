"""Namespaces at scale (issue 23): created in one `ip -batch`, prepared from one thread that
enters each (testbed.lifecycle.netns), configured without `ip -n`, torn down from the ledger.
Each test creates real namespaces under a random tag of its own and removes them by name,
whatever happens."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed.lifecycle import netns
from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.sh import CommandError, ip_batch
from testbed.net.network import NS_SYSCTLS, Network
from testbed.run.cleanup import leftovers, teardown
from testbed.scenario.model import Medium

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
]


def sh(ns: str, cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture
def tag() -> Iterator[str]:
    """A fresh run tag; afterwards every namespace and /etc/netns folder named with it goes
    (only those: other runs share this host)."""
    tag = secrets.token_hex(2)
    try:
        yield tag
    finally:
        ip_batch([f"netns del {ns}" for ns in leftovers(tag)["namespaces"]], force=True)
        for d in Path("/etc/netns").glob(f"sh{tag}-*"):
            shutil.rmtree(d, ignore_errors=True)
        assert leftovers(tag)["namespaces"] == []


def test_prepare_sets_sysctls_and_loopback_inside_only(tag: str) -> None:
    spaces = [f"sh{tag}-n{i}" for i in range(3)]
    sysctls = netns.parse_sysctls(NS_SYSCTLS)
    keys = " ".join(sysctls)
    host = subprocess.run(["sysctl", "-n", *sysctls], capture_output=True, text=True).stdout
    ip_batch(f"netns add {ns}" for ns in spaces)
    netns.prepare(spaces, sysctls)
    for ns in spaces:
        assert sh(ns, f"sysctl -n {keys}").split() == list(sysctls.values())
        assert ",UP," in sh(ns, "ip -br link show lo")
    assert subprocess.run(["sysctl", "-n", *sysctls], capture_output=True,
                          text=True).stdout == host  # the host's own are untouched
    with pytest.raises(CommandError, match=f"sh{tag}-gone"):
        netns.prepare([f"sh{tag}-gone"], sysctls)


def test_checksum_offload_off_as_ethtool_does(tag: str) -> None:
    if shutil.which("ethtool") is None:
        pytest.skip("ethtool missing")
    ns = f"sh{tag}-n0"
    ip_batch([f"netns add {ns}"])
    ip_batch(["link add dev va type veth peer name vb"], ns)
    sh(ns, "ethtool -K va tx off")
    netns.tx_checksum_off({ns: ["vb"]})
    assert sh(ns, "ethtool -k va") == sh(ns, "ethtool -k vb").replace("for vb:", "for va:")
    assert "tx-checksumming: off" in sh(ns, "ethtool -k vb")
    with pytest.raises(CommandError, match="nosuchdev"):
        netns.tx_checksum_off({ns: ["nosuchdev"]})


def test_batches_run_in_their_namespace_and_name_it_on_error(tag: str) -> None:
    spaces = [f"sh{tag}-n{i}" for i in range(2)]
    ip_batch(f"netns add {ns}" for ns in spaces)
    netns.batches("ip", {ns: [f"addr add 198.18.250.{i + 1}/32 dev lo"]
                         for i, ns in enumerate(spaces)})
    netns.batches("tc", {spaces[0]: ["qdisc replace dev lo root tbf rate 1mbit burst 1600 "
                                     "latency 50ms"], spaces[1]: []})
    assert "198.18.250.1/32" in sh(spaces[0], "ip -br addr show lo")
    assert "198.18.250.2/32" in sh(spaces[1], "ip -br addr show lo")
    assert "tbf" in sh(spaces[0], "tc qdisc show dev lo")
    assert "198.18.250." not in subprocess.run(["ip", "-br", "addr"], capture_output=True,
                                               text=True).stdout
    with pytest.raises(CommandError) as err:
        netns.batches("ip", {spaces[1]: ["link set dev nosuchdev up"]})
    assert err.value.argv == ["ip", "-n", spaces[1], "-batch", "-"]


def test_pids_finds_what_runs_inside(tag: str) -> None:
    ns = f"sh{tag}-n0"
    ip_batch([f"netns add {ns}"])
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "30"])
    try:
        for _ in range(100):  # until ip has entered the namespace and exec'd sleep
            if netns.pids([ns, f"sh{tag}-gone"]) == {ns: [proc.pid]}:
                break
            subprocess.run(["sleep", "0.02"])
        assert netns.pids([ns, f"sh{tag}-gone"]) == {ns: [proc.pid]}
    finally:
        proc.kill()
        proc.wait()


def _network(tag: str, n: int, tmp_path: Path) -> Network:
    """A Network with just what _namespaces and _configure read: n nodes, in pairs joined by
    a veth (a wired link without switches)."""
    nodes = [f"n{i}" for i in range(n)]
    spaces = {v: f"sh{tag}-{v}" for v in nodes}
    prim = {v: f"198.18.0.{i + 1}" for i, v in enumerate(nodes)}
    eps: dict[str, list[SimpleNamespace]] = {v: [] for v in nodes}
    segs = {}
    for k in range(0, n - 1, 2):
        ends = [SimpleNamespace(node=nodes[k + j], link=f"l{k}", ifname="eth0",
                                root_name=f"s{tag}e{k + j}", ip=f"198.18.1.{k + j + 1}",
                                prefixlen=24, mac=None) for j in (0, 1)]
        for e in ends:
            eps[e.node].append(e)
        segs[f"l{k}"] = SimpleNamespace(medium=Medium.ETHERNET, switches=[], members=ends)
    plan = SimpleNamespace(
        switch_netns=f"sh{tag}.switch", namespaces=spaces, primary_ip=prim,
        routes={v: [] for v in nodes}, endpoints=lambda node=None: eps[node],
        segment_of=lambda link: segs[link],
        hosts_file=lambda: "127.0.0.1 localhost\n" + "".join(f"{prim[v]} {v}\n" for v in nodes))
    ledger = Ledger(run_id=f"test-{tag}", tag=tag, scenario="netns", results_dir=str(tmp_path))
    ledger.path = tmp_path / "ledger.json"
    ledger.save()
    net = Network.__new__(Network)
    net.plan, net.ledger, net.engines, net.macs = plan, ledger, {}, {}
    net.wired, net.share = {}, None  # a single-host run
    net.sc = SimpleNamespace(link=lambda name: SimpleNamespace(
        delay_ms=None, rate_mbps=8.0, loss_pct=None, queue_packets=None))
    return net


def test_network_namespaces_configure_and_teardown(tag: str, tmp_path: Path) -> None:
    net = _network(tag, 6, tmp_path)
    try:
        net._namespaces()
        recorded = Ledger.read(tmp_path / "ledger.json")
        assert recorded.namespaces == [f"sh{tag}.switch"] + [f"sh{tag}-n{i}" for i in range(6)]
        assert recorded.etc_netns == [f"/etc/netns/sh{tag}-n{i}" for i in range(6)]
        ip_batch(f"link add s{tag}e{k} netns sh{tag}-n{k} type veth peer name s{tag}e{k + 1} "
                 f"netns sh{tag}-n{k + 1}" for k in (0, 2, 4))
        net._configure()
        for i in range(6):
            ns = f"sh{tag}-n{i}"
            assert sh(ns, "cat /etc/hostname") == f"n{i}\n"
            assert sh(ns, "cat /etc/hosts") == net.plan.hosts_file()
            assert sh(ns, "sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.disable_ipv6"
                      ).split() == ["1", "1"]
            assert f"198.18.0.{i + 1}/32" in sh(ns, "ip -br addr show lo")
            assert f"198.18.1.{i + 1}/24" in sh(ns, "ip -br addr show eth0")
            assert "tbf" in sh(ns, "tc qdisc show dev eth0")  # the link's 8 Mbit/s
        assert ",UP," in sh(f"sh{tag}.switch", "ip -br link show lo")
    finally:
        teardown(Ledger.read(tmp_path / "ledger.json"))
    assert leftovers(tag)["namespaces"] == [] and leftovers(tag)["etc_netns"] == []


def test_failed_creation_is_recorded_first_and_torn_down(tag: str, tmp_path: Path) -> None:
    """A namespace that cannot be created stops the build with the batch's error; all of
    them were in the ledger before, so teardown finds whatever was created."""
    net = _network(tag, 4, tmp_path)
    ip_batch([f"netns add sh{tag}-n2"])  # in the way
    try:
        with pytest.raises(CommandError, match=f"sh{tag}-n2"):
            net._namespaces()
        assert len(Ledger.read(tmp_path / "ledger.json").namespaces) == 5
        assert set(leftovers(tag)["namespaces"]) == {f"sh{tag}.switch", f"sh{tag}-n0",
                                                     f"sh{tag}-n1", f"sh{tag}-n2"}
    finally:
        counts = teardown(Ledger.read(tmp_path / "ledger.json"))
    assert counts["namespaces"] == 5
    assert leftovers(tag)["namespaces"] == []
