"""Proactive L2 forwarding for the SAGIN emulation switches.

The emulated links have delays of tens to hundreds of milliseconds, so a reactive controller
(packet-in on every new flow) would add a controller round trip to the first packet of every
conversation and make measurements depend on controller load.  Instead every switch gets its
complete forwarding table the moment it connects, computed from the same topology file that
built the network, and the controller is idle afterwards.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3
from oslo_config import cfg as oslo_cfg

GROUP_BIT = "01:00:00:00:00:00"
"""Value and mask of the Ethernet group bit: matches every multicast and broadcast frame."""

PRIO_TABLE_MISS = 0
PRIO_FLOOD = 100
PRIO_UNICAST = 200

_OPTS = [
    cfg.StrOpt("sagin_topology", default="", help="topology JSON describing switches and ports"),
    cfg.StrOpt("sagin_ready_file", default="", help="file to append one ready line per switch"),
]


def register_opts(conf: oslo_cfg.ConfigOpts = cfg.CONF, opts: list[Any] | None = None) -> None:
    """Register an app's options (this app's by default); safe to call again (the launcher and
    the loader both import the module, and a re-import under a different name must not abort
    start-up)."""
    for opt in _OPTS if opts is None else opts:
        with contextlib.suppress(oslo_cfg.DuplicateOptError):
            conf.register_opt(opt)


def topology_file(conf: oslo_cfg.ConfigOpts) -> str:
    """The topology JSON every testbed app is started with; without it an app cannot know
    which switches are ours."""
    path: str = conf.sagin_topology
    if not path:
        raise ValueError("sagin_topology is not set")
    return path


register_opts()


def dpid_str(dpid: int) -> str:
    """The 16-hex-digit form used in topology files, OVS other-config and the ready line, so
    that log lines can be grepped with the same string that configured the bridge."""
    return f"{dpid:016x}"


@dataclass
class FlowPlan:
    """Everything one switch needs, kept free of OpenFlow objects so that it can be unit-tested
    without a switch."""

    name: str
    dpid: int
    unicast: dict[str, int] = field(default_factory=dict)
    """host MAC -> output port"""
    flood: dict[int, list[int]] = field(default_factory=dict)
    """in_port -> output ports for group-addressed frames"""

    @property
    def flow_count(self) -> int:
        """Flows added on install, table-miss included: what the ready line reports."""
        return len(self.unicast) + len(self.flood) + 1


@dataclass
class Topology:
    """The switch graph plus its spanning tree.

    The tree is computed once for the whole network rather than per switch so that every switch
    agrees on which trunks carry flooded traffic; disagreeing trees would re-open the loops.
    """

    switches: dict[str, int]
    """switch name -> dpid"""
    host_ports: dict[str, dict[int, str | None]]
    """switch name -> {port_no: host MAC or None}"""
    trunk_ports: dict[str, dict[int, str]]
    """switch name -> {port_no: peer switch name}"""
    tree: nx.Graph
    tree_port: dict[tuple[str, str], int]
    """(switch, neighbour) -> the port of `switch` used for that tree edge"""
    hosts: dict[str, tuple[str, int]]
    """host MAC -> (switch name, port_no)"""
    warnings: list[str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        """Build from the JSON document; problems that only affect part of the network become
        warnings so one bad host entry does not leave every switch without flows."""
        warnings: list[str] = []
        entries = data.get("switches", [])
        switches = {sw["name"]: int(str(sw["dpid"]), 16) for sw in entries}
        host_ports: dict[str, dict[int, str | None]] = {}
        trunk_ports: dict[str, dict[int, str]] = {}
        hosts: dict[str, tuple[str, int]] = {}
        graph = nx.Graph()
        graph.add_nodes_from(sorted(switches))
        # (a, b) -> a's lowest port towards b.  The file names the peer switch but not the
        # peer's port, so parallel trunks cannot be paired reliably; only the lowest-numbered
        # one on each side is used and the rest are treated as non-tree (never output to).
        lowest: dict[tuple[str, str], int] = {}
        for sw in entries:
            name = sw["name"]
            host_ports[name] = {}
            trunk_ports[name] = {}
            for port in sw.get("ports", []):
                port_no = int(port["port_no"])
                peer = port.get("peer")
                if peer in switches and peer != name:
                    trunk_ports[name][port_no] = peer
                    key = (name, peer)
                    lowest[key] = min(port_no, lowest.get(key, port_no))
                    graph.add_edge(*sorted((name, peer)))
                    continue
                mac = port.get("peer_mac")
                mac = mac.lower() if mac else None
                if mac is not None and int(mac.split(":")[0], 16) & 1:
                    warnings.append(f"{name} port {port_no}: {mac} is a group address, ignored")
                    mac = None
                host_ports[name][port_no] = mac
                if mac is None:
                    continue
                if mac in hosts:
                    warnings.append(f"{mac} on {name} port {port_no} already on {hosts[mac]}")
                    continue
                hosts[mac] = (name, port_no)
        # Kruskal on unit weights is deterministic given the sorted insertion order above.
        tree = nx.minimum_spanning_tree(graph, algorithm="kruskal")
        tree_port: dict[tuple[str, str], int] = {}
        for a, b in tree.edges():
            if (a, b) not in lowest or (b, a) not in lowest:
                # Only one side lists the link: it cannot carry traffic both ways.
                warnings.append(f"trunk {a}-{b} is listed on one side only")
                continue
            tree_port[(a, b)] = lowest[(a, b)]
            tree_port[(b, a)] = lowest[(b, a)]
        usable = nx.Graph()
        usable.add_nodes_from(tree.nodes())
        usable.add_edges_from((a, b) for a, b in tree_port)
        return cls(switches, host_ports, trunk_ports, usable, tree_port, hosts, warnings)

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        """Read the topology file written by the network builder."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def name_of(self, dpid: int) -> str | None:
        """Map a connecting datapath back to its switch; None means it is not ours."""
        for name, known in self.switches.items():
            if known == dpid:
                return name
        return None

    def plan(self, name: str) -> FlowPlan:
        """Compute the forwarding table of one switch."""
        plan = FlowPlan(name=name, dpid=self.switches[name])
        for mac, (sw, port_no) in sorted(self.hosts.items()):
            if sw == name:
                plan.unicast[mac] = port_no
                continue
            try:
                path = nx.shortest_path(self.tree, name, sw)
            except nx.NetworkXNoPath:
                continue  # other partition of a disconnected network: nothing to forward to
            plan.unicast[mac] = self.tree_port[(name, path[1])]
        tree_ports = {p for (a, _b), p in self.tree_port.items() if a == name}
        flood_ports = sorted(tree_ports | set(self.host_ports[name]))
        for in_port in flood_ports:
            out = [p for p in flood_ports if p != in_port]
            if out:  # with nowhere to go the table-miss drop already does the job
                plan.flood[in_port] = out
        return plan


