"""Which neighbour sends which shard of the state to a joining node (Chaos's shard scheduler).

The problem (our reading of arXiv 2505.12815; the stored text has only the abstract, which
says the sharding and assignment is a MILP whose greedy solution is optimal): the state of S
bytes is cut into shards; neighbour i reaches the joiner at bandwidth b_i (bytes/s) after a
set-up latency l_i; choose x_ij in {0, 1} (shard j from neighbour i, each shard once) to
minimise the makespan T with  l_i + sum_j x_ij s_j / b_i <= T  for every neighbour that sends.
We cut the state into equal shards (the simplest divisibility chain: every shard size divides
the state's), which makes the problem scheduling identical jobs on uniform machines, where
the greedy rule "give the next shard to the neighbour that would finish it first" is optimal
(the classic exchange argument; tests/test_training.py checks it against scipy's MILP solver
on random instances).  The shard count trades balance (one shard of slack at most) against
per-shard overhead; `shard_count` picks it from the state size and the neighbour count.

Single-source replication (the baseline) is the degenerate plan: everything from the one
neighbour with the highest bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_SHARD = 64 * 1024


@dataclass(frozen=True)
class Source:
    name: str
    bandwidth: float  # bytes/s, as measured by the joiner's probe (or the cluster monitor)
    latency: float = 0.0  # s until its first byte (request round trip)


@dataclass
class Plan:
    """Shards [start, end) of the state per neighbour, and what the plan expects of them."""

    size: int
    shards: list[tuple[int, int]]
    assign: dict[str, list[int]] = field(default_factory=dict)  # neighbour -> shard indices
    expected_s: dict[str, float] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return max(self.expected_s.values(), default=0.0)

    def bytes_of(self, name: str) -> int:
        return sum(self.shards[j][1] - self.shards[j][0] for j in self.assign.get(name, []))

    def describe(self) -> list[dict[str, object]]:
        return [{"neighbour": n, "shards": len(js), "bytes": self.bytes_of(n),
                 "expected_s": round(self.expected_s[n], 4)} for n, js in self.assign.items()]


def cut(size: int, count: int) -> list[tuple[int, int]]:
    """`count` contiguous shards of (nearly) equal size covering [0, size)."""
    count = max(1, min(count, size)) if size else 1
    edges = [size * k // count for k in range(count + 1)]
    return [(edges[k], edges[k + 1]) for k in range(count)]


def shard_count(size: int, sources: int) -> int:
    """Enough shards to balance `sources` neighbours within ~1/16 of the makespan, none
    smaller than 64 KB (each shard is one request's worth of framing)."""
    return max(1, min(16 * max(1, sources), math.ceil(size / MIN_SHARD)))


def greedy(size: int, sources: list[Source], shards: int | None = None) -> Plan:
    """Chaos's multi-neighbour plan: each shard to the neighbour finishing it earliest."""
    parts = cut(size, shards or shard_count(size, len(sources)))
    return _assign(Plan(size, parts), list(range(len(parts))), sources)


def _assign(plan: Plan, todo: list[int], sources: list[Source]) -> Plan:
    if not sources:
        raise ValueError("no neighbour to replicate the state from")
    by_name = {s.name: s for s in sources}
    load = dict.fromkeys(by_name, 0)
    assign: dict[str, list[int]] = {s.name: [] for s in sources}

    def finish(name: str, extra: int) -> float:
        s = by_name[name]
        return s.latency + (load[name] + extra) / max(s.bandwidth, 1e-9)

    # shards are equal up to a byte, so the order they are handed out in does not matter
    for j in todo:
        a, b = plan.shards[j]
        name = min(by_name, key=lambda n: (finish(n, b - a), n))
        assign[name].append(j)
        load[name] += b - a
    plan.assign = {n: js for n, js in assign.items() if js}
    plan.expected_s = {n: finish(n, 0) for n in plan.assign}
    return plan


def single(size: int, sources: list[Source]) -> Plan:
    """The baseline: every byte from the best single neighbour."""
    if not sources:
        raise ValueError("no neighbour to replicate the state from")
    best = max(sources, key=lambda s: (s.bandwidth, -s.latency))
    parts = cut(size, max(1, math.ceil(size / (4 * MIN_SHARD))))
    return _assign(Plan(size, parts), list(range(len(parts))), [best])


def replan(plan: Plan, done: set[int], sources: list[Source]) -> Plan:
    """The shards not yet received, over the neighbours still alive (a sender crashed)."""
    left = [j for j in range(len(plan.shards)) if j not in done]
    return _assign(Plan(plan.size, plan.shards), left, sources)


def milp_makespan(size: int, sources: list[Source], shards: int) -> float:
    """The MILP's optimum, solved exactly by scipy (for the tests and the docs' check)."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    parts = cut(size, shards)
    m, n = len(sources), len(parts)
    # variables: x_ij (m*n binaries), T
    c = np.zeros(m * n + 1)
    c[-1] = 1.0
    rows, lo, hi = [], [], []
    for j in range(n):  # every shard exactly once
        r = np.zeros(m * n + 1)
        r[[i * n + j for i in range(m)]] = 1
        rows.append(r)
        lo.append(1)
        hi.append(1)
    # l_i + sum_j x_ij s_j / b_i <= T, for every i that sends at least one shard; l_i is added
    # through y_i >= x_ij would need more binaries - with l_i small against transfer times we
    # model it as always paid, which greedy() also does for any neighbour it uses
    for i, s in enumerate(sources):
        r = np.zeros(m * n + 1)
        for j, (a, b) in enumerate(parts):
            r[i * n + j] = (b - a) / s.bandwidth
        r[-1] = -1.0
        rows.append(r)
        lo.append(-np.inf)
        hi.append(-s.latency)
    integrality = np.r_[np.ones(m * n), 0]
    bounds = Bounds(np.r_[np.zeros(m * n), 0], np.r_[np.ones(m * n), np.inf])
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi),
               integrality=integrality, bounds=bounds)
    if not res.success:
        raise RuntimeError(res.message)
    return float(res.x[-1])


def ring_order(members: list[str], rtt_ms: dict[tuple[str, str], float]) -> list[str]:
    """The all-reduce ring through the members: a short tour over the monitor's round trips
    (nearest neighbour from the first name, then 2-opt), so each ring hop is a near pair.  A
    pair the monitor has no figure for counts as far (1 s).  Deterministic: every node that
    computes it from the same matrix gets the same ring."""
    ms = sorted(members)
    if len(ms) <= 3:
        return ms

    def d(a: str, b: str) -> float:
        return rtt_ms.get((a, b), rtt_ms.get((b, a), 1000.0))

    tour = [ms[0]]
    left = set(ms[1:])
    while left:
        nxt = min(left, key=lambda n: (d(tour[-1], n), n))
        tour.append(nxt)
        left.discard(nxt)
    improved = True
    while improved:
        improved = False
        for i in range(1, len(tour) - 1):
            for k in range(i + 1, len(tour)):
                a, b, c, e = tour[i - 1], tour[i], tour[k], tour[(k + 1) % len(tour)]
                if d(a, c) + d(b, e) < d(a, b) + d(c, e) - 1e-9:
                    tour[i:k + 1] = reversed(tour[i:k + 1])
                    improved = True
    return tour


def ring_cost(ring: list[str], rtt_ms: dict[tuple[str, str], float]) -> float:
    """Sum of the ring's hop round trips (ms): what one all-reduce phase sequence waits for."""
    if len(ring) < 2:
        return 0.0
    return sum(rtt_ms.get((a, b), rtt_ms.get((b, a), 1000.0))
               for a, b in zip(ring, ring[1:] + ring[:1], strict=True))
