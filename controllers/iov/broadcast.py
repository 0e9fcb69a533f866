"""Intra-shard broadcast for DRDST (arXiv 2412.04742): a tree that minimises the MAXIMUM
broadcast latency from the shard's root to every member, plus the baselines it beats.

The paper improves tree broadcasting so that the slowest member of each shard hears a message
as early as possible (a third-party summary names the structure S-MLBT, a shard
minimum-latency broadcast tree).  Its full text could not be read here; the latency model and
the construction below are this module's, stated so they can be checked against the paper.

Latency model (as briefed; Assumed where the paper's differs): a node forwards to its children
one after another, each send occupying its uplink for `tx_ms`.  The i-th child (i = 1, 2, ...)
of a parent u that received at time a_u receives at::

    a_{c_i} = a_u + i * tx_ms + latency_ms(u, c_i)

and the broadcast completes at max over members of a_v (`max_latency`).

Construction (`build_tree`), Assumed:

1. Child order.  For a fixed tree shape the best order is exact and cheap: with
   T(v) = the time v's subtree needs after v receives, a parent should serve children in
   descending order of latency(u, c) + T(c) (exchange argument: the slowest subtree gets the
   earliest slot), giving T(u) = max_i (i * tx + latency(u, c_i) + T(c_i)).  Every candidate
   tree below is re-ordered this way, which never makes it slower.
2. Candidates.  Greedy earliest-arrival (attach next the (informed, uninformed) pair whose
   arrival would be earliest, counting the parent's send queue) and greedy hardest-first
   (attach next the uninformed node whose best possible arrival is latest, to its best
   parent).
3. Local search on both greedy trees: move the subtree of a node on, or hanging off, the
   critical root-to-latest path to any other parent outside that subtree (respecting
   `fanout`), keeping a move when the completion time strictly drops; repeat until no move
   helps.
4. The fastest of the two improved trees, the re-ordered flat star and the re-ordered plain
   MST is returned (star and MST only when they respect `fanout`), so by construction the
   result is never slower than either baseline.

Baselines: `flat` (the root sends to everyone, nearest first), `mst_tree` (minimum spanning
tree over the symmetrised latency, children nearest first: tree broadcasting without the
improvement), `simulate_gossip` (push gossip with fanout f: each node forwards to f random
peers on first receipt).

A tree is a dict from every node (root included) to its ordered list of children; leaves map
to an empty list.  `children_of` is what a live relay calls.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

LatencyFn = Callable[[str, str], float]
Tree = dict[str, list[str]]

_EPS = 1e-9


# --------------------------------------------------------------------------- evaluation


def children_of(tree: Tree, node: str) -> list[str]:
    """The ordered children `node` must forward to (a copy; empty for leaves and strangers)."""
    return list(tree.get(node, ()))


def arrival_times(tree: Tree, root: str, latency_ms: LatencyFn, tx_ms: float = 1.0
                  ) -> dict[str, float]:
    """Receive time of every node reachable from `root`, children served in list order."""
    arrival = {root: 0.0}
    stack = [root]
    while stack:
        u = stack.pop()
        for i, c in enumerate(tree.get(u, ()), start=1):
            arrival[c] = arrival[u] + i * tx_ms + latency_ms(u, c)
            stack.append(c)
    return arrival


def max_latency(tree: Tree, root: str, latency_ms: LatencyFn, tx_ms: float = 1.0) -> float:
    """Completion time of a broadcast along `tree`: the latest member's receive time."""
    return max(arrival_times(tree, root, latency_ms, tx_ms).values())


def check_tree(tree: Tree, root: str, members: Sequence[str]) -> None:
    """Raise ValueError unless `tree` spans root + members, each exactly once, root parentless."""
    want = {root, *members}
    seen: list[str] = [c for kids in tree.values() for c in kids]
    if root in seen:
        raise ValueError(f"broadcast tree: root {root!r} has a parent")
    if len(seen) != len(set(seen)):
        raise ValueError("broadcast tree: a node has two parents")
    if set(seen) | {root} != want:
        raise ValueError(f"broadcast tree: covers {sorted(set(seen) | {root})}, "
                         f"expected {sorted(want)}")
    reach = arrival_times(tree, root, lambda a, b: 0.0, 0.0)
    if set(reach) != want:
        raise ValueError("broadcast tree: some members are not reachable from the root")


def order_children(tree: Tree, root: str, latency_ms: LatencyFn, tx_ms: float = 1.0) -> Tree:
    """Same shape, children re-ordered optimally (slowest subtree first); never slower."""
    names = list(arrival_times(tree, root, lambda a, b: 0.0, 0.0))
    idx = {nm: i for i, nm in enumerate(names)}
    lat = _matrix(names, latency_ms)
    kids = [[idx[c] for c in tree.get(nm, ())] for nm in names]
    _, ordered = _tails(kids, lat, tx_ms, 0)
    return _to_tree(names, ordered)


# --------------------------------------------------------------------------- baselines


