"""One host's share of a multi-host run, started over SSH by the coordinator:

    python -m testbed.cluster.share SCENARIO CLUSTER_JSON HOST

It builds its part with the very code of a single-host run (testbed.net.network.Network with a
ShareView: its namespaces, the engines of the links it emulates - its own ns-3 shard(s), Open
vSwitch for its LANs -, its nodes' routes from the one global plan), joins the cross-host ends
by VXLAN (testbed.cluster.join), runs the same health checks (services, reachability from its
nodes to every node, cross-host pairs included; ns-3 delay calibration on a local link), then
waits for the common time zero, holds for the duration and tears down through its own ledger
(the same teardown as `make clean`, which also finds it after a SIGKILL).

The protocol with the coordinator is line-based: on stdout, `@@cluster {json}` events
(attached with this host's MACs, ready with its timings, done with its run folder); on stdin,
the coordinator's answers (the other hosts' MACs, `go` with the wall time of time zero, `stop`).
Anything else on stdout/stderr is the share's log.  End of stdin (the coordinator or the SSH
connection died) stops the share: it tears down rather than outlive its coordinator.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from testbed.cluster import join, split
from testbed.engines import features
from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.supervisor import Supervisor
from testbed.mobility.world import World
from testbed.net import plan as planner
from testbed.net.calibration import calibrate
from testbed.net.health import reachability, services
from testbed.net.network import Network, ShareView, preflight
from testbed.run.cleanup import teardown
from testbed.run.results import new_run, write_json
from testbed.scenario import load
from testbed.scenario.cluster import Cluster

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


def _raise(signum: int, frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def run_share(scenario: Path, info: dict[str, Any], host: str) -> int:
    t_cmd = time.monotonic()
    cluster = Cluster.model_validate(info["cluster"])
    me = cluster.host(host)
    sc = load(scenario, cut_to_s=info.get("duration_s"))
    world = World.build(sc, str(scenario))
    preflight(world.sc, str(scenario))
    gplan = planner.build(world.sc, info["global_tag"])  # the same on every host
    sp = split.split(world.sc, gplan, cluster, info["placement"])
    share = sp.shares[host]
    base = Path(info["work"]) / host / "results"
    run_id, tag, run_dir = new_run(sc.name, base)
    state_dir = Path("/run/sagin-hil") / run_id
    ledger = Ledger.create(run_id, tag, sc.name, run_dir)
    ledger.add("state_dirs", str(state_dir))
    state_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(ledger, run_dir / "logs")
    plan = split.share_plan(gplan, share, tag)
    gw = split.gateway_netns(tag)
    mtu = split.end_mtu()
    timings: dict[str, float] = {}

    def before_configure(net: Network) -> None:
        t = time.monotonic()
        batches: list[tuple[str | None, list[str]]] = []
        for c in share.remote_ends:  # engine end in the gateway namespace, bridged to VXLAN
            dev = split.end_device(gplan, c, tag)
            tunnel = join.Tunnel(c.vni, me.tunnel_address, cluster.host(c.node_host)
                                 .tunnel_address, cluster.port)
            ledger.add("root_links", join.names(tag, c.vni)[0])
            root, gwl = join.gateway_batches(gw, dev, tag, tunnel, mtu)
            batches += [(None, root), (gw, gwl)]
        for c in share.joined_ends:  # a VXLAN in the node, named like the engine's end
            dev = split.end_device(gplan, c, tag)
            tunnel = join.Tunnel(c.vni, me.tunnel_address, cluster.host(c.emulated_on)
                                 .tunnel_address, cluster.port)
            ledger.add("root_links", dev)
            root, node = join.joined_batches(plan.namespaces[c.node], dev, tunnel, mtu)
            batches += [(None, root), (plan.namespaces[c.node], node)]
        join.apply(batches)
        timings["vxlan_join_s"] = round(time.monotonic() - t, 3)
        # MACs by link/node: the names differ per host (tags), the ends do not
        mine = {f"{m.link}/{m.node}": mac for seg in plan.segments if seg.links[0] in share.links
                for m in seg.members if (mac := m.mac or net.macs.get(m.root_name))}
        emit("attached", macs=mine)
        msg = _read()
        for m in plan.endpoints():
            mac = msg.get("macs", {}).get(f"{m.link}/{m.node}")
            if mac and m.root_name not in net.macs:
                net.macs[m.root_name] = mac

    want_netem = sc.engines.p2p == "netem" or (sc.engines.p2p == "auto" and features.has_netem())
    view = ShareView(links=frozenset(share.links), gateway=gw, before_configure=before_configure,
                     mtu=dict.fromkeys(split.crossing_links(sp), mtu),
                     static_p2p=not want_netem)
    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    status, error = "failed", None
    net: Network | None = None
    man = {"host": host, "share": share.to_dict(), "run_id": run_id, "tag": tag,
           "global_tag": info["global_tag"], "coordinator_run": info["run_id"]}
    write_json(run_dir / "manifest.json", man)
    write_json(run_dir / "network.json", plan.to_dict())
    try:
        net = Network(world.sc, plan, ledger, sup, state_dir, share=view)
        net.build()
        timings.update(net.timings)
        t = time.monotonic()
        services(net)
        timings.update(reachability(net))
        timings["health_s"] = round(time.monotonic() - t, 3)
        timings.update({k: v for k, v in calibrate(net).items() if isinstance(v, float)})
        timings["command_to_ready_s"] = round(time.monotonic() - t_cmd, 3)
        emit("ready", timings=timings, namespaces=plan.namespaces, run_dir=str(run_dir),
             gateway=gw, tag=tag)
        go = float(_read()["go"])
        while time.time() < go:
            time.sleep(min(0.01, max(0.0, go - time.time())))
        t_zero = time.monotonic()
        man["time_zero_wall"] = time.time()
        stop = threading.Event()

        def watch() -> None:
            try:
                _read()
            except (Stopped, ValueError):
                pass
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
        while time.monotonic() - t_zero < sc.duration_s and not stop.is_set():
            net.check()
            time.sleep(0.2)
        status = "done" if not stop.is_set() else "stopped"
    except Stopped as exc:
        status, error = "interrupted", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, then torn down
        error = f"{type(exc).__name__}: {exc}"
        log(f"share {host} failed: {error}")
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        t = time.monotonic()
        if net is not None:
            net.stop_engines()
        sup.stop_all()
        counts = teardown(ledger)
        timings["teardown_s"] = round(time.monotonic() - t, 3)
        man.update(status=status, error=error, teardown=counts)
        write_json(run_dir / "manifest.json", man)
        write_json(run_dir / "metrics.json", {"status": status, "timings_s": timings})
        emit("done", status=status, error=error, run_dir=str(run_dir), timings=timings)
        for s, h in old.items():
            signal.signal(s, h)
    return 0 if status in ("done", "stopped") else 1


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m testbed.cluster.share SCENARIO CLUSTER_JSON HOST",
              file=sys.stderr)
        return 2
    scenario, info_path, host = Path(argv[0]), Path(argv[1]), argv[2]
    return run_share(scenario, json.loads(info_path.read_text()), host)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
