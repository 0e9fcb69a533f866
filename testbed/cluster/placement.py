"""Which host runs which node: a min-cut partition of the scenario's link graph.

Every cut link costs a VXLAN tunnel between two hosts, and the busier the link, the more of
the hosts' real network it loads; so the partitioner minimises the summed *rate* of the cut
links while keeping the hosts' node counts balanced:

* the graph: one vertex per node (switches included), one edge per pair of endpoints of a
  link (a multi-endpoint Wi-Fi channel is a clique), weighted by the link's rate in Mb/s
  (`rate_mbps`; a Wi-Fi channel's data mode rate, e.g. OfdmRate36Mbps -> 36; else
  DEFAULT_WEIGHT);
* recursive bisection: the hosts are halved, the nodes split in proportion, and each half
  refined by Fiduccia-Mattheyses passes (Kernighan-Lin's single-move form, which - unlike
  networkx's kernighan_lin_bisection - lets pinned nodes stay where they are pinned and allows
  the sizes to move within the balance tolerance);
* pins (`cluster.placement.pins`) are honoured exactly;
* deterministic: the same scenario and hosts always give the same placement (ties are broken
  by the scenario's node order), so every share computes the same answer on its own.
"""

from __future__ import annotations

import math
import re
from collections import deque

import networkx as nx

from testbed.scenario.model import Medium, Scenario

STARTS = 8  # initial partitions tried per bisection
DEFAULT_WEIGHT = 10.0  # Mb/s assumed for a link with no rate (a Wi-Fi channel of no known mode)


def link_weight(sc: Scenario, name: str) -> float:
    link = sc.link(name)
    if link.rate_mbps:
        return float(link.rate_mbps)
    if link.carried_by is Medium.WIFI and link.wifi is not None:
        m = re.search(r"Rate(\d+(?:_\d+)?)Mbps", link.wifi.data_mode)
        if m:
            return float(m.group(1).replace("_", "."))
    return DEFAULT_WEIGHT


def link_graph(sc: Scenario) -> nx.Graph:
    """Nodes joined by their links, parallel links' weights summed."""
    g = nx.Graph()
    g.add_nodes_from(sc.nodes)
    for link in sc.links:
        w = link_weight(sc, link.name)
        for i, a in enumerate(link.endpoints):
            for b in link.endpoints[i + 1:]:
                if g.has_edge(a, b):
                    g[a][b]["weight"] += w
                else:
                    g.add_edge(a, b, weight=w)
    return g


def cut_weight(g: nx.Graph, place: dict[str, str]) -> float:
    return sum(d["weight"] for a, b, d in g.edges(data=True) if place[a] != place[b])


def partition(sc: Scenario, hosts: list[str], pins: dict[str, str] | None = None,
              balance: float = 0.2) -> dict[str, str]:
    """node -> host for every node of the scenario."""
    if not hosts:
        raise ValueError("no hosts to place the nodes on")
    pins = dict(pins or {})
    g = link_graph(sc)
    order = {n: i for i, n in enumerate(sc.nodes)}
    place: dict[str, str] = {}
    _bisect(g, sorted(g.nodes, key=order.__getitem__), list(hosts), pins, balance, order, place)
    return place


