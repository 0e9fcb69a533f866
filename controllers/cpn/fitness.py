"""Per-decision context shared by every mapper: candidate nodes, routing, and the fitness.

One `RequestContext` lives for one mapping decision.  It copies the residual capacities into
plain lists (numpy scalar access is ~10x slower than list access in the per-candidate loops),
caches bandwidth-constrained shortest-path trees per (source, demand), and memoises the fitness
of every component -> node vector it has scored, so a metaheuristic revisiting a vector pays
nothing and the evaluation budget counts distinct candidates only.

Routing rule (all mappers but two_stage): each virtual link takes the latency-shortest path
among links with enough residual bandwidth, in a fixed order - the ingress path first, then the
components in breadth-first order from the entry (heaviest virtual link first), each routing its
links to components placed before it.  Greedy placement and the fitness use this same order, so
a vector the greedy mappers accept scores as feasible here too.

Fitness (lower is better; `PENALTY` + a violation count for infeasible vectors so that a swarm
still climbs towards feasibility):

* "cost": bandwidth * hops per unit of requested bandwidth - the standard VNE embedding cost
  (the CPU part of that cost is the same for every placement, so it drops out).
* "frag": the cost above plus the *change* in stranded CPU (model.stranded: free CPU on nodes
  where a typical component no longer fits, or whose links can no longer carry a typical
  virtual link) per unit of requested CPU, plus the change in stranded bandwidth (free
  bandwidth on links that can no longer carry a typical virtual link) per unit of requested
  bandwidth, weighted by `FragWeights`.  Filling up a fragment is rewarded, leaving a sliver
  is penalised: this is the fragmentation-aware evaluation of ABS.  The weights (1, 5, 0.5)
  were chosen on development seeds 1-3 of the complex preset (the evaluation uses 10_000+);
  acceptance moved by about +-1 point over weights 1-10 on stranded CPU, so they are not a
  finely tuned optimum.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controllers.cpn.model import (
    EPS,
    Infrastructure,
    Mapping,
    Path,
    ServiceRequest,
    State,
    dijkstra,
    max_link_free,
    stranded,
)

PENALTY = 1000.0
Vector = tuple[int, ...]


@dataclass(frozen=True)
class FragWeights:
    """Weights of the "frag" fitness: hop cost, stranded CPU, stranded bandwidth."""

    hops: float = 1.0
    cpu: float = 5.0
    bw: float = 0.5


def service_order(request: ServiceRequest) -> list[int]:
    """Breadth-first component order from the entry (else the largest component), heaviest
    virtual link first; disconnected parts start again from their largest component."""
    c = request.size
    nbrs: list[list[tuple[float, int]]] = [[] for _ in range(c)]
    for vl in request.links:
        nbrs[vl.a].append((vl.bandwidth, vl.b))
        nbrs[vl.b].append((vl.bandwidth, vl.a))
    for lst in nbrs:
        lst.sort(key=lambda t: (-t[0], t[1]))
    seen = [False] * c
    order: list[int] = []
    roots = sorted(range(c), key=lambda i: (-request.cpu[i], i))
    if request.entry is not None:
        roots.insert(0, request.entry)
    for root in roots:
        if seen[root]:
            continue
        seen[root] = True
        queue = [root]
        while queue:
            i = queue.pop(0)
            order.append(i)
            for _, j in nbrs[i]:
                if not seen[j]:
                    seen[j] = True
                    queue.append(j)
    return order


class RequestContext:
    """Everything a mapper needs to score and route candidates for one request."""

    def __init__(self, infra: Infrastructure, cpu: Sequence[float], mem: Sequence[float],
                 bw: Sequence[float], typical: tuple[float, float, float],
                 request: ServiceRequest, objective: str = "cost",
                 weights: FragWeights | None = None) -> None:
        if objective not in ("cost", "frag"):
            raise ValueError(f"objective must be 'cost' or 'frag', not {objective!r}")
        self.infra = infra
        self.request = request
        self.cpu = list(cpu)
        self.mem = list(mem)
        self.bw = list(bw)
        self.typical = typical
        self.objective = objective
        self.weights = weights or FragWeights()
        self.bound = request.latency_bound
        self.order = service_order(request)
        pos = {comp: k for k, comp in enumerate(self.order)}
        # links each component routes when it is placed: to components placed before it
        self.back: list[list[int]] = [[] for _ in range(request.size)]
        for k, vl in enumerate(request.links):
            later = vl.a if pos[vl.a] > pos[vl.b] else vl.b
            self.back[later].append(k)
        self.req_cpu = max(request.total_cpu(), EPS)
        self.req_bw = max(sum(vl.bandwidth for vl in request.links) + request.entry_bandwidth,
                          EPS)
        self._levels = sorted(self.bw)
        self._link_free = max_link_free(infra, self.bw)
        self._trees: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
        self._blocked: dict[tuple[int, int, int, frozenset[int]],
                            tuple[list[float], list[int]]] = {}
        self._adjs: dict[int, list[list[tuple[int, int, float]]]] = {}
        self._cache: dict[Vector, float] = {}
        self._cand: dict[tuple[int, ...], list[int]] = {}
        self.evals = 0

    @classmethod
    def from_state(cls, state: State, request: ServiceRequest, objective: str = "cost",
                   weights: FragWeights | None = None) -> RequestContext:
        return cls(state.infra, state.cpu.tolist(), state.mem.tolist(), state.bw.tolist(),
                   state.typical, request, objective, weights)

    # -- candidates --

    def candidates(self, group: Sequence[int]) -> list[int]:
        """Compute nodes that can host all of `group` at once (CPU, memory, and - when the group
        holds the entry - the least-latency bound from the ingress)."""
        key = tuple(sorted(group))
        found = self._cand.get(key)
        if found is None:
            req = self.request
            need_cpu = sum(req.cpu[i] for i in key)
            need_mem = sum(req.mem[i] for i in key)
            found = [u for u in self.infra.compute
                     if self.cpu[u] >= need_cpu - EPS and self.mem[u] >= need_mem - EPS]
            if req.entry is not None and req.entry in key and req.ingress is not None:
                dist = self.infra.static_tree(req.ingress)[0]
                found = [u for u in found if dist[u] <= self.bound + EPS]
            self._cand[key] = found
        return found

    # -- routing --

    def route(self, u: int, v: int, need: float, used: dict[int, float]) -> Path | None:
        """Latency-shortest path u -> v with `need` Mbit/s free after `used`, within the bound."""
        if u == v:
            return ()
        static = self.infra.static_path(u, v)
        if static is None or static[1] > self.bound + EPS:
            return None  # even the unloaded network is too slow
        bw = self.bw
        links = static[0]
        if all(bw[link] - used.get(link, 0.0) >= need - EPS for link in links):
            return links
        # the usable link set only changes where `need` crosses a residual value: key the tree
        # by that crossing, so one tree serves every demand between two residual levels
        level = bisect.bisect_left(self._levels, need - EPS)
        key = (u, level)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._trees[key] = dijkstra(self._adj(level), u, self.bound)
        dist, pred = tree
        if dist[v] > self.bound + EPS:
            return None
        path = self.infra.walk_back(pred, u, v)
        if all(bw[link] - used.get(link, 0.0) >= need - EPS for link in path):
            return path
        # links this candidate's earlier virtual links have filled up: few, and the same ones
        # recur across candidates, so trees avoiding them are worth caching too
        blocked = frozenset(link for link, x in used.items() if bw[link] - x < need - EPS)
        bkey = (u, v, level, blocked)
        tree = self._blocked.get(bkey)
        if tree is None:
            tree = self._blocked[bkey] = dijkstra(self._adj(level), u, self.bound, v, blocked)
        dist, pred = tree
        if dist[v] > self.bound + EPS:
            return None
        return self.infra.walk_back(pred, u, v)

    def _adj(self, level: int) -> list[list[tuple[int, int, float]]]:
        """Adjacency without the links whose residual is below residual level `level`."""
        adj = self._adjs.get(level)
        if adj is None:
            floor = self._levels[level] if level < len(self._levels) else math.inf
            bw = self.bw
            adj = self._adjs[level] = [[e for e in row if bw[e[1]] >= floor]
                                       for row in self.infra.adj]
        return adj

    def _route_component(self, comp: int, node: int, x: Sequence[int],
                         used: dict[int, float],
                         paths: dict[int, Path]) -> int:
        """Route the links `comp` owns given placements in x; claim bandwidth in `used`.
        Returns the number of links that could not be routed."""
        req = self.request
        fails = 0
        if comp == req.entry and req.ingress is not None:
            p = self.route(req.ingress, node, req.entry_bandwidth, used)
            if p is None:
                fails += 1
            else:
                paths[-1] = p
                for link in p:
                    used[link] = used.get(link, 0.0) + req.entry_bandwidth
        for k in self.back[comp]:
            vl = req.links[k]
            p = self.route(x[vl.a], x[vl.b], vl.bandwidth, used)
            if p is None:
                fails += 1
                continue
            paths[k] = p
            for link in p:
                used[link] = used.get(link, 0.0) + vl.bandwidth
        return fails

    def _loads(self, x: Sequence[int]) -> tuple[dict[int, float], dict[int, float], int]:
        req = self.request
        load_cpu: dict[int, float] = {}
        load_mem: dict[int, float] = {}
        for i, u in enumerate(x):
            load_cpu[u] = load_cpu.get(u, 0.0) + req.cpu[i]
            load_mem[u] = load_mem.get(u, 0.0) + req.mem[i]
        cpu, mem = self.cpu, self.mem
        over = sum(1 for u, need in load_cpu.items()
                   if need > cpu[u] + EPS or load_mem[u] > mem[u] + EPS)
        return load_cpu, load_mem, over

    def _route_all(self, x: Sequence[int]) -> tuple[dict[int, Path], dict[int, float], int]:
        used: dict[int, float] = {}
        paths: dict[int, Path] = {}
        fails = 0
        for comp in self.order:
            fails += self._route_component(comp, x[comp], x, used, paths)
        return paths, used, fails

    # -- scoring --

    def evaluate(self, x: Vector) -> float:
        """Fitness of a component -> node vector (memoised; `evals` counts distinct vectors)."""
        f = self._cache.get(x)
        if f is not None:
            return f
        self.evals += 1
        f = self._score(x)
        self._cache[x] = f
        return f

    def _score(self, x: Vector) -> float:
        load_cpu, load_mem, over = self._loads(x)
        if over:
            return PENALTY + 10.0 * over + len(self.request.links)
        _, used, fails = self._route_all(x)
        if fails:
            return PENALTY + fails
        hop_bw = sum(used.values())  # sum over links of bandwidth = sum of bandwidth * hops
        cost = hop_bw / self.req_bw
        if self.objective == "cost":
            return cost
        w = self.weights
        typical = self.typical
        cpu, mem, bw = self.cpu, self.mem, self.bw
        link_free = self._link_free
        adj = self.infra.adj
        touched = set(load_cpu)
        for link in used:
            touched.update(self.infra.ends(link))
        d_cpu = 0.0
        for u in touched:
            if cpu[u] <= 0:
                continue
            free_link = max((bw[lk] - used.get(lk, 0.0) for _, lk, _ in adj[u]), default=0.0)
            d_cpu += (stranded(cpu[u] - load_cpu.get(u, 0.0), mem[u] - load_mem.get(u, 0.0),
                               free_link, typical)
                      - stranded(cpu[u], mem[u], link_free[u], typical))
        d_bw = 0.0
        tb = typical[2]
        if tb > 0:
            for link, need in used.items():
                before = bw[link] if bw[link] < tb - EPS else 0.0
                free = bw[link] - need
                after = free if free < tb - EPS else 0.0
                d_bw += after - before
        return w.hops * cost + w.cpu * d_cpu / self.req_cpu + w.bw * d_bw / self.req_bw

    def decode(self, x: Sequence[int]) -> Mapping | None:
        """The mapping a vector stands for, or None if it is infeasible."""
        if len(x) != self.request.size or self._loads(x)[2]:
            return None
        paths, _, fails = self._route_all(x)
        if fails:
            return None
        return Mapping(self.request, tuple(int(u) for u in x),
                       tuple(paths.get(k, ()) for k in range(len(self.request.links))),
                       paths.get(-1, ()))

    # -- greedy construction (first_fit, best_fit, random, and every search's seed) --

    def place_greedily(self, ranking: Callable[[int, list[int], dict[int, float]], list[int]],
                       ) -> Vector | None:
        """Place components one by one in service order on the first node of `ranking(comp,
        candidates, cpu_load)` that fits and whose links to the already placed components (and
        the ingress) route within the bound.  No backtracking: that is what makes it greedy."""
        req = self.request
        x = [-1] * req.size
        load_cpu: dict[int, float] = {}
        load_mem: dict[int, float] = {}
        used: dict[int, float] = {}
        for comp in self.order:
            placed = False
            for u in ranking(comp, self.candidates((comp,)), load_cpu):
                if (self.cpu[u] - load_cpu.get(u, 0.0) < req.cpu[comp] - EPS
                        or self.mem[u] - load_mem.get(u, 0.0) < req.mem[comp] - EPS):
                    continue
                trial = dict(used)
                x[comp] = u
                if self._route_component(comp, u, x, trial, {}):
                    continue
                used = trial
                load_cpu[u] = load_cpu.get(u, 0.0) + req.cpu[comp]
                load_mem[u] = load_mem.get(u, 0.0) + req.mem[comp]
                placed = True
                break
            if not placed:
                return None
        return tuple(x)


def best_fit_ranking(ctx: RequestContext) -> Callable[[int, list[int], dict[int, float]],
                                                      list[int]]:
    """Tightest node first: least CPU left after placing the component (then memory, index)."""
    req = ctx.request

    def rank(comp: int, cands: list[int], load: dict[int, float]) -> list[int]:
        return sorted(cands, key=lambda u: (ctx.cpu[u] - load.get(u, 0.0) - req.cpu[comp],
                                            ctx.mem[u], u))
    return rank


def infeasible(f: float) -> bool:
    return f >= PENALTY or math.isnan(f)
