"""CPN steering: an os-ken (OpenFlow 1.3) app that enacts Computing Power Network mappings on
the emulated backbone.

It learns the switch graph from LLDP (os-ken's topology app, `observe_links`), answers ARP
itself (hosts and service VIPs), keeps host unicast on lowest-latency paths over the links that
are up, and steers each service's VIP to the instance a mapping algorithm chose, with address
rewrite both ways and an OpenFlow meter for its bandwidth (controllers/cpn/sdn/plan.py has
the rules).  Mappings arrive over a small HTTP API on a Unix socket (controllers/cpn/sdn/api.py),
because the mapping algorithm runs in another process (usually on an emulated node), and a
Unix socket reaches across namespaces without putting management traffic on emulated links.

Every topology change recomputes all flows and sends only the difference, then a barrier;
the event log (JSON lines) records when a link went down and when the new flows were
confirmed, which is what the reroute benchmark reads beside the captures.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import arp, ether_types, ethernet, packet
from os_ken.ofproto import ofproto_v1_3
from os_ken.topology import event as topo_event
from oslo_config import cfg as oslo_cfg

from controllers.cpn.sdn import api
from controllers.cpn.sdn.plan import (
    Fabric,
    FlowTable,
    LinkGraph,
    Service,
    ServiceError,
    ServiceSpec,
    diff,
    flow_table,
    route_service,
    vip_mac,
)
from testbed.net.sdn import l2_proactive
from testbed.net.sdn.l2_proactive import dpid_str

_OPTS = [
    cfg.StrOpt("sagin_api_socket", default="", help="Unix socket for the CPN mapping API"),
    cfg.StrOpt("sagin_event_log", default="", help="JSON lines of topology/service events"),
]


def register_opts(conf: oslo_cfg.ConfigOpts = cfg.CONF) -> None:
    l2_proactive.register_opts(conf, _OPTS)


def configure(conf: oslo_cfg.ConfigOpts, api_socket: str, event_log: str) -> None:
    """The launcher's hook (testbed/net/sdn/__init__.py): the API socket, the event log, and
    LLDP discovery by os-ken's topology app (its packet-in flow for LLDP is installed too)."""
    register_opts(conf)
    conf.set_override("sagin_api_socket", api_socket)
    conf.set_override("sagin_event_log", event_log)
    conf.set_override("observe_links", True)


register_opts()

BARRIER_TIMEOUT_S = 10.0


