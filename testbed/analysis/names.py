"""Node and link names for the addresses in a run's captures.

A capture knows addresses (198.19.255.249), a person knows nodes (user1).  The run folder
says which is which: network.json (the plan) lists every interface address with its node and
link (``segments[].members[]``), each node's primary address (``primary_ip``, the one traffic
and the payload agents use) and, for boards in the loop, the address of the board that
serves a node (``served_by``); scenario.resolved.yaml lists the scenario's flows (``traffic:``
name, kind, src, dst).  With both, a flow reads "ping-cloud: user1 → cloud1" instead of
"icmp 198.19.255.254 > 198.19.255.252 id=4711".

Names are applied when outputs are written, never inside the per-packet pass: the capture
results keep their address keys (stable, unambiguous, what the CSVs have always had), and
the name columns and labels sit beside them.  A run without network.json (a lone capture, an
old run) gets the same label layout with addresses in place of names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPERF_BASE_PORT = 5201
"""testbed.run.traffic.BASE_PORT: the scenario's n-th flow's iperf3 server listens on
BASE_PORT + n.  Repeated here because testbed.run imports testbed.analysis (a test checks the
two agree)."""

KIND_PROTO = {"ping": ("icmp", "icmpv6"), "tcp": ("tcp",), "udp": ("udp",)}
ARROW = "→"


@dataclass(frozen=True)
class ScenarioFlow:
    """One entry of the scenario's ``traffic:`` as the capture sees it."""

    name: str
    kind: str
    src: str
    dst: str
    port: int | None  # the iperf3 server's port (tcp, udp); None for ping


