"""One host's share of a multi-host run, started over SSH by the coordinator:

    python -m testbed.cluster.share SCENARIO CLUSTER_JSON HOST

It is a normal run (testbed.run.runner.Run, the very code of a single-host run) given a
ShareRuntime: the plan is the one global plan (addresses, routes) limited to this host's
nodes and switches under this share's own tag; the Network builds only the links this host
emulates (its own ns-3 shard(s), Open vSwitch for its LANs), attaches remote ends in the
gateway namespace and joins the cross-host ends by VXLAN (testbed.cluster.join); the health
checks run from this host's nodes to every node (cross-host pairs included); flows run their
client where their source is and their server where their destination is; timeline link
changes are applied by the host that emulates the link, while every host updates its own
nodes' routes (the same deterministic computation on each); captures and probes cover this
host's nodes.  Then the common time zero, the timeline, teardown through its own ledger (the
same teardown as `make clean`, which also finds it after a SIGKILL).

The protocol with the coordinator is line-based: on stdout, `@@cluster {json}` events
(attached with this host's MACs, ready with its timings, done with its run folder); on stdin,
the coordinator's answers (the other hosts' MACs, `go` with the wall time of time zero, `stop`).
Anything else on stdout is the run's console.  End of stdin (the coordinator or the SSH
connection died) stops the share: it tears down rather than outlive its coordinator.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from testbed.cluster import join, split
from testbed.engines import features
from testbed.lifecycle.ledger import Ledger
from testbed.net import plan as planner
from testbed.net.network import Network, ShareView
from testbed.run.runner import Interrupted, Run, RunOptions
from testbed.scenario import Scenario, load
from testbed.scenario.cluster import Cluster
from testbed.scenario.model import EventAction

PREFIX = "@@cluster "


def emit(event: str, **data: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Stopped(Exception):
    pass


def _read() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise Stopped("the coordinator is gone (end of input)")
    msg = json.loads(line)
    if msg.get("cmd") == "stop":
        raise Stopped("stopped by the coordinator")
    return dict(msg)


class ShareRuntime:
    """What Run needs of a share (RunOptions.share): see the module's docstring."""

    def __init__(self, info: dict[str, Any], host: str) -> None:
        self.info, self.host = info, host
        self.cluster = Cluster.model_validate(info["cluster"])
        self.me = self.cluster.host(host)
        self.stop = threading.Event()
        self.gplan: planner.NetworkPlan | None = None
        self.sp: split.Split | None = None

    @property
    def share(self) -> split.Share:
        assert self.sp is not None
        return self.sp.shares[self.host]

    def restrict(self, sc: Scenario) -> Scenario:
        """The global plan and split from the (expanded) scenario - the same on every host -,
        and the scenario this host runs: flows with an end here, node actions of its nodes."""
        self.gplan = planner.build(sc, self.info["global_tag"])
        self.sp = split.split(sc, self.gplan, self.cluster, self.info["placement"])
        local = set(self.share.nodes)
        per_node = (EventAction.EXEC, EventAction.NODE_CRASH, EventAction.NODE_RESTART)
        return sc.model_copy(update={
            "traffic": [f for f in sc.traffic if f.src in local or f.dst in local],
            "timeline": [e for e in sc.timeline if e.action not in per_node or e.node in local]})

    def make_plan(self, sc: Scenario, tag: str) -> planner.NetworkPlan:
        assert self.gplan is not None
        return split.share_plan(self.gplan, self.share, tag)

    def view(self, tag: str, ledger: Ledger) -> ShareView:
        assert self.sp is not None and self.gplan is not None
        gplan = self.gplan
        gw, mtu, share, cluster, me = (split.gateway_netns(tag), split.end_mtu(), self.share,
                                       self.cluster, self.me)

        def before_configure(net: Network) -> None:
            batches: list[tuple[str | None, list[str]]] = []
            for c in share.remote_ends:  # engine end in the gateway namespace, to VXLAN
                dev = split.end_device(gplan, c, tag)
                tunnel = join.Tunnel(c.vni, me.tunnel_address,
                                     cluster.host(c.node_host).tunnel_address, cluster.port)
                ledger.add("root_links", join.names(tag, c.vni)[0])
                root, gwl = join.gateway_batches(gw, dev, tag, tunnel, mtu)
                batches += [(None, root), (gw, gwl)]
            for c in share.joined_ends:  # a VXLAN in the node, named like the engine's end
                dev = split.end_device(gplan, c, tag)
                tunnel = join.Tunnel(c.vni, me.tunnel_address,
                                     cluster.host(c.emulated_on).tunnel_address, cluster.port)
                ledger.add("root_links", dev)
                ns = net.plan.namespaces[c.node]
                root, node = join.joined_batches(ns, dev, tunnel, mtu)
                batches += [(None, root), (ns, node)]
            join.apply(batches)
            # MACs by link/node: the names differ per host (tags), the ends do not
            mine = {f"{m.link}/{m.node}": mac for seg in net.plan.segments
                    if seg.links[0] in share.links for m in seg.members
                    if (mac := m.mac or net.macs.get(m.root_name))}
            emit("attached", macs=mine)
            msg = _read()
            for m in net.plan.endpoints():
                mac = msg.get("macs", {}).get(f"{m.link}/{m.node}")
                if mac and m.root_name not in net.macs:
                    net.macs[m.root_name] = mac

        p2p = self.info.get("p2p_engine", "auto")
        want_netem = p2p == "netem" or (p2p == "auto" and features.has_netem())
        return ShareView(links=frozenset(share.links), gateway=gw,
                         before_configure=before_configure,
                         mtu=dict.fromkeys(split.crossing_links(self.sp), mtu),
                         static_p2p=not want_netem)

    def wait_for_time_zero(self, timings: dict[str, float], net: Network, run_dir: Path) -> None:
        emit("ready", timings=timings, namespaces=net.plan.namespaces, run_dir=str(run_dir),
             gateway=split.gateway_netns(net.plan.tag), tag=net.plan.tag)
        go = float(_read()["go"])

        def watch() -> None:
            try:
                _read()
            except (Stopped, ValueError):
                pass
            self.stop.set()

        threading.Thread(target=watch, daemon=True).start()
        while time.time() < go:
            time.sleep(min(0.01, max(0.0, go - time.time())))

    def check(self) -> None:
        if self.stop.is_set():
            raise Interrupted("the coordinator said stop (or is gone)")