class CpnSteering(app_manager.OSKenApp):
    """Proactive host forwarding plus per-service steering, recomputed on every link event."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = l2_proactive.topology_file(self.CONF)
        self.fabric = Fabric.from_dict(json.loads(Path(path).read_text()))
        self.ready_file: str = self.CONF.sagin_ready_file or ""
        self.event_log: str = self.CONF.sagin_event_log or ""
        self.lock = threading.RLock()
        self.links = LinkGraph()
        self.services: dict[str, Service] = {}
        self.installed = FlowTable({s: {} for s in self.fabric.switches})
        self.datapaths: dict[str, Datapath] = {}
        self.meters: dict[str, set[int]] = {s: set() for s in self.fabric.switches}
        self.barriers: dict[tuple[int, int], threading.Event] = {}
        self.announced: set[str] = set()
        self.next_meter = 1
        # Syncs run on their own thread: they wait for barrier replies, which os-ken delivers
        # on this app's event thread, so waiting there would deadlock.
        self.sync_q: queue.Queue[tuple[str, dict[str, Any], Future[dict[str, Any]]] | None] = \
            queue.Queue()
        self.syncer = threading.Thread(target=self._sync_loop, name="cpn-sync", daemon=True)
        self.syncer.start()
        self.api_server: api.ApiServer | None = None
        if self.CONF.sagin_api_socket:
            self.api_server = api.ApiServer(self.CONF.sagin_api_socket, self)
            self.api_server.start()

    def close(self) -> None:
        if self.api_server is not None:
            self.api_server.stop()
        self.sync_q.put(None)
        super().close()

    # -- logging ---------------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> None:
        """One JSON line per decision, wall-clock stamped so it lines up with pcap times."""
        record = {"t": round(time.time(), 6), "event": kind, **fields}
        self.logger.info("sagin: %s", json.dumps(record))
        if self.event_log:
            try:
                with open(self.event_log, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:
                self.logger.error("sagin: cannot write event log %s: %s", self.event_log, e)

    # -- switch connection -----------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _on_features(self, ev: Any) -> None:
        dp: Datapath = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        name = self.fabric.name_of(dp.id)
        if name is None:
            self.logger.warning("sagin: dpid %s is not in the topology; leaving it alone",
                                dpid_str(dp.id))
            return
        with self.lock:
            # Start from nothing: flows and meters of an earlier controller may mean other things.
            l2_proactive.wipe_flows(dp)
            dp.send_msg(parser.OFPMeterMod(datapath=dp, command=ofp.OFPMC_DELETE, flags=0,
                                           meter_id=ofp.OFPM_ALL))
            self.datapaths[name] = dp
            self.installed.flows[name] = {}
            self.meters[name] = set()
        self._request_sync("switch_connected", switch=name)

    # -- topology events from os-ken's LLDP discovery ---------------------------------------
    @set_ev_cls(topo_event.EventLinkAdd)
    def _on_link_add(self, ev: Any) -> None:
        src, dst = ev.link.src, ev.link.dst
        a, b = self.fabric.name_of(src.dpid), self.fabric.name_of(dst.dpid)
        if a is None or b is None:
            return
        with self.lock:
            changed = self.links.add(a, src.port_no, b, dst.port_no)
        if changed:
            self._request_sync("link_up", link=[a, src.port_no, b, dst.port_no])

    @set_ev_cls(topo_event.EventLinkDelete)
    def _on_link_delete(self, ev: Any) -> None:
        src = ev.link.src
        a = self.fabric.name_of(src.dpid)
        if a is None:
            return
        with self.lock:
            changed = self.links.remove_port(a, src.port_no)
        if changed:
            self._request_sync("link_down", link=[a, src.port_no])

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _on_port_status(self, ev: Any) -> None:
        """Carrier loss reaches us here first; the topology app's link delete follows, but
        acting on the port status saves its bookkeeping time on the reroute path."""
        msg = ev.msg
        ofp = msg.datapath.ofproto
        name = self.fabric.name_of(msg.datapath.id)
        down = bool(msg.desc.state & ofp.OFPPS_LINK_DOWN) or msg.reason == ofp.OFPPR_DELETE
        if name is None or not down:
            return
        with self.lock:
            changed = self.links.remove_port(name, msg.desc.port_no)
        if changed:
            self._request_sync("link_down", link=[name, msg.desc.port_no], via="port_status")

    # -- ARP ---------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _on_packet_in(self, ev: Any) -> None:
        msg = ev.msg
        pkt = packet.Packet(msg.data)
        eth = pkt.get_protocol(ethernet.ethernet)
        if eth is None or eth.ethertype != ether_types.ETH_TYPE_ARP:
            return
        req = pkt.get_protocol(arp.arp)
        if req is None or req.opcode != arp.ARP_REQUEST:
            return
        answer = self._arp_owner(req.dst_ip)
        if answer is None:
            return
        reply = packet.Packet()
        reply.add_protocol(ethernet.ethernet(ethertype=ether_types.ETH_TYPE_ARP,
                                             dst=eth.src, src=answer))
        reply.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=answer, src_ip=req.dst_ip,
                                   dst_mac=req.src_mac, dst_ip=req.src_ip))
        reply.serialize()
        dp = msg.datapath
        parser, ofp = dp.ofproto_parser, dp.ofproto
        with self.lock:
            dp.send_msg(parser.OFPPacketOut(
                datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                actions=[parser.OFPActionOutput(msg.match["in_port"])], data=reply.data))

    def _arp_owner(self, ip: str) -> str | None:
        host = self.fabric.host_by_ip(ip)
        if host is not None:
            return host.mac
        with self.lock:
            if any(s.spec.vip == ip for s in self.services.values()):
                return vip_mac(ip)
        return None

    # -- flow synchronisation ----------------------------------------------------------------
    def _request_sync(self, reason: str, **fields: Any) -> Future[dict[str, Any]]:
        done: Future[dict[str, Any]] = Future()
        self.sync_q.put((reason, fields, done))
        return done

    def _sync_loop(self) -> None:
        while (item := self.sync_q.get()) is not None:
            reason, fields, done = item
            try:
                done.set_result(self._sync(reason, **fields))
            except Exception as exc:
                self.logger.exception("sagin: sync failed")
                done.set_exception(exc)

    def _sync(self, reason: str, **fields: Any) -> dict[str, Any]:
        """Recompute every flow for the live graph, reroute services, send the difference and
        wait for the switches to confirm it."""
        t0 = time.time()
        with self.lock:
            rerouted, dropped = self._reroute()
            table = flow_table(self.fabric, self.links, self.services.values())
            changes = diff(self.installed, table)
            waits = []
            sent = 0
            for sw, (add, delete) in changes.items():
                dp = self.datapaths.get(sw)
                if dp is None:
                    continue
                sent += self._send_changes(dp, sw, add, delete)
                self.installed.flows[sw] = dict(table.flows[sw])
            for sw, dp in self.datapaths.items():
                if sw in changes or sw not in self.announced:
                    waits.append((sw, self._barrier(dp)))
        confirmed = all(ev.wait(BARRIER_TIMEOUT_S) for _, ev in waits)
        t1 = time.time()
        record = {"reason": reason, **fields, "flow_mods": sent,
                  "switches": sorted(changes), "install_ms": round((t1 - t0) * 1000, 2),
                  "confirmed": confirmed}
        if rerouted or dropped:
            record.update(rerouted=rerouted, unroutable=dropped)
        if sent or rerouted or dropped or reason != "switch_connected":
            self._event("sync", **record)
        self._announce_ready(confirmed)
        if not confirmed:
            # a switch that did not confirm in time (a loaded host) gets its flows checked
            # again; without a retry a missed barrier would leave it never announced ready
            threading.Timer(1.0, self._request_sync, args=("barrier_retry",)).start()
        return record

    def _reroute(self) -> tuple[list[str], list[str]]:
        """Move every service whose path changed; a service that no longer fits keeps no flows
        (traffic to its VIP is dropped rather than sent over an overloaded link) and is
        retried at the next change."""
        graph = self.links.graph(self.fabric)
        rerouted, dropped = [], []
        for name, svc in self.services.items():
            try:
                paths, reserved, latency = route_service(svc.spec, self.fabric, graph,
                                                         self.services.values())
            except ServiceError as exc:
                if svc.paths:
                    dropped.append(f"{name}: {exc}")
                svc.paths, svc.reserved, svc.latency_ms = {}, set(), {}
                continue
            if paths != svc.paths:
                if svc.paths:
                    rerouted.append(name)
                svc.paths, svc.reserved, svc.latency_ms = paths, reserved, latency
        return rerouted, dropped

    def _send_changes(self, dp: Datapath, sw: str, add: list[Any], delete: list[Any]) -> int:
        ofp, parser = dp.ofproto, dp.ofproto_parser
        needed = {meter for _key, (_acts, meter) in add if meter}
        for meter in sorted(needed - self.meters[sw]):
            svc = next((s for s in self.services.values() if s.meter_id == meter), None)
            if svc is None or svc.spec.bandwidth_mbps <= 0:
                continue
            rate_kbps = max(1, int(svc.spec.bandwidth_mbps * 1000))
            dp.send_msg(parser.OFPMeterMod(
                datapath=dp, command=ofp.OFPMC_ADD, flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST,
                meter_id=meter, bands=[parser.OFPMeterBandDrop(
                    rate=rate_kbps, burst_size=max(64, rate_kbps // 10))]))
            self.meters[sw].add(meter)
        for prio, match in delete:
            dp.send_msg(parser.OFPFlowMod(
                datapath=dp, table_id=0, command=ofp.OFPFC_DELETE_STRICT, priority=prio,
                out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                match=parser.OFPMatch(**dict(match))))
        for (prio, match), (actions, meter) in add:
            inst = []
            if meter and svc_bandwidth(self.services, meter) > 0:
                inst.append(parser.OFPInstructionMeter(meter, ofp.OFPIT_METER))
            acts = [self._action(parser, ofp, a) for a in actions]
            if acts:
                inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, acts))
            dp.send_msg(parser.OFPFlowMod(datapath=dp, table_id=0, priority=prio,
                                          match=parser.OFPMatch(**dict(match)),
                                          instructions=inst))
        return len(add) + len(delete)

    @staticmethod
    def _action(parser: Any, ofp: Any, action: tuple[Any, ...]) -> Any:
        kind = action[0]
        if kind == "output":
            return parser.OFPActionOutput(action[1])
        if kind == "controller":
            return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
        if kind == "set":
            return parser.OFPActionSetField(**{action[1]: action[2]})
        raise ValueError(f"unknown action {action}")

    def _barrier(self, dp: Datapath) -> threading.Event:
        req = dp.ofproto_parser.OFPBarrierRequest(dp)
        dp.set_xid(req)
        done = threading.Event()
        self.barriers[(dp.id, req.xid)] = done
        dp.send_msg(req)
        return done

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _on_barrier(self, ev: Any) -> None:
        done = self.barriers.pop((ev.msg.datapath.id, ev.msg.xid), None)
        if done is not None:
            done.set()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _on_error(self, ev: Any) -> None:
        msg = ev.msg
        self._event("switch_error", dpid=dpid_str(msg.datapath.id), type=msg.type,
                    code=msg.code)

    def _announce_ready(self, confirmed: bool) -> None:
        """A switch is ready once every configured trunk has been discovered and its flows for
        that graph are confirmed: before that, paths may still be missing."""
        if not confirmed:
            return
        with self.lock:
            if not self.fabric.expected_pairs() <= self.links.pairs():
                return
            fresh = [sw for sw in self.datapaths if sw not in self.announced]
            self.announced.update(fresh)
            counts = {sw: len(self.installed.flows[sw]) for sw in fresh}
        for sw in fresh:
            line = f"sagin: dpid {dpid_str(self.fabric.switches[sw])} ready: {counts[sw]} flows"
            self.logger.info(line)
            if self.ready_file:
                with open(self.ready_file, "a") as f:
                    f.write(line + "\n")

    # -- the API's view (called from the API server's threads) -------------------------------
    def api_topology(self) -> dict[str, Any]:
        with self.lock:
            return {
                "switches": {n: dpid_str(d) for n, d in self.fabric.switches.items()},
                "connected": sorted(self.datapaths),
                "links": sorted([a, pa, b, pb] for (a, pa), (b, pb) in self.links.ports.items()
                                if (a, pa) < (b, pb)),
                "trunks": [{"a": t.a, "b": t.b, "rate_mbps": t.rate_mbps,
                            "delay_ms": t.delay_ms} for t in self.fabric.trunks],
                "hosts": [{"node": h.node, "mac": h.mac, "ip": h.ip, "switch": h.switch,
                           "port": h.port_no} for h in self.fabric.hosts.values()],
                "ready": sorted(self.announced)}

    def api_services(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.describe() for s in self.services.values()]

    def api_put_service(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Install (or move) a service; returns once the switches confirmed its flows."""
        t_req = time.time()
        with self.lock:
            old = self.services.get(name)
            taken = [s.spec.vip for n, s in self.services.items() if n != name]
            if old is not None and "vip" not in body:
                body = {**body, "vip": old.spec.vip}
            spec = ServiceSpec.from_request(name, body, self.fabric, taken)
            graph = self.links.graph(self.fabric)
            paths, reserved, latency = route_service(spec, self.fabric, graph,
                                                     self.services.values())
            # A new rate gets a new meter: deleting a meter in use would take its flows along.
            stale = None
            if old is not None and old.spec.bandwidth_mbps == spec.bandwidth_mbps:
                meter = old.meter_id
            else:
                meter, self.next_meter = self.next_meter, self.next_meter + 1
                stale = old.meter_id if old is not None else None
            self.services[name] = Service(spec, meter, paths, reserved, latency)
        record = self._request_sync("service", service=name).result(30)
        with self.lock:
            if stale is not None:
                self._drop_meter(stale)
            out = self.services[name].describe()
        out.update(requested_at=t_req, installed_at=time.time(),
                   install_ms=record["install_ms"], confirmed=record["confirmed"])
        self._event("service_installed", **out)
        return out

    def api_delete_service(self, name: str) -> dict[str, Any]:
        with self.lock:
            svc = self.services.pop(name, None)
            if svc is None:
                raise KeyError(name)
        record = self._request_sync("service_removed", service=name).result(30)
        with self.lock:
            self._drop_meter(svc.meter_id)
        return {"name": name, "removed": True, "install_ms": record["install_ms"]}

    def _drop_meter(self, meter: int) -> None:
        for sw, dp in self.datapaths.items():
            if meter in self.meters[sw]:
                dp.send_msg(dp.ofproto_parser.OFPMeterMod(
                    datapath=dp, command=dp.ofproto.OFPMC_DELETE, flags=0, meter_id=meter))
                self.meters[sw].discard(meter)


def svc_bandwidth(services: dict[str, Service], meter: int) -> float:
    return next((s.spec.bandwidth_mbps for s in services.values() if s.meter_id == meter), 0.0)


__all__ = ["CpnSteering", "configure", "register_opts"]
