"""The proactive L2 app against a real, private Open vSwitch.

A private ovsdb-server/ovs-vswitchd pair (userspace datapath, own run directory) keeps the test
away from any system OVS and from the kernel datapath module.  Two bridges joined by a veth pair
each carry one namespace; the test waits for the controller's ready lines, then pings across.

ovs-vswitchd, the controller and the switch-side veth ends live in a namespace of their own
rather than the root one: every userspace-datapath vswitchd opens a tap called "ovs-netdev", so
a second instance in the same namespace (e.g. a testbed run going on at the same time) fails
with "creating tap device failed: Device or resource busy" and no bridge comes up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.net.sdn.l2_proactive import Topology, register_opts

pytestmark = [pytest.mark.emulation]

REPO = Path(__file__).resolve().parent.parent
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl",
         "ip", "ethtool", "ping", "ss")
READY_RE = re.compile(r"^sagin: dpid ([0-9a-f]{16}) ready: (\d+) flows$")

# Per-run tag so two runs (or a leftover from a killed one) cannot collide on kernel names.
TAG = f"{os.getpid() & 0xFFFF:04x}"
BR1, BR2 = f"sdnt{TAG}b1", f"sdnt{TAG}b2"
TRUNK1, TRUNK2 = f"sdnt{TAG}t1", f"sdnt{TAG}t2"
HOST1, HOST2 = f"sdnt{TAG}h1", f"sdnt{TAG}h2"
NS1, NS2 = f"sdntest-{TAG}-1", f"sdntest-{TAG}-2"
NSSW = f"sdntest-{TAG}-sw"  # switch side: vswitchd, controller, bridge ports
DPID1, DPID2 = "0000000000005a01", "0000000000005a02"
MAC1, MAC2 = "02:5a:00:00:00:01", "02:5a:00:00:00:02"
IP1, IP2 = "198.18.200.1", "198.18.200.2"

TOPOLOGY = {"switches": [
    {"name": "sw1", "dpid": DPID1,
     "ports": [{"port_no": 1, "peer": "h1", "peer_mac": MAC1},
               {"port_no": 2, "peer": "sw2", "peer_mac": None}]},
    {"name": "sw2", "dpid": DPID2,
     "ports": [{"port_no": 1, "peer": "sw1", "peer_mac": None},
               {"port_no": 2, "peer": "h2", "peer_mac": MAC2}]},
]}


def run(*cmd: str, check: bool = True, timeout: float = 30,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command and keep its output for assertion messages."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def wait_for(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll instead of sleeping a fixed time: start-up speed varies a lot between hosts."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, n: int = 40) -> str:
    """Log excerpt for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"<{path} unreadable>"