def flat(root: str, members: Sequence[str], latency_ms: LatencyFn | None = None) -> Tree:
    """Star: the root sends to every member itself (nearest first when latencies are given)."""
    rest = _members(root, members)
    if latency_ms is not None:
        rest.sort(key=lambda m: latency_ms(root, m))
    tree: Tree = {root: rest}
    tree.update({m: [] for m in rest})
    return tree


def mst_tree(root: str, members: Sequence[str], latency_ms: LatencyFn) -> Tree:
    """Plain tree broadcast: minimum spanning tree of the symmetrised latencies, hung from the
    root, children served nearest first.  Unreachable pairs weigh 1e12 ms."""
    names = [root, *_members(root, members)]
    lat = _matrix(names, latency_ms)
    g = nx.Graph()
    g.add_nodes_from(range(len(names)))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            g.add_edge(i, j, weight=min((lat[i][j] + lat[j][i]) / 2.0, 1e12))
    t = nx.minimum_spanning_tree(g, algorithm="kruskal")
    kids: list[list[int]] = [[] for _ in names]
    for u, v in nx.bfs_edges(t, 0):
        kids[u].append(v)
    for u, ks in enumerate(kids):
        ks.sort(key=lambda c, u=u: lat[u][c])
    return _to_tree(names, kids)


@dataclass
class GossipResult:
    """Outcome of one push-gossip run: completion time (inf when someone was never reached),
    messages sent (duplicates included), and each reached node's first receive time."""

    completion_ms: float
    messages: int
    reached: int
    arrivals: dict[str, float] = field(default_factory=dict)


def simulate_gossip(root: str, members: Sequence[str], latency_ms: LatencyFn,
                    rng: np.random.Generator, fanout: int = 3, tx_ms: float = 1.0
                    ) -> GossipResult:
    """Push gossip: on first receipt a node sends to `fanout` distinct random peers (it does
    not know who already has the message), sequentially, `tx_ms` per send.  Deterministic for
    a seeded `rng` (peers are drawn in order of first receipt)."""
    names = [root, *_members(root, members)]
    arrivals: dict[str, float] = {}
    queue: list[tuple[float, int, str]] = [(0.0, 0, root)]
    seq, messages = 1, 0
    while queue:
        t, _, u = heapq.heappop(queue)
        if u in arrivals:
            continue
        arrivals[u] = t
        peers = [p for p in names if p != u]
        count = min(fanout, len(peers))
        for i, j in enumerate(rng.choice(len(peers), size=count, replace=False), start=1):
            p = peers[int(j)]
            messages += 1
            heapq.heappush(queue, (t + i * tx_ms + latency_ms(u, p), seq, p))
            seq += 1
    done = len(arrivals) == len(names)
    return GossipResult(max(arrivals.values()) if done else math.inf, messages, len(arrivals),
                        arrivals)


# --------------------------------------------------------------------------- the improved tree


def build_tree(root: str, members: Sequence[str], latency_ms: LatencyFn,
               fanout: int | None = None, tx_ms: float = 1.0, max_moves: int = 200) -> Tree:
    """Broadcast tree minimising the maximum receive time (module docstring): two greedy trees
    improved by critical-path subtree moves, against the star and the MST; best one wins."""
    if fanout is not None and fanout < 1:
        raise ValueError(f"build_tree: fanout must be >= 1 or None, got {fanout}")
    names = [root, *_members(root, members)]
    n = len(names)
    if n == 1:
        return {root: []}
    lat = _matrix(names, latency_ms)
    cap = fanout if fanout is not None else n
    improved = [_local_search(k, _tails(k, lat, tx_ms, 0)[0][0], lat, tx_ms, cap, max_moves)
                for k in (_greedy_earliest(lat, tx_ms, cap), _greedy_hardest(lat, tx_ms, cap))]
    idx = {nm: i for i, nm in enumerate(names)}
    plain = []
    for tree in (flat(root, names[1:], latency_ms), mst_tree(root, names[1:], latency_ms)):
        kids = [[idx[c] for c in tree.get(nm, ())] for nm in names]
        if max(len(k) for k in kids) <= cap:
            plain.append(_tails(kids, lat, tx_ms, 0)[1])
    best_t, best = math.inf, improved[0]
    for kids in improved + plain:
        t = _tails(kids, lat, tx_ms, 0)[0][0]
        if t < best_t - _EPS:
            best_t, best = t, kids
    return _to_tree(names, best)


