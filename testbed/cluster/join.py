"""Joining a link end across hosts with VXLAN: the same mechanism for every medium.

On the host that emulates the link, the engine attaches the remote end like any other - an
ns-3 tap, a veth to an Open vSwitch port, a veth of a direct wired link - but in the share's
gateway namespace instead of the node's.  There it is bridged (a Linux bridge per end) to a
VXLAN device whose remote is the node's host:

    emulating host                                          node's host
    [engine: ns-3 / OVS / veth]                             node namespace
       |  end (tap/veth) in sh<tag>.gw                        eth<k> = VXLAN, VNI v
       +-- bridge s<tag>g<v> -- VXLAN s<tag>x<v>  ==UDP==>  (created in the host's root
                                (created in root ns,          namespace, moved in: the
                                 moved into the gw ns)         underlay stays in root)

A VXLAN device keeps its underlay socket in the namespace where it was created, so both
tunnel devices are created in the host's root namespace (where the underlay network is) and
moved: the emulated namespaces never see the underlay, and the underlay never carries an
unencapsulated emulated packet.  On the node's side the device takes the endpoint's creation
name, so the builder renames, addresses and routes it exactly like a local end.

MTU: VXLAN adds 50 bytes (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14): every device of a
joined end gets the underlay's MTU less 50 (1450 on a 1500-byte underlay), so no emulated
packet is dropped or fragmented on the underlay; with a jumbo-frame underlay (>= 1550) nothing
needs lowering.  The delay, rate and loss of the link stay where the engine emulates them (on
the emulating host); the tunnel adds only the underlay's own delay (measured: bench cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.cluster.split import VXLAN_OVERHEAD
from testbed.lifecycle.sh import ip_batch

DEFAULT_PORT = 4789


@dataclass(frozen=True)
class Tunnel:
    vni: int
    local: str  # this host's underlay address
    remote: str  # the peer host's underlay address
    port: int = DEFAULT_PORT

    def spec(self) -> str:
        # nolearning: one remote per device, nothing to learn; the fixed remote carries
        # unknown-unicast and broadcast (ARP) too
        return (f"type vxlan id {self.vni} local {self.local} remote {self.remote} "
                f"dstport {self.port} nolearning")


def names(tag: str, vni: int) -> tuple[str, str]:
    """(VXLAN device, bridge) of a gateway-side end: s<tag>x<vni>, s<tag>g<vni> (<= 15 chars:
    VNIs below 10^8)."""
    return f"s{tag}x{vni}", f"s{tag}g{vni}"


def gateway_batches(gw_ns: str, end_dev: str, tag: str, t: Tunnel,
                    mtu: int) -> tuple[list[str], list[str]]:
    """(root-namespace lines, gateway-namespace lines) that bridge the engine's end `end_dev`
    (already in the gateway namespace) to a VXLAN toward the node's host."""
    vx, br = names(tag, t.vni)
    root = [f"link add {vx} {t.spec()}", f"link set dev {vx} netns {gw_ns}"]
    gw = [f"link add {br} type bridge",
          f"link set dev {br} mtu {mtu}",
          f"link set dev {vx} mtu {mtu} master {br}",
          f"link set dev {end_dev} mtu {mtu} master {br}",
          f"link set dev {vx} up", f"link set dev {end_dev} up", f"link set dev {br} up"]
    return root, gw


def joined_batches(node_ns: str, dev: str, t: Tunnel, mtu: int,
                   ifname: str | None = None) -> tuple[list[str], list[str]]:
    """(root-namespace lines, node-namespace lines) that give the node its end of the link:
    a VXLAN device named `dev` (the endpoint's creation name, which the builder renames) -
    or `ifname` directly when the caller configures it itself."""
    final = ifname or dev
    root = [f"link add {dev} {t.spec()}",
            f"link set dev {dev} netns {node_ns}" + (f" name {ifname}" if ifname else "")]
    return root, [f"link set dev {final} mtu {mtu}"]


def underlay_mtu_for(mtu: int) -> int:
    return mtu + VXLAN_OVERHEAD


def as_script(batches: list[tuple[str | None, list[str]]]) -> str:
    """Shell text for a remote host (over SSH): each (namespace or None, lines) as one
    `ip -batch`."""
    out = ["set -e"]
    for ns, lines in batches:
        if lines:
            head = f"ip -n {ns} -batch - <<'EOF'" if ns else "ip -batch - <<'EOF'"
            out += [head, *lines, "EOF"]
    return "\n".join(out) + "\n"


def apply(batches: list[tuple[str | None, list[str]]]) -> None:
    """The same on this host (a share joins its own ends)."""
    for ns, lines in batches:
        ip_batch(lines, ns)
