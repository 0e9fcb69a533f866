"""A generated SAGIN of any size: the network of the scale curve (issue 23).

Pure data (a scenario dict), used by `make bench BENCH=scale` for our side and by the Mininet
reference (testbed.bench.mininet_ref, topo "plan") for the same topology on Mininet.
"""

from __future__ import annotations

from typing import Any


def mix(n: int) -> tuple[int, int, int, int]:
    """(UAVs, users, satellites, edge servers) of the generated SAGIN with n nodes: the
    proportions of the 100-node scenario (20 / 50 / 20 / 10)."""
    uavs, sats, edges = max(1, n // 5), max(2, n // 5), max(1, n // 10)
    return uavs, n - uavs - sats - edges, sats, edges


def isls(n_sats: int) -> list[tuple[str, int, int]]:
    """Inter-satellite links: a ring up to 20 satellites (the 100-node scenario of issue 2,
    unchanged), a +Grid torus (each satellite to its right and lower neighbour) beyond, so
    the diameter grows as sqrt(n), not n (a 200-satellite ring is 100 hops across: more
    than an IP packet's TTL of 64)."""
    if n_sats <= 20:
        return [(f"isl{s}", s, (s + 1) % n_sats) for s in range(n_sats)]
    cols = round(n_sats ** 0.5)
    rows = -(-n_sats // cols)
    out: list[tuple[str, int, int]] = []
    for s in range(n_sats):
        r, c = divmod(s, cols)
        right = r * cols + (c + 1) % cols
        down = ((r + 1) % rows) * cols + c
        for k, t in (("h", right), ("v", down)):
            if t < n_sats and t != s and (f"isl{k}{t}-{s}", t, s) not in out:
                out.append((f"isl{k}{s}-{t}", s, t))
    return out


def sagin(n: int = 100, duration_s: float = 60.0) -> dict[str, Any]:
    """n nodes: UAVs each serving a Wi-Fi cell of 2-3 ground users, each UAV linked to its
    satellite (p2p, 4 ms), the satellites joined by inter-satellite links (3 ms; `isls`),
    edge servers on satellite feeder links (4 ms).  At 100 nodes: 70 links, 170 ns-3 taps."""
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
    for name, a, b in isls(n_sats):
        links.append({"name": name, "kind": "satellite", "endpoints": [f"sat{a}", f"sat{b}"],
                      "delay_ms": 3, "rate_mbps": 100})
    for e in range(n_edges):
        links.append({"name": f"feed{e}", "kind": "satellite",
                      "endpoints": [f"sat{(2 * e) % n_sats}", f"edge{e}"], "delay_ms": 4,
                      "rate_mbps": 100})
    return {"name": f"bench-scale-{n}", "duration_s": duration_s, "nodes": nodes,
            "links": links, "capture": {"enabled": False},
            "addressing": {"p2p_prefix": 30},
            "probes": {"link_rtt": True, "interval_s": 1.0}}