def _root_only(lat: list[list[float]], tx: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    """A greedy construction's start: only the root (index 0) informed, its first send
    leaving after tx.  `ready`: when an informed node's next send would leave."""
    n = len(lat)
    ready = np.full(n, np.inf)
    ready[0] = tx
    informed = np.zeros(n, dtype=bool)
    informed[0] = True
    return np.array(lat, dtype=float), ready, np.zeros(n), informed, [[] for _ in range(n)]


def _greedy_earliest(lat: list[list[float]], tx: float, cap: int) -> list[list[int]]:
    """Attach, one at a time, the uninformed node that can be reached earliest."""
    n = len(lat)
    mat, ready, arrival, informed, kids = _root_only(lat, tx)
    for _ in range(n - 1):
        cost = ready[:, None] + mat
        cost[:, informed] = np.inf
        u, v = np.unravel_index(int(np.argmin(cost)), cost.shape)
        _attach(kids, ready, arrival, informed, int(u), int(v), mat, tx, cap)
    return kids


def _greedy_hardest(lat: list[list[float]], tx: float, cap: int) -> list[list[int]]:
    """Attach next the uninformed node whose best arrival is latest (serve the far ones
    before the send queues fill up), to the parent that reaches it earliest."""
    n = len(lat)
    mat, ready, arrival, informed, kids = _root_only(lat, tx)
    for _ in range(n - 1):
        cost = ready[:, None] + mat
        best_parent = np.argmin(cost, axis=0)
        best_time = cost[best_parent, np.arange(n)]
        best_time[informed] = -np.inf
        v = int(np.argmax(best_time))
        _attach(kids, ready, arrival, informed, int(best_parent[v]), v, mat, tx, cap)
    return kids


def _attach(kids: list[list[int]], ready: np.ndarray, arrival: np.ndarray, informed: np.ndarray,
            u: int, v: int, mat: np.ndarray, tx: float, cap: int) -> None:
    arrival[v] = ready[u] + mat[u, v]
    kids[u].append(v)
    informed[v] = True
    ready[v] = arrival[v] + tx
    ready[u] = ready[u] + tx if len(kids[u]) < cap else np.inf


def _tails(kids: list[list[int]], lat: list[list[float]], tx: float, root: int
           ) -> tuple[list[float], list[list[int]]]:
    """Subtree completion time T(v) of every node under optimal child order, and that order."""
    n = len(kids)
    tail = [0.0] * n
    ordered: list[list[int]] = [[] for _ in range(n)]
    post: list[int] = []
    stack = [root]
    while stack:
        u = stack.pop()
        post.append(u)
        stack.extend(kids[u])
    for u in reversed(post):
        if not kids[u]:
            continue
        row = lat[u]
        ks = sorted(kids[u], key=lambda c: row[c] + tail[c], reverse=True)
        ordered[u] = ks
        tail[u] = max(i * tx + row[c] + tail[c] for i, c in enumerate(ks, start=1))
    return tail, ordered


def _local_search(kids: list[list[int]], best_t: float, lat: list[list[float]], tx: float,
                  cap: int, max_moves: int) -> list[list[int]]:
    """First-improvement subtree moves around the critical path (module docstring, step 3)."""
    n = len(kids)
    kids = [list(k) for k in kids]
    for _ in range(max_moves):
        parent = _parents(kids)
        tail, _ = _tails(kids, lat, tx, 0)
        movers = [c for u in _critical_path(kids, lat, tx, tail) for c in kids[u]]
        improved = False
        for v in movers:
            inside = _subtree(kids, v)
            old = parent[v]
            for p in range(n):
                if p in inside or p == old or len(kids[p]) >= cap:
                    continue
                kids[old].remove(v)
                kids[p].append(v)
                t = _tails(kids, lat, tx, 0)[0][0]
                if t < best_t - _EPS:
                    best_t, improved = t, True
                    break
                kids[p].pop()
                kids[old].append(v)
            if improved:
                break
        if not improved:
            break
    return _tails(kids, lat, tx, 0)[1]


def _critical_path(kids: list[list[int]], lat: list[list[float]], tx: float,
                   tail: list[float]) -> list[int]:
    """Nodes from the root down the branch that finishes last."""
    path, u = [0], 0
    while kids[u]:
        row = lat[u]
        ks = sorted(kids[u], key=lambda c: row[c] + tail[c], reverse=True)
        terms = [i * tx + row[c] + tail[c] for i, c in enumerate(ks, start=1)]
        u = ks[int(np.argmax(terms))]
        path.append(u)
    return path


def _parents(kids: list[list[int]]) -> list[int]:
    parent = [-1] * len(kids)
    for u, ks in enumerate(kids):
        for c in ks:
            parent[c] = u
    return parent


def _subtree(kids: list[list[int]], v: int) -> set[int]:
    out, stack = set(), [v]
    while stack:
        u = stack.pop()
        out.add(u)
        stack.extend(kids[u])
    return out


# --------------------------------------------------------------------------- helpers


def _members(root: str, members: Sequence[str]) -> list[str]:
    """Members without the root and without duplicates, order kept."""
    return [m for m in dict.fromkeys(members) if m != root]


def _matrix(names: Sequence[str], latency_ms: LatencyFn) -> list[list[float]]:
    return [[0.0 if a == b else float(latency_ms(a, b)) for b in names] for a in names]


def _to_tree(names: Sequence[str], kids: list[list[int]]) -> Tree:
    return {nm: [names[c] for c in kids[i]] for i, nm in enumerate(names)}