@dataclass
class Names:
    """Address -> node (and link) of one run, and the scenario's flows to match against."""

    nodes: dict[str, str] = field(default_factory=dict)  # ip -> node
    links: dict[str, str] = field(default_factory=dict)  # interface ip -> link
    flows: list[ScenarioFlow] = field(default_factory=list)

    # ---- where names come from --------------------------------------------------------------
    @classmethod
    def from_network(cls, net: Mapping[str, Any],
                     traffic: Sequence[Mapping[str, Any]] = ()) -> Names:
        """From network.json's content and the scenario's ``traffic:`` list."""
        nodes: dict[str, str] = {}
        links: dict[str, str] = {}
        for seg in net.get("segments") or []:
            for m in seg.get("members") or []:
                ip, node = m.get("ip"), m.get("node")
                if ip and node:
                    nodes[str(ip)] = str(node)
                    if m.get("link"):
                        links[str(ip)] = str(m["link"])
        # primary addresses last: a node's own name wins over any other claim to the address
        for node, ip in (net.get("served_by") or {}).items():
            nodes[str(ip)] = str(node)
        for node, ip in (net.get("primary_ip") or {}).items():
            nodes[str(ip)] = str(node)
        flows = []
        for i, f in enumerate(traffic):
            kind = str(f.get("kind", ""))
            if not (f.get("name") and f.get("src") and f.get("dst")):
                continue
            flows.append(ScenarioFlow(str(f["name"]), kind, str(f["src"]), str(f["dst"]),
                                      None if kind == "ping" else IPERF_BASE_PORT + i))
        return cls(nodes, links, flows)

    @classmethod
    def of_run(cls, run_dir: str | Path) -> Names:
        """A run folder's names; empty (addresses stay) where the run has no network.json."""
        run_dir = Path(run_dir)
        try:
            net = json.loads((run_dir / "network.json").read_text())
        except (OSError, ValueError):
            return cls()
        traffic: list[Any] = []
        scen = run_dir / "scenario.resolved.yaml"
        if scen.is_file():
            import yaml

            try:
                doc = yaml.safe_load(scen.read_text()) or {}
                traffic = list(doc.get("traffic") or []) if isinstance(doc, dict) else []
            except yaml.YAMLError:
                traffic = []
        return cls.from_network(net if isinstance(net, dict) else {}, traffic)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Names:
        """Back from `to_dict` (analysis.json's "names")."""
        d = d or {}
        return cls(dict(d.get("nodes") or {}), dict(d.get("links") or {}),
                   [ScenarioFlow(f["name"], f["kind"], f["src"], f["dst"], f.get("port"))
                    for f in d.get("flows") or []])

    @classmethod
    def near(cls, path: str | Path) -> Names:
        """Names for a lone capture: from the run folder it lies in (RUN/pcaps/x.pcap or
        RUN/x.pcap), if any."""
        p = Path(path).resolve()
        for d in (p.parent, p.parent.parent):
            if (d / "network.json").is_file():
                return cls.of_run(d)
        return cls()

    # ---- what they are used for --------------------------------------------------------------
    def node(self, ip: str | None) -> str:
        """The node an address belongs to, or the address itself."""
        if not ip:
            return ""
        return self.nodes.get(str(ip), str(ip))

    def link(self, ip: str | None) -> str | None:
        """The link of an interface address (None for a primary address or an unknown one)."""
        return self.links.get(str(ip)) if ip else None

    def scenario_flow(self, proto: str, src: str, dst: str, sport: int = 0,
                      dport: int = 0) -> tuple[ScenarioFlow, bool] | None:
        """The scenario flow this 5-tuple belongs to and whether it runs in the flow's own
        direction (False: the replies, the ACKs), or None."""
        a, b = self.node(src), self.node(dst)
        for f in self.flows:
            if proto not in KIND_PROTO.get(f.kind, ()):
                continue
            if (a, b) == (f.src, f.dst) and (f.port is None or dport == f.port):
                return f, True
            if (a, b) == (f.dst, f.src) and (f.port is None or sport == f.port):
                return f, False
        return None

    def flow(self, proto: str, src: str, dst: str, sport: int = 0, dport: int = 0) -> str:
        """A flow's label: "ping-cloud: user1 → cloud1" for a scenario flow ("ping-cloud
        reply: cloud1 → user1" the other way), else "user1 → cloud1 (ICMP)", with the service
        port (the lower one) for TCP and UDP: "user7 → uav4 (TCP 7700)", and the link when
        both ends are interfaces of one link (the link probes): "uav1 → uav2 (ICMP on
        backhaul)"."""
        a, b = self.node(src), self.node(dst)
        hit = self.scenario_flow(proto, src, dst, sport, dport)
        if hit is not None:
            f, forward = hit
            back = "reply" if f.kind == "ping" else "reverse"
            return f"{f.name}: {a} {ARROW} {b}" if forward else f"{f.name} {back}: {a} {ARROW} {b}"
        what = proto.upper()
        ports = [p for p in (sport, dport) if p]
        if proto in ("tcp", "udp", "sctp") and ports:
            what += f" {min(ports)}"
        link = self.link(src)
        if link is not None and link == self.link(dst):  # interface to interface: a link probe
            what += f" on {link}"
        return f"{a} {ARROW} {b} ({what})"

    def flow_row(self, row: Mapping[str, Any]) -> str:
        """`flow` for one of the analysis's flow rows (proto, src, dst, sport, dport)."""
        return self.flow(str(row.get("proto", "")), str(row.get("src", "")),
                         str(row.get("dst", "")), int(row.get("sport") or 0),
                         int(row.get("dport") or 0))

    def to_dict(self) -> dict[str, Any]:
        """For analysis.json: what each address was called, so later readers (`make
        compare`, a notebook) need not find network.json again."""
        return {"nodes": dict(sorted(self.nodes.items())),
                "links": dict(sorted(self.links.items())),
                "flows": [{"name": f.name, "kind": f.kind, "src": f.src, "dst": f.dst,
                           "port": f.port} for f in self.flows]}


def pair_name(a: str, b: str) -> str:
    """Two capture points of one link: "backhaul--gs1", "backhaul--uav1" -> "backhaul: gs1 →
    uav1" (the one-way delay's direction); other names as "a → b"."""
    la, _, na = a.partition("--")
    lb, _, nb = b.partition("--")
    if na and nb and la == lb:
        return f"{la}: {na} {ARROW} {nb}"
    return f"{capture_name(a)} {ARROW} {capture_name(b)}"


def capture_name(stem: str) -> str:
    """A capture file's name as a person reads it: "backhaul--uav1" (the run's `<link>--<node>`
    naming) -> "backhaul at uav1"; anything else unchanged."""
    link, sep, node = stem.partition("--")
    return f"{link} at {node}" if sep and link and node else stem