def run_share(scenario: Path, info: dict[str, Any], host: str) -> int:
    from rich.console import Console

    sc = load(scenario)
    rt = ShareRuntime(info, host)
    rt.info.setdefault("p2p_engine", sc.engines.p2p)
    # SIGHUP (the session's end) tears down like SIGTERM
    signal.signal(signal.SIGHUP, lambda s, f: os.kill(os.getpid(), signal.SIGTERM))
    base = Path(info["work"]) / host / "results"
    opts = RunOptions(results_base=base, analyze=False, share=rt,
                      console=Console(file=sys.stderr, width=100))
    try:
        result = Run(sc, str(scenario), opts).execute()
    except Exception as exc:  # noqa: BLE001 - before the run existed: report and end
        emit("done", status="failed", error=f"{type(exc).__name__}: {exc}", run_dir=None,
             timings={})
        return 1
    emit("done", status=result.status, error=result.error, run_dir=str(result.run_dir),
         timings=result.metrics.get("timings_s", {}))
    return 0 if result.status == "done" else 1


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m testbed.cluster.share SCENARIO CLUSTER_JSON HOST",
              file=sys.stderr)
        return 2
    scenario, info_path, host = Path(argv[0]), Path(argv[1]), argv[2]
    return run_share(scenario, json.loads(info_path.read_text()), host)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