def wipe_flows(dp: Datapath) -> None:
    """Delete every flow in every table: what a switch keeps from an earlier controller may
    point at ports or services that now mean something else."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    dp.send_msg(parser.OFPFlowMod(datapath=dp, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                                  out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                  match=parser.OFPMatch()))


class ProactiveL2(app_manager.OSKenApp):
    """Installs the whole L2 table on switch connect; packet-in is never used."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topology = Topology.load(topology_file(self.CONF))
        for warning in self.topology.warnings:
            self.logger.warning("sagin: topology: %s", warning)
        self.ready_file: str = self.CONF.sagin_ready_file or ""
        # dpid -> (barrier xid, flows installed, errors seen since the install began)
        self._pending: dict[int, tuple[int, int, int]] = {}

    def _add_flow(
        self, dp: Datapath, priority: int, match: Any, actions: list[Any] | None = None
    ) -> None:
        """One place that decides table, flags and instruction shape for every flow."""
        parser = dp.ofproto_parser
        inst = []
        if actions:
            inst = [parser.OFPInstructionActions(dp.ofproto.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, table_id=0, priority=priority, match=match,
                                      instructions=inst))

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _on_features(self, ev: Any) -> None:
        """Install at connect time so forwarding never waits on the controller."""
        dp: Datapath = ev.msg.datapath
        parser = dp.ofproto_parser
        name = self.topology.name_of(dp.id)
        if name is None:
            # Touching an unknown switch could bridge networks that were meant to stay apart;
            # fail-secure keeps it dropping everything until someone looks.
            self.logger.warning("sagin: dpid %s is not in the topology; leaving it alone",
                                dpid_str(dp.id))
            return
        plan = self.topology.plan(name)
        # Flows from a previous controller run may point at ports that changed meaning.
        wipe_flows(dp)
        self._add_flow(dp, PRIO_TABLE_MISS, parser.OFPMatch())
        for mac, port_no in plan.unicast.items():
            self._add_flow(dp, PRIO_UNICAST, parser.OFPMatch(eth_dst=mac),
                           [parser.OFPActionOutput(port_no)])
        for in_port, outs in plan.flood.items():
            self._add_flow(dp, PRIO_FLOOD,
                           parser.OFPMatch(in_port=in_port, eth_dst=(GROUP_BIT, GROUP_BIT)),
                           [parser.OFPActionOutput(p) for p in outs])
        # The switch answers a barrier only after it has processed everything before it, so
        # the reply (not the send) is the moment the switch really forwards.
        barrier = parser.OFPBarrierRequest(dp)
        dp.send_msg(barrier)
        self._pending[dp.id] = (barrier.xid, plan.flow_count, 0)
        self.logger.debug("sagin: dpid %s (%s): %d flows sent", dpid_str(dp.id), name,
                          plan.flow_count)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _on_error(self, ev: Any) -> None:
        """A rejected flow means the table is incomplete, so readiness must not be claimed."""
        msg = ev.msg
        dpid = msg.datapath.id
        self.logger.error("sagin: dpid %s rejected a message: type=%d code=%d",
                          dpid_str(dpid), msg.type, msg.code)
        if dpid in self._pending:
            xid, count, errors = self._pending[dpid]
            self._pending[dpid] = (xid, count, errors + 1)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _on_barrier(self, ev: Any) -> None:
        """Announce readiness only once the switch has confirmed the whole table."""
        dpid = ev.msg.datapath.id
        pending = self._pending.get(dpid)
        if pending is None or pending[0] != ev.msg.xid:
            return
        del self._pending[dpid]
        _xid, count, errors = pending
        if errors:
            self.logger.error("sagin: dpid %s NOT ready: %d errors while installing %d flows",
                              dpid_str(dpid), errors, count)
            return
        line = f"sagin: dpid {dpid_str(dpid)} ready: {count} flows"
        self.logger.info(line)
        if self.ready_file:
            try:
                with open(self.ready_file, "a") as f:
                    f.write(line + "\n")
            except OSError as e:
                self.logger.error("sagin: cannot write ready file %s: %s", self.ready_file, e)


__all__ = ["FlowPlan", "ProactiveL2", "Topology", "dpid_str", "register_opts", "topology_file",
           "wipe_flows"]