def _bisect(g: nx.Graph, nodes: list[str], hosts: list[str], pins: dict[str, str],
            balance: float, order: dict[str, int], place: dict[str, str]) -> None:
    if len(hosts) == 1:
        place.update(dict.fromkeys(nodes, hosts[0]))
        return
    left_hosts, right_hosts = hosts[:math.ceil(len(hosts) / 2)], hosts[math.ceil(len(hosts) / 2):]
    locked = {n: (0 if pins[n] in left_hosts else 1) for n in nodes if n in pins}
    n = len(nodes)
    target = round(n * len(left_hosts) / len(hosts))
    slack = max(1, math.floor(balance * n * len(left_hosts) / len(hosts) / 2))
    must_left = sum(1 for s in locked.values() if s == 0)
    must_right = sum(1 for s in locked.values() if s == 1)
    lo = max(must_left, target - slack, 0)
    hi = min(n - must_right, target + slack)
    lo, hi = min(lo, hi), max(lo, hi)
    target = min(max(target, lo), hi)
    # a few starts (from the pinned-left nodes, else from each of the first nodes), each
    # refined; the smallest cut wins, ties to the earliest start: deterministic
    members = set(nodes)
    best: tuple[float, dict[str, int]] | None = None
    starts = [None] if any(s == 0 for s in locked.values()) else \
        [v for v in nodes if v not in locked][:STARTS] or [None]
    for seed in starts:
        side = _initial(g, nodes, locked, target, order, seed)
        _refine(g, nodes, side, locked, lo, hi, order)
        cut = sum(d["weight"] for a, b, d in g.edges(data=True)
                  if a in members and b in members and side[a] != side[b])
        if best is None or cut < best[0] - 1e-9:
            best = (cut, side)
    assert best is not None
    side = best[1]
    _bisect(g, [v for v in nodes if side[v] == 0], left_hosts, pins, balance, order, place)
    _bisect(g, [v for v in nodes if side[v] == 1], right_hosts, pins, balance, order, place)


def _initial(g: nx.Graph, nodes: list[str], locked: dict[str, int], target: int,
             order: dict[str, int], seed: str | None) -> dict[str, int]:
    """Left side grown breadth-first (heaviest links first) from the pinned-left nodes, or
    from the first node: a connected start that the refinement then improves."""
    members = set(nodes)
    side = dict.fromkeys(nodes, 1)
    for v, s in locked.items():
        side[v] = s
    size = sum(1 for s in side.values() if s == 0)
    seeds = [v for v in nodes if locked.get(v) == 0] or [seed if seed is not None else nodes[0]]
    queue = deque(seeds)
    seen = set(seeds)
    while size < target:
        if not queue:
            rest = [v for v in nodes if v not in seen and v not in locked]
            if not rest:
                break
            queue.append(rest[0])
            seen.add(rest[0])
        v = queue.popleft()
        if side[v] == 1 and v not in locked:
            side[v] = 0
            size += 1
        nbrs = sorted((u for u in g[v] if u in members and u not in seen),
                      key=lambda u: (-g[v][u]["weight"], order[u]))
        for u in nbrs:
            seen.add(u)
            queue.append(u)
    return side


def _refine(g: nx.Graph, nodes: list[str], side: dict[str, int], locked: dict[str, int],
            lo: int, hi: int, order: dict[str, int], passes: int = 8) -> None:
    """Fiduccia-Mattheyses passes: move the free node of best gain that keeps the left size
    within [lo, hi], each node once per pass, then keep the best prefix of the moves."""
    members = set(nodes)

    def gain(v: str) -> float:
        ext = sum(d["weight"] for u, d in g[v].items() if u in members and side[u] != side[v])
        inn = sum(d["weight"] for u, d in g[v].items() if u in members and side[u] == side[v])
        return ext - inn

    for _ in range(passes):
        size = sum(1 for v in nodes if side[v] == 0)
        moved: list[str] = []
        total = best = 0.0
        best_len = 0
        free = [v for v in nodes if v not in locked]
        done: set[str] = set()
        while True:
            cands = []
            for v in free:
                if v in done:
                    continue
                new = size - 1 if side[v] == 0 else size + 1
                if lo <= new <= hi:
                    cands.append((-gain(v), order[v], v))
            if not cands:
                break
            _, _, v = min(cands)
            total += gain(v)
            size += -1 if side[v] == 0 else 1
            side[v] ^= 1
            done.add(v)
            moved.append(v)
            if total > best + 1e-9:
                best, best_len = total, len(moved)
        for v in moved[best_len:]:
            side[v] ^= 1
        if best_len == 0:
            return
