"""The live network, built on this host from a NetworkPlan.

Order matters and is chosen for speed and safety:
  1. link engines start first (ns-3's ~10 s import overlaps everything below);
  2. namespaces, veths, Open vSwitch bridges and the os-ken controller come up;
  3. engines attach their endpoints (ns-3 taps land directly in their namespaces);
  4. each namespace is configured in one `ip -batch` (names, MACs, addresses, static
     neighbours for point-to-point links, routes).
Every resource is written to the ledger before it is created.  Teardown is
testbed.run.cleanup.teardown(ledger), the same code `make clean` uses.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from testbed.devices import cgroups
from testbed.devices.profiles import lookup as lookup_profile
from testbed.devices.profiles import quota_for
from testbed.engines import features
from testbed.engines.base import Change, EngineEnd, EngineLink, LinkEngine, wait_until
from testbed.engines.hwsim import HwsimEngine, hwsim_problems
from testbed.engines.netem import NetemEngine, netem_args
from testbed.engines.ns3 import Ns3Engine, shard_links
from testbed.lifecycle import netns
from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.sh import ip_batch, run
from testbed.lifecycle.supervisor import Supervisor
from testbed.net.plan import NetworkPlan, RouteCache, compute_routes, host_graph
from testbed.net.routing import InstallReport, RouteInstaller
from testbed.net.sdn.controller import SdnController
from testbed.net.switching import OvsSwitches
from testbed.scenario.errors import Problem, ScenarioError
from testbed.scenario.model import Medium, Scenario, WifiSettings
from testbed.workloads import Registry

NS_SYSCTLS = (
    "net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 "
    "net.ipv6.conf.default.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 "
    "net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0 "
    "net.ipv4.conf.default.send_redirects=0"
)


# tcpdump processes a run may start (one per captured link end, ~8 MB resident each)
MAX_CAPTURES = 1000


def preflight(sc: Scenario, source: str) -> None:
    """Host-dependent checks, before anything is created."""
    problems = []
    if not features.has_netem():
        for i, link in enumerate(sc.links):
            if link.carried_by is Medium.ETHERNET and (link.delay_ms or link.loss_pct):
                field = "delay_ms" if link.delay_ms else "loss_pct"
                problems.append(Problem(
                    f"links[{i}].{field}", "a wired link through Open vSwitch needs tc netem "
                    "for delay or loss, and this kernel has no sch_netem",
                    "use medium: p2p on this link (ns-3 emulates it) or run on a host with "
                    "sch_netem"))
    if sc.engines.wifi == "hwsim" and any(
            link.carried_by is Medium.WIFI for link in sc.links):
        problems += hwsim_problems(sc)
    if sc.engines.switch == "kernel" and sc.switches() and not features.has_ovs_kernel():
        problems.append(Problem("engines.switch", "the Open vSwitch kernel datapath was asked "
                                "for, but this kernel has no openvswitch module",
                                "use switch: auto or userspace (the netdev datapath)"))
    if sc.engines.p2p == "netem" and not features.has_netem():
        problems.append(Problem("engines.p2p", "netem requested but this kernel has no "
                                "sch_netem", "use p2p: auto or ns3"))
    profiled = [name for name, node in sc.nodes.items() if node.profile]
    if profiled and cgroups.detect() is None:
        problems.append(Problem(
            f"nodes.{profiled[0]}.profile", "device profiles need a cgroup cpu controller "
            "(v1 'cpu' hierarchy or cgroup2 listing cpu) and this host has none",
            "remove profile from the nodes, or run on a host with cgroups mounted"))
    captured = sum(len(link.endpoints) for link in sc.links
                   if sc.capture.links == "all" or link.name in sc.capture.links)
    if sc.capture.enabled and captured > MAX_CAPTURES:
        problems.append(Problem(
            "capture.links", f"{captured} link ends would each get a tcpdump process (about "
            f"8 MB each, {captured * 8 / 1024:.0f} GB in all); this many are not captured",
            f"list the links to capture in capture.links (at most {MAX_CAPTURES} ends), or "
            "set capture.enabled: false"))
    for _, check in Registry.installed().calls("preflight"):
        problems += check(sc)
    if problems:
        raise ScenarioError(source, problems)


def reference_speed(setting: str | float, profiles: list[Any], host_cores: int) -> float:
    """`auto`: the smallest scale at which the fastest profiled device fits this host's cores
    (never below 1.0: a host core is then a reference core, as with the default)."""
    if setting != "auto":
        return float(setting)
    need = max((p.total_speed for p in profiles), default=0.0)
    return round(max(1.0, need / host_cores), 4)


@dataclass
class ShareView:
    """This host's part of a multi-host run (testbed.cluster; docs/multi-host.md).  The plan
    handed to Network then holds only this host's nodes (namespaces, routes) and switches;
    segments keep every member.  A link not in `links` is emulated on another host; a member
    of a local link whose node is not here (a remote end) is attached in `gateway` instead
    of a node namespace; `before_configure` (after the engines attached, before addresses)
    joins the cross-host ends with VXLAN and merges the MACs the other hosts' engines gave
    their ends into Network.macs."""

    links: frozenset[str]
    gateway: str
    before_configure: Callable[[Network], None]
    mtu: dict[str, int] = field(default_factory=dict)  # link -> MTU of its ends (crossing)
    static_p2p: bool = True  # point-to-point ends need static neighbours (ns-3)


class Network:
    def __init__(self, sc: Scenario, plan: NetworkPlan, ledger: Ledger, sup: Supervisor,
                 state_dir: Path, share: ShareView | None = None) -> None:
        self.sc, self.plan, self.ledger, self.sup = sc, plan, ledger, sup
        self.share = share  # None: a single-host run, everything is here
        self.state_dir = state_dir
        self.timings: dict[str, float] = {}
        self.engines: dict[Medium, LinkEngine] = {}
        self.link_engine: dict[str, LinkEngine] = {}
        self.wifi_engines: dict[str, list[LinkEngine]] = {}  # node -> engines with its radios
        self.shards: list[Ns3Engine] = []
        # node -> its cgroup (nodes with a device profile only); pass it to every process
        # started in that node's namespace: sup.start(..., cgroup=net.cgroups.get(node))
        self.cgroups: dict[str, cgroups.CgroupHandle] = {}
        self.reference_speed = 1.0
        self.ovs: OvsSwitches | None = None
        self.sdn: SdnController | None = None
        self.macs: dict[str, str] = {}
        self.down_links: set[str] = set()  # taken down by the timeline
        self.mobility_down: set[str] = set()  # not routable now: set by the mobility driver
        self.routes = RouteInstaller(
            plan.namespaces, plan.routes,
            on_spawn=lambda pid, name, ns: self.ledger.add_process(pid, name, ns))
        self.segment_cost: dict[str, float] = {}
        self.wired: dict[str, dict[str, Any]] = {}  # wired links' current shaping
        self.apart: dict[str, frozenset[frozenset[str]]] = {}  # Wi-Fi cell -> unassociated
        self.route_cache = RouteCache()
        self.graph: nx.Graph | None = None  # the routing graph of the last reroute
        # the timeline and the mobility driver both change links (lock) and routes
        # (route_lock); separate, so a route computation never delays a link update
        self.lock = threading.RLock()
        self.route_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="engine-apply")

    # ---- engines --------------------------------------------------------------------------
    def _local_links(self) -> list[Any]:
        share = self.share
        return [lk for lk in self.sc.links if share is None or lk.name in share.links]

    def _netns_of(self, node: str) -> str:
        """A node's namespace; on a share, a remote end's is the gateway namespace."""
        if self.share is not None and node not in self.plan.namespaces:
            return self.share.gateway
        return self.plan.namespaces[node]

    def _choose_engines(self) -> None:
        links = self._local_links()
        media = {link.carried_by for link in links}
        if Medium.P2P in media:
            want = self.sc.engines.p2p
            if want == "netem" or (want == "auto" and features.has_netem()):
                self.engines[Medium.P2P] = NetemEngine()
        if Medium.WIFI in media and self.sc.engines.wifi == "hwsim":
            cap = self.sc.capture
            hw = HwsimEngine(self.sup, self.ledger, on_association=self._associated,
                             capture=self.sup.log_dir.parent / "wlan" / "hwsim0.pcap"
                             if cap.enabled else None, snaplen=cap.snaplen)
            self.engines[Medium.WIFI] = hw
            for link in links:
                if link.carried_by is Medium.WIFI:
                    for ep in link.endpoints:
                        self.wifi_engines.setdefault(ep, [hw])
        carried = [link for link in links if link.carried_by not in self.engines
                   and link.carried_by in (Medium.P2P, Medium.WIFI)]
        for link in links:
            if link.carried_by in self.engines:
                self.link_engine[link.name] = self.engines[link.carried_by]
        groups = shard_links([(link.name, len(link.endpoints)) for link in carried])
        shards: list[Ns3Engine] = []
        shard_of = {name: k for k, group in enumerate(groups) for name in group}
        wifi_links = {link.name for link in carried if link.carried_by is Medium.WIFI}
        for k, group in enumerate(groups):
            shards.append(Ns3Engine(self.sup, shard=k,
                                    wifi=any(name in wifi_links for name in group)))
        for link in carried:
            engine = shards[shard_of[link.name]]
            self.link_engine[link.name] = engine
            for ep in link.endpoints if link.carried_by is Medium.WIFI else ():
                self.wifi_engines.setdefault(ep, [])
                if engine not in self.wifi_engines[ep]:
                    self.wifi_engines[ep].append(engine)
        for medium in (Medium.P2P, Medium.WIFI):
            if medium in media and medium not in self.engines:
                self.engines[medium] = shards[0]
        self.shards = shards

    def engine_names(self) -> dict[str, str]:
        names = {m.value: e.name for m, e in self.engines.items()}
        if self.plan.switches:
            names["switch"] = "ovs-" + ("kernel" if self.switch_datapath() == "system"
                                        else "userspace")
        return names

    def link_engine_names(self) -> dict[str, str]:
        """Which engine carried each link (for the manifest)."""
        out = {}
        for link in self.sc.links:
            if link.name in self.link_engine:
                out[link.name] = self.link_engine[link.name].name
            elif self.plan.segment_of(link.name).switches or any(
                    t.link == link.name for t in self.plan.trunks):
                out[link.name] = self.engine_names().get("switch", "ovs")
            else:
                out[link.name] = "veth"
        return out

    def switch_datapath(self) -> str:
        """OVS datapath_type: system (the kernel module) where asked or, with auto, where the
        module loads; netdev (userspace) otherwise."""
        want = self.sc.engines.switch
        if want == "kernel" or (want == "auto" and features.has_ovs_kernel()):
            return "system"
        return "netdev"

    def _unique_engines(self) -> list[LinkEngine]:
        out: list[LinkEngine] = []
        for e in [*self.engines.values(), *self.shards]:
            if all(e is not x for x in out):
                out.append(e)
        return out

    # ---- build ----------------------------------------------------------------------------
    def build(self) -> None:
        t0 = time.monotonic()
        self._choose_engines()
        for engine in self._unique_engines():
            engine.start(self.state_dir)
        self._namespaces()
        self._cgroups()
        self._veths()
        self.timings["namespaces_and_veths_s"] = round(time.monotonic() - t0, 3)
        if self.plan.switches:
            assert self.plan.switch_netns is not None
            self.ovs = OvsSwitches(self.sup, self.state_dir, self.plan.switch_netns,
                                   datapath=self.switch_datapath())
            self.ovs.start()
            self.sdn = SdnController(self.sup, self.state_dir, self.plan.switch_netns)
            self.sdn.start(self.plan, self.sc.services.sdn.app, self.sc)
            self.sdn.wait_listening()
            self.ovs.build(self.plan, self.sdn.port)
            # after the ports joined their bridges: the kernel datapath resets a new port's
            # root qdisc
            self._shape_switch_side(self.plan.switch_netns)
        t1 = time.monotonic()
        for engine in self._unique_engines():
            links = [self._engine_link(n) for n, e in self.link_engine.items() if e is engine]
            self.macs.update(engine.attach(links, self.sc.seed))
        self.timings["engine_attach_wait_s"] = round(time.monotonic() - t1, 3)
        if self.share is not None:
            t3 = time.monotonic()
            self.share.before_configure(self)  # cross-host joins, the other hosts' MACs
            self.timings["cluster_join_s"] = round(time.monotonic() - t3, 3)
        for engine in self._unique_engines():
            self.timings.update(getattr(engine, "timings", {}))
        t2 = time.monotonic()
        self._configure()
        self.timings["configure_s"] = round(time.monotonic() - t2, 3)  # addresses, routes
        for engine in self._unique_engines():
            engine.configured()
        if self.sdn is not None:
            self.timings["sdn_ready_s"] = round(self.sdn.wait_ready(self.plan), 3)
        self.timings["build_s"] = round(time.monotonic() - t0, 3)

    def _namespaces(self) -> None:
        """Every namespace in one `ip -batch`, their sysctls and loopback from one thread
        that enters each (testbed.lifecycle.netns): no process per namespace, so 1,000 of
        them take ~3 s, mostly the kernel's own work.  All of them are in the ledger, with
        their /etc/netns folders, before the first is created."""
        swns = self.plan.switch_netns
        spaces = ([swns] if swns else []) + list(self.plan.namespaces.values())
        if self.share is not None:
            spaces.append(self.share.gateway)
        etcs = {node: Path("/etc/netns") / ns for node, ns in self.plan.namespaces.items()}
        self.ledger.add_many("namespaces", spaces)
        self.ledger.add_many("etc_netns", [str(etc) for etc in etcs.values()])
        ip_batch(f"netns add {ns}" for ns in spaces)
        hosts = self.plan.hosts_file()
        for node, etc in etcs.items():
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
            (etc / "hostname").write_text(node + "\n")
        netns.prepare(spaces, netns.parse_sysctls(NS_SYSCTLS))

    def _cgroups(self) -> None:
        """One group per node with a device profile.  Not recorded in the ledger one by one:
        their names carry the run's tag, which the ledger holds before anything is created,
        and teardown (cgroups.remove(tag)) finds them from it, even after a SIGKILL."""
        host_cores = len(os.sched_getaffinity(0))
        profiled = {node: lookup_profile(spec.profile) for node, spec in self.sc.nodes.items()
                    if spec.profile and node in self.plan.namespaces}
        self.reference_speed = reference_speed(self.sc.compute.reference_speed,
                                               list(profiled.values()), host_cores)
        for node, profile in profiled.items():
            self.cgroups[node] = cgroups.create(
                self.ledger.tag, node, quota_for(profile, host_cores, self.reference_speed),
                profile.memory_mb)

    def profiles(self) -> dict[str, dict[str, Any]]:
        """What each profiled node got (for the manifest): a capped quota is not the device."""
        out: dict[str, dict[str, Any]] = {"_reference_speed": {"value": self.reference_speed}}
        for node, handle in self.cgroups.items():
            q = handle.quota
            out[node] = {"profile": self.sc.nodes[node].profile, "memory_mb": handle.memory_mb,
                         "host_cores": q.cores if q else None,
                         "wanted_host_cores": q.wanted_cores if q else None,
                         "capped": bool(q and q.capped), "reason": q.reason if q else ""}
        return out

    def _veths(self) -> None:
        """Host ends go into the nodes, switch ends into the run's switch namespace."""
        swns = self.plan.switch_netns
        lines: list[str] = []
        root_side: list[str] = []
        for seg in self.plan.segments:
            if seg.medium is not Medium.ETHERNET or not self._here(seg.links[0]):
                continue
            if seg.switches:
                for m in seg.members:
                    lines.append(f"link add {m.root_name} netns {swns} type veth peer name "
                                 f"{m.root_name}p netns {self._netns_of(m.node)}")
                    root_side.append(m.root_name)
            else:
                a, b = seg.members
                lines.append(f"link add {a.root_name} netns {self._netns_of(a.node)} "
                             f"type veth peer name {b.root_name} "
                             f"netns {self._netns_of(b.node)}")
        for tr in self.plan.trunks:
            lines.append(f"link add {tr.a_name} netns {swns} type veth peer name {tr.b_name} "
                         f"netns {swns}")
            root_side += [tr.a_name, tr.b_name]
        ip_batch(lines)
        if root_side:
            # No IPv6 (no stray router solicitations), no checksum offload (the userspace
            # datapath would forward unfinished checksums), then up.
            assert swns is not None
            run(["ip", "netns", "exec", swns, "sh", "-c", "; ".join(
                f"ethtool -K {n} tx off >/dev/null 2>&1" for n in root_side)])
            ip_batch([f"link set dev {n} up" for n in root_side], swns)

    def _shape_switch_side(self, swns: str) -> None:
        """Wired links' shaping on the switch side (toward the host) here, on the host side
        in _configure: tbf for a rate alone, netem where delay or loss is set too."""
        for seg in self.plan.segments:
            if seg.medium is Medium.ETHERNET and seg.switches and self._here(seg.links[0]):
                for m in seg.members:
                    qdisc = self._wired_qdisc(m.link)
                    if qdisc:
                        run(["tc", "-n", swns, "qdisc", "replace", "dev", m.root_name,
                             "root", *qdisc])
        for tr in self.plan.trunks:
            qdisc = self._wired_qdisc(tr.link)
            if qdisc:
                for n in (tr.a_name, tr.b_name):
                    run(["tc", "-n", swns, "qdisc", "replace", "dev", n, "root", *qdisc])

    def _here(self, link: str) -> bool:
        """Is this link emulated on this host (always, but on a share of a multi-host run)?"""
        return self.share is None or link in self.share.links

    def _wired_qdisc(self, link: str) -> list[str]:
        """The root qdisc of each end of a wired link: netem when it has delay or loss (one
        way, each direction; preflight refused such links on kernels without sch_netem),
        tbf for a rate alone, none otherwise."""
        st = self.wired.setdefault(link, self._wired_state(link))
        if st["delay_ms"] or st["loss_pct"] or not st["up"]:
            loss = 100.0 if not st["up"] else st["loss_pct"]
            queue = self.sc.link(link).queue_packets or default_queue(st["rate_mbps"],
                                                                      st["delay_ms"])
            return netem_args(st["delay_ms"], st["rate_mbps"], loss, queue)
        return tbf_args(st["rate_mbps"]) if st["rate_mbps"] else []

    def _wired_state(self, link: str) -> dict[str, Any]:
        spec = self.sc.link(link)
        return {"delay_ms": spec.delay_ms or 0.0, "rate_mbps": spec.rate_mbps or 0.0,
                "loss_pct": spec.loss_pct or 0.0, "up": True}

    def _engine_link(self, name: str) -> EngineLink:
        link = self.sc.link(name)
        seg = self.plan.segment_of(name)
        ends = [EngineEnd(node=m.node, netns=self._netns_of(m.node),
                          root_name=m.root_name, ifname=m.ifname,
                          position=self.sc.nodes[m.node].position) for m in seg.members]
        wifi = (link.wifi or WifiSettings()).model_dump() if link.carried_by is Medium.WIFI \
            else {}
        queue = link.queue_packets or default_queue(link.rate_mbps or 0, link.delay_ms or 0)
        return EngineLink(name=name, medium=link.carried_by, ends=ends,
                          delay_ms=link.delay_ms or 0.0, rate_mbps=link.rate_mbps or 0.0,
                          rate_back_mbps=link.rate_back_mbps,
                          loss_pct=link.loss_pct or 0.0, queue_packets=queue, wifi=wifi)

    def _configure(self) -> None:
        static = {m: e.static_neighbours() for m, e in self.engines.items()}
        if self.share is not None:  # a joined p2p end whose link no engine here carries
            static.setdefault(Medium.P2P, self.share.static_p2p)
        config: dict[str, list[str]] = {}  # namespace -> its `ip -batch` lines
        offload: dict[str, list[str]] = {}  # namespace -> its wired interfaces
        shaping: dict[str, list[str]] = {}  # namespace -> its `tc -batch` lines
        for node, ns in self.plan.namespaces.items():
            lines: list[str] = []
            wired: list[str] = []
            for m in self.plan.endpoints(node):
                seg = self.plan.segment_of(m.link)
                src = m.root_name if seg.medium is not Medium.ETHERNET or not seg.switches \
                    else f"{m.root_name}p"
                lines.append(f"link set dev {src} name {m.ifname}")
                mac = m.mac or self.macs.get(m.root_name)
                if mac:
                    lines.append(f"link set dev {m.ifname} address {mac}")
                lines.append(f"addr add {m.ip}/{m.prefixlen} dev {m.ifname}")
                if self.share is not None and m.link in self.share.mtu:
                    lines.append(f"link set dev {m.ifname} mtu {self.share.mtu[m.link]}")
                lines.append(f"link set dev {m.ifname} up")
                if seg.medium is Medium.P2P and static.get(Medium.P2P):
                    peer = next(p for p in seg.members if p is not m)
                    lines.append(f"neigh replace {peer.ip} lladdr {self.macs[peer.root_name]} "
                                 f"dev {m.ifname} nud permanent")
                if seg.medium is Medium.ETHERNET:
                    wired.append(m.ifname)
            lines.append(f"addr add {self.plan.primary_ip[node]}/32 dev lo")
            lines += [r.line() for r in self.plan.routes[node]]
            config[ns] = lines
            offload[ns] = wired
            shaping[ns] = [f"qdisc replace dev {m.ifname} root {' '.join(qdisc)}"
                           for m in self.plan.endpoints(node)
                           if self.plan.segment_of(m.link).medium is Medium.ETHERNET
                           and (qdisc := self._wired_qdisc(m.link))]
        # one `ip -batch` per namespace; no checksum offload on wired interfaces (`ethtool -K
        # <dev> tx off`, for the userspace datapath); their shaping, one `tc -batch` where a
        # namespace has any.  No `ip -n` (testbed.lifecycle.netns.batches says why).
        netns.batches("ip", config)
        netns.tx_checksum_off(offload)
        netns.batches("tc", shaping)

    # ---- runtime --------------------------------------------------------------------------
    def apply(self, changes: list[Change], at: float | None = None) -> float | None:
        """Route each change to the engine (or veth) that carries the link, as batches, due
        at wall time `at` (now when None).  Returns the wall time the last engine applied
        them (None when none reports it)."""
        with self.lock:
            return self._apply(changes, at)

    def _apply(self, changes: list[Change], at: float | None) -> float | None:
        applied: float | None = None
        by_engine: dict[int, tuple[LinkEngine, list[Change]]] = {}
        wired: list[Change] = []
        for ch in changes:
            if ch.kind == "position":
                assert ch.node is not None
                engines = self.wifi_engines.get(ch.node)
                if not engines and self.share is not None:
                    continue  # its radio channels are emulated on another host
                if not engines:
                    raise ValueError(f"{ch.node} moves but is on no Wi-Fi link")
                for engine in engines:
                    by_engine.setdefault(id(engine), (engine, []))[1].append(ch)
                continue
            else:
                assert ch.link is not None
                if not self._here(ch.link):
                    continue  # emulated on another host, which applies it
                if ch.link not in self.link_engine:
                    wired.append(ch)
                    continue
                engine = self.link_engine[ch.link]
            by_engine.setdefault(id(engine), (engine, []))[1].append(ch)
        # several ns-3 processes (shards) apply their batches in parallel
        if len(by_engine) > 1:
            results = list(self.pool.map(lambda eb: eb[0].apply(eb[1], at),
                                         by_engine.values()))
        else:
            results = [engine.apply(batch, at) for engine, batch in by_engine.values()]
        if wired:
            wait_until(at)
            for ch in wired:
                self._apply_ethernet(ch)
            results.append(time.time())
        for t in results:
            if t is not None:
                applied = t if applied is None else max(applied, t)
        return applied

    def _apply_ethernet(self, ch: Change) -> None:
        """A wired link changes: up/down on its veths, rate, delay and loss in its qdiscs
        (delay and loss only where the kernel has sch_netem)."""
        assert ch.link is not None
        if ch.rate_back_mbps is not None:
            raise ValueError(f"wired link {ch.link}: one rate for both directions "
                             "(rate_back_mbps is for point-to-point links)")
        if (ch.delay_ms is not None or ch.loss_pct is not None) and not features.has_netem():
            raise ValueError(f"wired link {ch.link}: delay/loss need tc netem (absent here)")
        ends = self._ethernet_ends(ch.link)
        if ch.up is not None:
            for ns, dev in ends:
                run(["ip", *(["-n", ns] if ns else []), "link", "set", "dev", dev,
                     "up" if ch.up else "down"])
        st = self.wired.setdefault(ch.link, self._wired_state(ch.link))
        changed = False
        for k in ("delay_ms", "rate_mbps", "loss_pct"):
            v = getattr(ch, k)
            if v is not None:
                st[k], changed = v, True
        qdisc = self._wired_qdisc(ch.link)
        if changed and qdisc:
            for ns, dev in ends:
                run(["tc", *(["-n", ns] if ns else []), "qdisc", "replace", "dev", dev, "root",
                     *qdisc])

    def _ethernet_ends(self, link: str) -> list[tuple[str | None, str]]:
        trunk = next((t for t in self.plan.trunks if t.link == link), None)
        if trunk is not None:
            return [(self.plan.switch_netns, trunk.a_name), (self.plan.switch_netns, trunk.b_name)]
        seg = self.plan.segment_of(link)
        out: list[tuple[str | None, str]] = []
        for m in seg.members:
            if m.link == link:
                out.append((self.plan.namespaces[m.node], m.ifname))
                if seg.switches:
                    out.append((self.plan.switch_netns, m.root_name))
        return out

    def down_segments(self) -> frozenset[str]:
        with self.lock:
            names = set(self.down_links) | set(self.mobility_down)
        return frozenset(self.plan.segment_of(n).name for n in names)

    def routing_graph(self) -> nx.Graph:
        """Hosts joined by the segments routes may use now (what reroute computes on)."""
        with self.lock:
            apart = {self.plan.segment_of(link).name: pairs
                     for link, pairs in self.apart.items()}
        return host_graph(self.sc, self.plan, self.down_segments(), self.segment_cost or None,
                          apart)

    def _associated(self, link: str, apart: frozenset[frozenset[str]]) -> None:
        """An access-point cell's associations changed (hwsim engine): stations reach only
        their own access point directly; routes follow at once."""
        with self.lock:
            self.apart[link] = apart
        self.reroute()

    def reroute(self) -> InstallReport:
        """Recompute shortest paths without the links that are down (with the current segment
        costs, when the mobility engine sets them) and install what changed."""
        with self.route_lock:
            # the graph the routes are computed on is kept: the mobility driver predicts
            # delays along exactly these paths
            self.graph = self.routing_graph()
            return self.routes.install(compute_routes(self.sc, self.plan, cache=self.route_cache,
                                                      graph=self.graph))

    def check(self) -> None:
        for engine in self._unique_engines():
            engine.check()
        self.sup.check()

    def stats(self) -> dict[str, Any]:
        return {e.name: e.stats() for e in self._unique_engines()}

    def stop_engines(self) -> None:
        self.pool.shutdown(wait=False)
        self.routes.close()
        for engine in self._unique_engines():
            try:
                engine.stop()
            except Exception:  # noqa: BLE001 - teardown continues whatever happens
                pass


def tbf_args(rate_mbps: float) -> list[str]:
    burst = max(1600, int(rate_mbps * 1e6 / 8 / 250))  # 4 ms worth of bytes
    return ["tbf", "rate", f"{rate_mbps * 1000:.0f}kbit", "burst", str(burst), "latency", "50ms"]


def default_queue(rate_mbps: float, delay_ms: float) -> int:
    """Drop-tail queue of at least one bandwidth-delay product (and never under 100 packets),
    so TCP can fill a long satellite pipe."""
    bdp_packets = rate_mbps * 1e6 / 8 * (2 * delay_ms / 1000) / 1500
    return max(100, int(bdp_packets * 1.5))
