"""Scale: a generated 100-node SAGIN comes up and the ns-3 process keeps real time.

20 UAVs each serving a Wi-Fi cell of 2-3 of the 50 ground users, each UAV linked to one of
20 satellites (p2p, 4 ms), the satellites in a ring of inter-satellite links (3 ms), and 10
edge servers on satellite feeder links: 100 nodes, 70 links, 170 ns-3 taps.  The run pings
every link once a second for 60 s (the link probes) with captures off.  Reported: command to
first packet (time zero, probes start then), ns-3 tap attach time, real-time lag, probe loss.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.run.runner import Run, RunOptions
from testbed.scenario import parse

SIZES = [25, 50, 100, 200, 500, 1000]


def mix(n: int) -> tuple[int, int, int, int]:
    """(UAVs, users, satellites, edge servers) of the generated SAGIN with n nodes: the
    proportions of the 100-node scenario (20 / 50 / 20 / 10)."""
    uavs, sats, edges = max(1, n // 5), max(2, n // 5), max(1, n // 10)
    return uavs, n - uavs - sats - edges, sats, edges


def scenario(n: int = 100, duration_s: float = 60.0) -> dict[str, Any]:
    """n nodes: UAVs each serving a Wi-Fi cell of 2-3 ground users, each UAV linked to its
    satellite (p2p, 4 ms), the satellites in a ring of inter-satellite links (3 ms), edge
    servers on satellite feeder links (4 ms).  At 100 nodes: 70 links, 170 ns-3 taps."""
    n_uavs, n_users, n_sats, n_edges = mix(n)
    nodes: dict[str, Any] = {}
    links: list[dict[str, Any]] = []
    side = max(1, round(n_uavs ** 0.5))
    for i in range(n_uavs):
        x, y = (i % side) * 2000.0, (i // side) * 2000.0
        nodes[f"uav{i}"] = {"kind": "uav", "position": [x, y, 100.0]}
    cells: dict[int, list[str]] = {i: [] for i in range(n_uavs)}
    for u in range(n_users):
        i = u % n_uavs
        x, y, _ = nodes[f"uav{i}"]["position"]
        nodes[f"user{u}"] = {"kind": "ground_user",
                             "position": [x + 30.0 * (len(cells[i]) + 1), y + 20.0, 1.5]}
        cells[i].append(f"user{u}")
    for s in range(n_sats):
        nodes[f"sat{s}"] = {"kind": "satellite"}
    for e in range(n_edges):
        nodes[f"edge{e}"] = {"kind": "edge_server"}
    for i in range(n_uavs):
        links.append({"name": f"cell{i}", "kind": "air-to-ground",
                      "endpoints": [f"uav{i}", *cells[i]]})
        links.append({"name": f"up{i}", "kind": "satellite",
                      "endpoints": [f"uav{i}", f"sat{i % n_sats}"],
                      "delay_ms": 4, "rate_mbps": 20})
    for s in range(n_sats):
        links.append({"name": f"isl{s}", "kind": "satellite",
                      "endpoints": [f"sat{s}", f"sat{(s + 1) % n_sats}"],
                      "delay_ms": 3, "rate_mbps": 100})
    for e in range(n_edges):
        links.append({"name": f"feed{e}", "kind": "satellite",
                      "endpoints": [f"sat{(2 * e) % n_sats}", f"edge{e}"], "delay_ms": 4,
                      "rate_mbps": 100})
    return {"name": f"bench-scale-{n}", "duration_s": duration_s, "nodes": nodes,
            "links": links, "capture": {"enabled": False},
            "addressing": {"p2p_prefix": 30},
            "probes": {"link_rtt": True, "interval_s": 1.0}}


def run(console: Console) -> dict[str, Any]:
    data = scenario(100)
    sc = parse(data, "bench-scale (generated)")
    result = Run(sc, "bench-scale (generated)", RunOptions(console=console)).execute()
    m = result.metrics
    t = m.get("timings_s", {})
    losses, replies = [], 0
    for link in m.get("links", {}).values():
        for peer, v in link["measured"].items():
            if peer != "throughput" and v.get("loss_pct") is not None:
                losses.append(v["loss_pct"])
                replies += v["replies"]
    out = {
        "nodes": len(sc.nodes), "links": len(sc.links),
        "taps": sum(len(x["endpoints"]) for x in data["links"]),
        "status": result.status, "error": result.error, "run_dir": str(result.run_dir),
        "command_to_first_packet_s": t.get("command_to_time_zero_s"),
        "ns3_import_and_build_s": t.get("ns3_ready_s"),
        "ns3_tap_attach_s": t.get("ns3_tap_attach_s"),
        "health_s": t.get("health_s"), "teardown_s": t.get("teardown_s"),
        "ns3_realtime": m.get("ns3_realtime"),
        "probe_replies": replies,
        "probe_loss_pct_max": max(losses) if losses else None,
        "probe_loss_pct_mean": round(sum(losses) / len(losses), 3) if losses else None,
        "pass_bringup_30s": (t.get("command_to_time_zero_s") or 1e9) <= 30.0,
    }
    table = Table(title="Scale: 100-node SAGIN")
    table.add_column("what")
    table.add_column("value", justify="right")
    for k, v in out.items():
        if k not in ("run_dir", "error"):
            table.add_row(k, str(v))
    console.print(table)
    return out
