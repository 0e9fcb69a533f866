"""Multi-host emulation's cost, on stand-in hosts (testbed.cluster.standin: namespaces with a
real sshd on an underlay LAN):

* the added delay of a cross-host link: an ns-3 point-to-point link (delay D) between node a
  on host h1 and node b, once with b on h1 (single host) and once with b on h2 - b's end of
  the link attached in h1's gateway namespace and carried by VXLAN (testbed.cluster.join);
  median RTT difference;
* the maximum rate of the VXLAN path: iperf3 (TCP, 3 s) between a node on h1 and a node on h2
  through the real path of a remote end (veth -> gateway bridge -> VXLAN -> underlay ->
  VXLAN in the node), next to the same pair joined by a plain veth on one host;
* the start time (command -> time zero) of the quickstart split over two hosts vs on one,
  through the same coordinator and share code.

Everything a host does is done over SSH on that host (the same login code as the boards).
What the stand-in cannot show: the underlay here is a veth/bridge inside one kernel (no NIC,
no wire, no switch), and both "hosts" share this machine's CPUs; on two real machines the
added delay grows by the network's own RTT (typically 0.05-0.2 ms on a LAN) and the rate is
bounded by the NIC and the per-packet cost of VXLAN on each CPU.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.cluster import join, remote
from testbed.cluster.split import end_mtu, gateway_netns
from testbed.scenario.cluster import Host

A_IP, B_IP = "198.18.1.1", "198.18.1.2"


@dataclass
class Pair:
    """Two nodes a (on host ha) and b (on hb) joined by one link, a's host emulating it."""

    tag: str
    ha: Host
    hb: Host
    under_a: str  # underlay addresses
    under_b: str
    cross: bool
    namespaces: list[str] = field(default_factory=list)

    @property
    def a(self) -> str:
        return f"sh{self.tag}-a"

    @property
    def b(self) -> str:
        return f"sh{self.tag}-b"

    @property
    def gw(self) -> str:
        return gateway_netns(self.tag)

    def b_side(self) -> str:
        """Where the emulating host attaches b's end: its gateway namespace when b is
        remote, b's own namespace otherwise."""
        return self.gw if self.cross else self.b


def _ns_script(spaces: list[str]) -> str:
    return "set -e\n" + "".join(f"ip netns add {ns}\nip -n {ns} link set lo up\n"
                                for ns in spaces)


def make_namespaces(p: Pair, ledger: Any) -> None:
    on_a = [p.a] + ([p.gw] if p.cross else [p.b])
    on_b = [p.b] if p.cross else []
    ledger.add_many("namespaces", on_a + on_b)  # before they exist
    remote.sh(p.ha, _ns_script(on_a), what="namespaces")
    if on_b:
        remote.sh(p.hb, _ns_script(on_b), what="namespaces")


def join_b(p: Pair, dev_in_gw: str, node_dev: str, vni: int) -> None:
    """b's end: bridged to a VXLAN in h1's gateway namespace; a VXLAN named `node_dev` in b."""
    mtu = end_mtu()
    t_a = join.Tunnel(vni, p.under_a, p.under_b)
    t_b = join.Tunnel(vni, p.under_b, p.under_a)
    root, gw = join.gateway_batches(p.gw, dev_in_gw, p.tag, t_a, mtu)
    remote.sh(p.ha, join.as_script([(None, root), (p.gw, gw)]), what="gateway join")
    root, node = join.joined_batches(p.b, node_dev, t_b, mtu)
    remote.sh(p.hb, join.as_script([(None, root), (p.b, node)]), what="node join")


def ping(h: Host, ns: str, dst: str, count: int = 40, interval: float = 0.05) -> list[float]:
    out = remote.sh(h, f"ip netns exec {ns} ping -n -q -c 3 -i 0.05 {dst} >/dev/null; "
                    f"ip netns exec {ns} ping -n -c {count} -i {interval} {dst}",
                    timeout=60, what="ping")
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]