def free_port() -> int:
    """An unused loopback port for the controller (small race accepted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL: teardown must finish even if a daemon hangs."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class Bed:
    dir: Path
    env: dict[str, str]
    ctl: subprocess.Popen[bytes]
    port: int

    @property
    def db(self) -> str:
        return f"--db=unix:{self.dir}/db.sock"

    def vsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ovs-vsctl", self.db, "--timeout=20", *args, env=self.env, check=check)

    def flows(self, bridge: str) -> list[str]:
        out = run("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "--no-names", "dump-flows",
                  f"unix:{self.dir}/{bridge}.mgmt").stdout
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    def ready_lines(self) -> list[str]:
        path = self.dir / "ready"
        return path.read_text().splitlines() if path.exists() else []

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{tail(self.dir / name)}"
                         for name in ("controller.log", "controller.err", "vswitchd.log"))


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, private Open vSwitch)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (install openvswitch-switch, iproute2...)"
    if not SCHEMA.exists():
        return f"missing OVS schema {SCHEMA}"
    return None


def _cleanup_kernel() -> None:
    """Idempotent: runs before building (leftovers of a killed run) and in teardown.  Deleting
    the namespaces destroys every veth (both ends) and tap the test created."""
    for ns in (NS1, NS2, NSSW):
        if Path(f"/run/netns/{ns}").exists():
            run("ip", "netns", "del", ns, check=False)


def in_sw(*cmd: str) -> list[str]:
    """Prefix a command so it runs in the switch-side namespace."""
    return ["ip", "netns", "exec", NSSW, *cmd]


@pytest.fixture
def bed() -> Iterator[Bed]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    d = Path(tempfile.mkdtemp(prefix="sdnt-", dir="/tmp"))  # short: unix socket paths
    env = {**os.environ, "OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
    with ExitStack() as stack:
        if not os.environ.get("SDNT_KEEP"):  # SDNT_KEEP=1 keeps the logs for post-mortems
            stack.callback(shutil.rmtree, d, ignore_errors=True)
        stack.callback(_cleanup_kernel)
        _cleanup_kernel()
        run("ip", "netns", "add", NSSW)
        run(*in_sw("ip", "link", "set", "lo", "up"))  # the OpenFlow channel is on 127.0.0.1

        # Controller first, so switches find it on their first connection attempt instead of
        # sitting in OVS's reconnect back-off.
        port = free_port()
        topo = d / "topology.json"
        topo.write_text(json.dumps(TOPOLOGY))
        ctl = subprocess.Popen(
            in_sw(sys.executable, "-m", "testbed.net.sdn.launch", "--topology", str(topo),
             "--port", str(port), "--ready-file", str(d / "ready"),
             "--log-file", str(d / "controller.log")),
            cwd=REPO, stdout=stack.enter_context(open(d / "controller.out", "wb")),
            stderr=stack.enter_context(open(d / "controller.err", "wb")))
        stack.callback(stop, ctl)

        run("ovsdb-tool", "create", str(d / "conf.db"), str(SCHEMA))
        ovsdb = subprocess.Popen(
            ["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d}/db.sock",
             f"--unixctl={d}/ovsdb.ctl", f"--pidfile={d}/ovsdb.pid",
             f"--log-file={d}/ovsdb.log"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(stop, ovsdb)
        wait_for(lambda: (d / "db.sock").exists(), 10, "ovsdb-server socket")
        run("ovs-vsctl", f"--db=unix:{d}/db.sock", "--no-wait", "init", env=env)

        vswitchd = subprocess.Popen(
            in_sw("ovs-vswitchd", f"unix:{d}/db.sock", f"--unixctl={d}/vswitchd.ctl",
                  f"--pidfile={d}/vswitchd.pid", f"--log-file={d}/vswitchd.log"),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(stop, vswitchd)
        # "exit --cleanup" removes the datapath and its persistent tap devices (ovs-netdev, one
        # per bridge); a plain SIGTERM would leave them (the namespace deletion would too).
        stack.callback(lambda: run("ovs-appctl", "-t", f"{d}/vswitchd.ctl", "exit", "--cleanup",
                                   check=False, timeout=10))
        wait_for(lambda: (d / "vswitchd.ctl").exists(), 10, "ovs-vswitchd control socket")

        bed = Bed(d, env, ctl, port)
        stack.callback(lambda: [bed.vsctl("--if-exists", "del-br", b, check=False)
                                for b in (BR1, BR2)])
        wait_for(lambda: run(*in_sw("ss", "-Hltn", f"sport = :{port}")).stdout.strip() != "",
                 30,
                 f"controller listening on 127.0.0.1:{port}\n{bed.logs()}")
        _build_network(bed)
        yield bed


def _build_network(bed: Bed) -> None:
    for ns, host, mac, ip in ((NS1, HOST1, MAC1, IP1), (NS2, HOST2, MAC2, IP2)):
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host, "netns", NSSW, "type", "veth",
            "peer", "name", "eth0", "netns", ns)
        nsx = ("ip", "netns", "exec", ns)
        run(*nsx, "ip", "link", "set", "eth0", "address", mac)
        run(*nsx, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        run(*nsx, "ip", "link", "set", "lo", "up")
        run(*nsx, "ip", "link", "set", "eth0", "up")
        # The userspace datapath copies frames between AF_PACKET sockets and never fills in a
        # checksum the sender left to "hardware": with offload on, TCP/UDP arrive corrupt.
        run(*nsx, "ethtool", "-K", "eth0", "tx", "off")
    run(*in_sw("ip", "link", "add", TRUNK1, "type", "veth", "peer", "name", TRUNK2))
    for link in (TRUNK1, TRUNK2, HOST1, HOST2):
        run(*in_sw("ethtool", "-K", link, "tx", "off"))
        run(*in_sw("ip", "link", "set", link, "up"))

    target = f"tcp:127.0.0.1:{bed.port}"
    for br, dpid, ports in ((BR1, DPID1, ((HOST1, 1), (TRUNK1, 2))),
                            (BR2, DPID2, ((TRUNK2, 1), (HOST2, 2)))):
        cmd = ["add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
               "protocols=OpenFlow13", "fail_mode=secure", f"other-config:datapath-id={dpid}",
               "other-config:disable-in-band=true"]
        for name, ofport in ports:
            cmd += ["--", "add-port", br, name, "--", "set", "interface", name,
                    f"ofport_request={ofport}"]
        cmd += ["--", "set-controller", br, target]
        bed.vsctl(*cmd)


def test_ping_through_proactive_flows(bed: Bed) -> None:
    t0 = time.monotonic()
    wait_for(lambda: len(bed.ready_lines()) >= 2, 30, f"two ready lines\n{bed.logs()}")
    ready = {}
    for line in bed.ready_lines():
        m = READY_RE.match(line)
        assert m, f"malformed ready line {line!r}"
        ready[m.group(1)] = int(m.group(2))
    assert ready == {DPID1: 5, DPID2: 5}, bed.ready_lines()
    assert "ready: 5 flows" in (bed.dir / "controller.log").read_text()
    assert (bed.dir / "controller.out").read_text() == "", "launcher must keep stdout quiet"
    print(f"both switches ready {time.monotonic() - t0:.2f}s after the bridges were created")

    group = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"
    assert bed.flows(BR1) == sorted([
        "priority=0 actions=drop",
        f"priority=100,in_port=1,{group} actions=output:2",
        f"priority=100,in_port=2,{group} actions=output:1",
        f"priority=200,dl_dst={MAC1} actions=output:1",
        f"priority=200,dl_dst={MAC2} actions=output:2",
    ])
    assert bed.flows(BR2) == sorted([
        "priority=0 actions=drop",
        f"priority=100,in_port=1,{group} actions=output:2",
        f"priority=100,in_port=2,{group} actions=output:1",
        f"priority=200,dl_dst={MAC1} actions=output:1",
        f"priority=200,dl_dst={MAC2} actions=output:2",
    ])

    res = run("ip", "netns", "exec", NS1, "ping", "-c", "3", "-W", "1", IP2, check=False)
    assert res.returncode == 0, f"{res.stdout}{res.stderr}\n{bed.logs()}"
    assert " 0% packet loss" in res.stdout, res.stdout

    # The supervisor stops the controller with SIGTERM and expects a clean status.
    bed.ctl.send_signal(signal.SIGTERM)
    assert bed.ctl.wait(10) == 0, bed.logs()


# --- planner checks that need no switch -------------------------------------------------------

def _triangle() -> Topology:
    names = ("s1", "s2", "s3")
    switches = []
    for i, name in enumerate(names, 1):
        others = [n for n in names if n != name]
        switches.append({"name": name, "dpid": f"{i:016x}", "ports": [
            {"port_no": 1, "peer": f"h{i}", "peer_mac": f"02:00:00:00:00:0{i}"},
            {"port_no": 2, "peer": others[0], "peer_mac": None},
            {"port_no": 3, "peer": others[1], "peer_mac": None}]})
    return Topology.from_dict({"switches": switches})


def test_loop_is_cut_by_spanning_tree() -> None:
    topo = _triangle()
    assert topo.tree.number_of_edges() == 2
    cut = [(a, p) for a, ports in topo.trunk_ports.items() for p, b in ports.items()
           if (a, b) not in topo.tree_port]
    assert len(cut) == 2  # both ends of the one non-tree link
    for sw in topo.switches:
        plan = topo.plan(sw)
        for in_port, outs in plan.flood.items():
            assert (sw, in_port) not in cut and not {(sw, p) for p in outs} & set(cut)
        # Follow unicast forwarding hop by hop: every host reachable, no loop.
        for mac, (dst_sw, dst_port) in topo.hosts.items():
            here, hops = sw, 0
            while True:
                out = topo.plan(here).unicast[mac]
                if here == dst_sw:
                    assert out == dst_port
                    break
                here = topo.trunk_ports[here][out]
                hops += 1
                assert hops < 3


def test_example_counts_and_reregistration() -> None:
    register_opts()  # second registration (the import did the first) must be harmless
    topo = Topology.from_dict(TOPOLOGY)
    assert topo.plan("sw1").flow_count == 5
    assert topo.name_of(int(DPID2, 16)) == "sw2"
    assert topo.name_of(0xDEAD) is None
