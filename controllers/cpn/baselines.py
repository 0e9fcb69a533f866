"""Constructive baselines: first fit, best fit, random, and the classic two-stage VNE mapper.

first_fit / best_fit / random place components one at a time in service order (fitness.py) and
route each virtual link when its second end is placed, by the latency-shortest path with enough
residual bandwidth; a node is taken only if those links route within the bound.  They differ in
the node order they try:

* first_fit - compute nodes by index (the textbook first fit).
* best_fit - the node left with the least CPU after placement: packs nodes tightly, which keeps
  large nodes whole for large components.
* random - a random node order, the whole placement retried `retries` times.

two_stage (Yu et al., "Rethinking virtual network embedding", CCR 2008, with the node rank of
that line of work): node mapping first, components in decreasing rank (CPU times incident
bandwidth) each on the highest-ranked node that still fits, rank = residual CPU times residual
bandwidth of the node's links - restricted, since this problem has latency bounds, to nodes
whose unloaded latency to the already placed neighbours is within the bound (a lower-bound
filter only, no routing); then link mapping, heaviest virtual link first, each on the first
of its k latency-shortest paths with enough residual bandwidth and latency within the bound.  No
backtracking between the stages - which is its known weakness and why it is a baseline.
"""

from __future__ import annotations

import numpy as np

from controllers.cpn.fitness import RequestContext, best_fit_ranking
from controllers.cpn.model import EPS, Mapping, Path, ServiceRequest, State


def _decode(ctx: RequestContext, x: tuple[int, ...] | None) -> Mapping | None:
    return None if x is None else ctx.decode(x)


class FirstFit:
    name = "first_fit"

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        ctx = RequestContext.from_state(state, request)
        return _decode(ctx, ctx.place_greedily(lambda comp, cands, load: cands))


class BestFit:
    name = "best_fit"

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        ctx = RequestContext.from_state(state, request)
        return _decode(ctx, ctx.place_greedily(best_fit_ranking(ctx)))


class RandomFit:
    name = "random"

    def __init__(self, retries: int = 5) -> None:
        self.retries = retries

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        ctx = RequestContext.from_state(state, request)
        for _ in range(self.retries):
            x = ctx.place_greedily(
                lambda comp, cands, load: [cands[i] for i in rng.permutation(len(cands))])
            if x is not None:
                return ctx.decode(x)
        return None


class TwoStage:
    name = "two_stage"

    def __init__(self, k_paths: int = 5) -> None:
        self.k_paths = k_paths

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        infra = state.infra
        ctx = RequestContext.from_state(state, request)
        cpu, mem, bw = ctx.cpu, ctx.mem, ctx.bw
        adj_bw = [sum(bw[link] for _, link, _ in infra.adj[u]) for u in range(infra.n)]
        demand_bw = [0.0] * request.size
        for vl in request.links:
            demand_bw[vl.a] += vl.bandwidth
            demand_bw[vl.b] += vl.bandwidth
        if request.entry is not None:
            demand_bw[request.entry] += request.entry_bandwidth
        comps = sorted(range(request.size),
                       key=lambda i: (-request.cpu[i] * max(demand_bw[i], 1.0), i))
        load_cpu: dict[int, float] = {}
        load_mem: dict[int, float] = {}
        nbrs: list[list[int]] = [[] for _ in range(request.size)]
        for vl in request.links:
            nbrs[vl.a].append(vl.b)
            nbrs[vl.b].append(vl.a)
        bound = request.latency_bound + EPS
        x = [-1] * request.size
        for i in comps:
            placed = [x[j] for j in nbrs[i] if x[j] >= 0]
            fits = [u for u in ctx.candidates((i,))
                    if cpu[u] - load_cpu.get(u, 0.0) >= request.cpu[i] - EPS
                    and mem[u] - load_mem.get(u, 0.0) >= request.mem[i] - EPS
                    and all(infra.static_dist(u, v) <= bound for v in placed)]
            if not fits:
                return None
            u = max(fits, key=lambda n: ((cpu[n] - load_cpu.get(n, 0.0)) * adj_bw[n], -n))
            x[i] = u
            load_cpu[u] = load_cpu.get(u, 0.0) + request.cpu[i]
            load_mem[u] = load_mem.get(u, 0.0) + request.mem[i]
        flows: list[tuple[int, int, int, float]] = [
            (k, x[vl.a], x[vl.b], vl.bandwidth) for k, vl in enumerate(request.links)]
        if request.entry is not None and request.ingress is not None:
            flows.append((-1, request.ingress, x[request.entry], request.entry_bandwidth))
        flows.sort(key=lambda f: (-f[3], f[0]))
        used: dict[int, float] = {}
        paths: dict[int, Path] = {}
        for k, u, v, need in flows:
            if u == v:
                paths[k] = ()
                continue
            for path, lat in infra.k_shortest(u, v, self.k_paths):
                if lat <= request.latency_bound + EPS and all(
                        bw[link] - used.get(link, 0.0) >= need - EPS for link in path):
                    break
            else:
                return None
            paths[k] = path
            for link in path:
                used[link] = used.get(link, 0.0) + need
        return Mapping(request, tuple(x), tuple(paths[k] for k in range(len(request.links))),
                       paths.get(-1, ()))