def iperf(ha: Host, a_ns: str, hb: Host, b_ns: str, dst: str, seconds: int = 3) -> float:
    """TCP goodput b -> a in Mb/s (server in a, started over SSH on a's host)."""
    remote.sh(ha, f"ip netns exec {a_ns} iperf3 -s -1 -D -B {dst}", what="iperf3 server")
    time.sleep(0.3)
    out = remote.sh(hb, f"ip netns exec {b_ns} iperf3 -c {dst} -t {seconds} -J",
                    timeout=seconds + 30, what="iperf3 client")
    return round(json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6, 1)


def ns3_pair(ha: Host, hb: Host, under: dict[str, str], cross: bool, delay_ms: float,
             rate_mbps: float, work: Path) -> dict[str, Any]:
    """One ns-3 p2p link a-b, b local or on the other host; RTTs of b -> a, then teardown."""
    from testbed.engines.base import EngineEnd, EngineLink
    from testbed.engines.ns3 import Ns3Engine
    from testbed.lifecycle.ledger import Ledger
    from testbed.lifecycle.supervisor import Supervisor
    from testbed.run.cleanup import teardown
    from testbed.scenario.model import Medium

    tag = secrets.token_hex(2)
    p = Pair(tag, ha, hb if cross else ha, under[ha.name], under[hb.name], cross)
    ledger = Ledger.create(f"cluster-pair-{tag}", tag, "cluster-pair", work)
    sup = Supervisor(ledger, work / f"logs-{tag}")
    engine = Ns3Engine(sup)
    out: dict[str, Any] = {"cross": cross}
    try:
        engine.start(work / f"state-{tag}")
        make_namespaces(p, ledger)
        ta, tb = f"s{tag}t1", f"s{tag}t2"
        link = EngineLink("l1", Medium.P2P, [EngineEnd("a", p.a, ta, "eth0"),
                                              EngineEnd("b", p.b_side(), tb, "eth0")],
                          delay_ms=delay_ms, rate_mbps=rate_mbps, queue_packets=200)
        t0 = time.monotonic()
        macs = engine.attach([link], 1)
        out["attach_s"] = round(time.monotonic() - t0, 3)
        mtu = end_mtu() if cross else 1500
        if cross:
            t0 = time.monotonic()
            join_b(p, tb, tb, vni=4000)
            out["join_s"] = round(time.monotonic() - t0, 3)
        # configured like Network._configure does a p2p end: name, engine MAC, address,
        # static neighbour; the whole link at the joined end's MTU
        cfg = {p.a: (ta, macs[ta], A_IP, B_IP, macs[tb], p.ha),
               p.b: (tb, macs[tb], B_IP, A_IP, macs[ta], p.hb)}
        for ns, (dev, mac, ip, peer, pmac, host) in cfg.items():
            remote.sh(host, join.as_script([(ns, [
                f"link set dev {dev} name eth0", f"link set dev eth0 address {mac}",
                f"link set dev eth0 mtu {mtu}", f"addr add {ip}/24 dev eth0",
                "link set dev eth0 up",
                f"neigh replace {peer} lladdr {pmac} dev eth0 nud permanent"])]),
                what="configure")
        engine.configured()
        rtts = ping(p.hb, p.b, A_IP)
        out.update(rtt_ms=rtts, median_ms=round(statistics.median(rtts), 3),
                   loss=40 - len(rtts), goodput_mbps=iperf(p.ha, p.a, p.hb, p.b, A_IP))
    finally:
        engine.stop()
        sup.stop_all()
        teardown(ledger)
    return out


