"""ABS step 1: partition a service graph so that strongly coupled components move together.

Choice: greedy heavy-edge merging (the coarsening step of multilevel partitioners such as
METIS), capacity-aware.  Virtual links are visited heaviest first; the two groups at its ends
merge when the link is "strong" (bandwidth >= the request's median virtual-link bandwidth) and
the merged group still fits whole on at least `min_hosts` nodes right now.  Why not
Kernighan-Lin or modularity communities: those balance part sizes or maximise modularity and
know nothing about what a node can host, whereas a part here is a unit that should land on one
node (its internal links then cost no bandwidth); a part no node can host would make the upper
level search an empty domain.  Deterministic and O(L log L) for L virtual links.
"""

from __future__ import annotations

import math
import statistics

from controllers.cpn.fitness import RequestContext


def min_hosts(ctx: RequestContext) -> int:
    """At least 2 nodes, or a tenth of the compute nodes, must be able to host a merged part:
    fewer would pin the part to a handful of nodes and starve the upper-level search."""
    return max(2, math.ceil(0.1 * len(ctx.infra.compute)))


def partition_service(ctx: RequestContext) -> list[list[int]]:
    """Groups of components (each sorted, groups ordered by their smallest component)."""
    req = ctx.request
    parent = list(range(req.size))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    members = {i: [i] for i in range(req.size)}
    if req.links:
        strong = statistics.median(vl.bandwidth for vl in req.links)
        need = min_hosts(ctx)
        for vl in sorted(req.links, key=lambda v: (-v.bandwidth, v.a, v.b)):
            if vl.bandwidth < strong:
                break
            ra, rb = find(vl.a), find(vl.b)
            if ra == rb:
                continue
            merged = members[ra] + members[rb]
            if len(ctx.candidates(merged)) >= need:
                parent[rb] = ra
                members[ra] = merged
                del members[rb]
    groups = [sorted(g) for g in members.values()]
    # a part no node can host (only possible for singletons' sums) splits back to singletons
    out: list[list[int]] = []
    for g in groups:
        if len(g) > 1 and not ctx.candidates(g):
            out.extend([i] for i in g)
        else:
            out.append(g)
    return sorted(out, key=lambda g: g[0])