def veth_pair(ha: Host, hb: Host, under: dict[str, str], cross: bool,
              work: Path) -> dict[str, Any]:
    """Node a and b joined by a veth (same host), or by the remote-end path (a's veth into
    h1's gateway bridge, VXLAN to b on h2): iperf3 b -> a, ping."""
    from testbed.lifecycle.ledger import Ledger
    from testbed.run.cleanup import teardown

    tag = secrets.token_hex(2)
    p = Pair(tag, ha, hb if cross else ha, under[ha.name], under[hb.name], cross)
    ledger = Ledger.create(f"cluster-veth-{tag}", tag, "cluster-veth", work)
    out: dict[str, Any] = {"cross": cross}
    try:
        make_namespaces(p, ledger)
        va, vb = f"s{tag}v1", f"s{tag}v2"
        remote.sh(ha, f"ip link add {va} netns {p.a} type veth peer name {vb} "
                      f"netns {p.b_side()}", what="veth")
        mtu = end_mtu() if cross else 1500
        if cross:
            join_b(p, vb, vb, vni=4001)
        for ns, dev, ip, host in ((p.a, va, A_IP, p.ha), (p.b, vb, B_IP, p.hb)):
            remote.sh(host, join.as_script([(ns, [
                f"link set dev {dev} name eth0", f"link set dev eth0 mtu {mtu}",
                f"addr add {ip}/24 dev eth0", "link set dev eth0 up"])]), what="configure")
        rtts = ping(p.hb, p.b, A_IP, count=100, interval=0.01)
        out.update(median_ms=round(statistics.median(rtts), 3),
                   goodput_mbps=iperf(p.ha, p.a, p.hb, p.b, A_IP))
    finally:
        teardown(ledger)
    return out


def start_times(cluster: Any, work: Path, repeats: int = 2) -> dict[str, Any]:
    """Command -> time zero of the quickstart (5 s) through the coordinator, everything on h1
    vs split by the partitioner over h1 and h2 (alternated, `repeats` each)."""
    from testbed.cluster.coordinator import run_split
    from testbed.scenario import load

    path = Path(__file__).resolve().parents[2] / "topologies" / "quickstart.yaml"
    sc = load(path, cut_to_s=5)
    out: dict[str, list[float]] = {"single": [], "split": []}
    per_host: dict[str, Any] = {}
    for _ in range(repeats):
        for which, place in (("single", dict.fromkeys(sc.nodes, "h1")), ("split", None)):
            res = run_split(path, cluster, sc=sc, placement=place, results_base=work,
                            log=lambda _: None)
            if res.status != "done":
                raise RuntimeError(f"{which} run failed: {res.done}")
            out[which].append(res.timings["command_to_time_zero_s"])
            per_host[which] = {h: {k: (r.get("timings") or {}).get(k)
                                   for k in ("build_s", "ns3_ready_s", "cluster_join_s",
                                             "health_s")}
                               for h, r in res.ready.items()}
    return {"command_to_time_zero_s": out,
            "median_s": {k: round(statistics.median(v), 2) for k, v in out.items()},
            "last_per_host_s": per_host}


def run(console: Console) -> dict[str, Any]:
    from testbed.cluster.standin import StandInHosts
    from testbed.hil.boardsim import clean_stale

    clean_stale()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    out: dict[str, Any] = {"load_average_at_start": os.getloadavg(),
                           "link": "ns-3 p2p, 10 ms one way, 100 Mbit/s", "underlay":
                           "stand-in hosts: veths on a Linux bridge in one kernel, MTU 1500"}
    with StandInHosts(2) as hs:
        h1, h2 = hs.cluster().hosts
        console.print("ns-3 link, both ends on h1 ...")
        out["ns3_single"] = ns3_pair(h1, h2, hs.underlay, False, 10.0, 100.0, work)
        console.print("ns-3 link, b on h2 through VXLAN ...")
        out["ns3_cross"] = ns3_pair(h1, h2, hs.underlay, True, 10.0, 100.0, work)
        console.print("veth vs the VXLAN path, iperf3 ...")
        out["veth_single"] = veth_pair(h1, h2, hs.underlay, False, work)
        out["vxlan_path"] = veth_pair(h1, h2, hs.underlay, True, work)
        console.print("quickstart on one host vs split over two (start time) ...")
        out["start"] = start_times(hs.cluster(), work)
        out["leftovers"] = hs.leftovers()
    out["added_delay_ms"] = round(out["ns3_cross"]["median_ms"]
                                  - out["ns3_single"]["median_ms"], 3)
    out["vxlan_path_added_rtt_ms"] = round(out["vxlan_path"]["median_ms"]
                                           - out["veth_single"]["median_ms"], 3)
    for k in ("ns3_single", "ns3_cross"):
        out[k].pop("rtt_ms", None)
    console.print_json(data=out)
    return out
