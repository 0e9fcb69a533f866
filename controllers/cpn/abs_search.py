"""Adaptive Bilevel Search (ABS, arXiv 2507.07535) for CPN service mapping.

The paper gives the architecture, not the code; this is our reading of its three parts:

1. Reformulation by graph partitioning (partition.py): strongly coupled components form parts,
   and the upper level decides part -> node instead of component -> node - fewer, less coupled
   decision variables, and a part lands whole on one node, so its internal links are free.
2. Bilevel search.  Upper level: discrete PSO swarms (search.pso_move) over part -> node
   vectors, for global exploration.  Lower level: a first-improvement local search from the
   decoded component -> node vector over two move types - move one component, or move one whole
   part, to a node of the reach set R(x) (`reach`) - until no move improves.  Each iteration the
   best new particle of the swarm is searched (Baldwinian: the particle keeps its position and
   inherits the local optimum's fitness); searching every particle would spend the budget of a
   whole swarm on one descent.
3. Fragmentation-aware evaluation: the "frag" fitness of fitness.py (embedding cost plus the
   change in stranded CPU and stranded bandwidth), steering towards placements that leave
   capacity in sellable pieces.

Guarantees (tested):

* Local optimality: every solution ABS returns is the output of the lower level, so no move in
  its neighbourhood (one component, or one part, to any feasible node of R(x)) improves the
  fitness by more than `TOL`.  With `ls_near=None` the reach set is every compute node.
* Never worse than the initial solution: every swarm starts one particle from best fit and
  runs the lower level on it first, so the result's fitness is <= best fit's.

Several swarms (different seeds, what is left of the budget after the descent from best fit
split evenly) run through swarm.run_swarms; the winner is the lowest fitness, ties to the
incumbent and then the lowest swarm index - the same answer on every backend (tested).

Which backend (measured: complex preset, 2 swarms, 100 requests, 2-core machine; median / p95
decision time): at the default budget of 240 evaluations serial 10.7 / 26 ms, threads
9.5 / 25 ms, processes 9.4 / 21 ms - within noise, since a swarm is ~5 ms of work and a
process round trip (pickling the state) costs a good part of that; at 1000 evaluations serial
31 / 66 ms, threads 41 / 103 ms (GIL), processes 24 / 57 ms.  So "serial" is the default:
the evaluation already runs independent replays on every core, and a process pool pays off
only for larger budgets on an otherwise idle machine (or on a Ray cluster).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from controllers.cpn.fitness import (
    FragWeights,
    RequestContext,
    Vector,
    best_fit_ranking,
    infeasible,
)
from controllers.cpn.model import Infrastructure, Mapping, ServiceRequest, State
from controllers.cpn.partition import partition_service
from controllers.cpn.search import DEFAULT_BUDGET, pso_move, random_vector
from controllers.cpn.swarm import make_executor, run_swarms

TOL = 1e-9


def reach(ctx: RequestContext, x: Sequence[int], near: int | None) -> list[int]:
    """Nodes the lower level may move to: the nodes x uses plus each one's `near` closest
    compute nodes (by latency) - or every compute node when near is None."""
    if near is None:
        return list(ctx.infra.compute)
    out = set(x)
    for u in set(x):
        out.update(ctx.infra.nearest_compute(u, near))
    return sorted(out)


def neighbours(ctx: RequestContext, x: Vector, parts: Sequence[Sequence[int]],
               near: int | None) -> Iterator[Vector]:
    """The lower level's moves from x: whole parts first (the coarse move), then single
    components, each to a node of R(x) that can host it."""
    nodes = reach(ctx, x, near)
    for part in parts:
        if len(part) < 2:
            continue
        ok = set(ctx.candidates(part))
        for u in nodes:
            if u in ok and any(x[i] != u for i in part):
                y = list(x)
                for i in part:
                    y[i] = u
                yield tuple(y)
    for i in range(len(x)):
        ok = set(ctx.candidates((i,)))
        for u in nodes:
            if u != x[i] and u in ok:
                y = list(x)
                y[i] = u
                yield tuple(y)


def local_search(ctx: RequestContext, x: Vector, parts: Sequence[Sequence[int]],
                 near: int | None) -> tuple[Vector, float]:
    """First-improvement descent; returns a vector no neighbour improves by more than TOL."""
    fx = ctx.evaluate(x)
    while True:
        for y in neighbours(ctx, x, parts, near):
            fy = ctx.evaluate(y)
            if fy < fx - TOL:
                x, fx = y, fy
                break
        else:
            return x, fx


@dataclass(frozen=True)
class SwarmTask:
    """Everything one swarm needs - picklable, so it can run in another process or on Ray."""

    infra: Infrastructure
    cpu: tuple[float, ...]
    mem: tuple[float, ...]
    bw: tuple[float, ...]
    typical: tuple[float, float, float]
    request: ServiceRequest
    parts: tuple[tuple[int, ...], ...]
    start: Vector | None  # a lower-level output (the descent from best fit), or None
    start_f: float
    budget: int
    particles: int
    ls_near: int | None
    weights: FragWeights
    objective: str
    seed: int


@dataclass(frozen=True)
class SwarmResult:
    x: Vector | None
    f: float
    evals: int
    searches: int


def _project(x: Vector, parts: Sequence[Sequence[int]], domains: Sequence[Sequence[int]],
             rng: np.random.Generator) -> Vector:
    """Part -> node vector closest to a component vector: each part goes where most of its
    components are (a feasible host of the whole part), else to a random host."""
    out = []
    for part, dom in zip(parts, domains, strict=True):
        votes: dict[int, int] = {}
        for i in part:
            votes[x[i]] = votes.get(x[i], 0) + 1
        ok = set(dom)
        ranked = sorted((u for u in votes if u in ok), key=lambda u: (-votes[u], u))
        out.append(ranked[0] if ranked else dom[int(rng.integers(len(dom)))])
    return tuple(out)


def run_swarm(task: SwarmTask) -> SwarmResult:
    """One ABS swarm: PSO over part -> node vectors, local search on each iteration's best.

    `task.start` is already a lower-level output (ABSMapper searched from best fit once for all
    swarms), so it is the incumbent from the first step.  The swarm keeps room in its budget for
    one more descent (as long as the longest one so far) and stops when that room is gone.
    """
    ctx = RequestContext(task.infra, task.cpu, task.mem, task.bw, task.typical, task.request,
                         task.objective, task.weights)
    rng = np.random.default_rng(task.seed)
    parts = task.parts
    size = task.request.size
    domains = [ctx.candidates(p) for p in parts]

    def expand(pos: Vector) -> Vector:
        x = [0] * size
        for part, u in zip(parts, pos, strict=True):
            for i in part:
                x[i] = u
        return tuple(x)

    best_x: Vector | None = task.start
    best_f = task.start_f
    searches = 0
    descent = 0  # evaluations of the longest descent so far
    searched: dict[Vector, float] = {}

    def lower(x: Vector) -> float:
        nonlocal best_x, best_f, searches, descent
        if x in searched:
            return searched[x]
        searches += 1
        before = ctx.evals
        y, fy = local_search(ctx, x, parts, task.ls_near)
        descent = max(descent, ctx.evals - before)
        searched[x] = fy
        if fy < best_f - TOL or best_x is None:
            best_x, best_f = y, fy
        return fy

    positions: list[Vector] = []
    if task.start is not None:
        positions.append(_project(task.start, parts, domains, rng))
    positions += [random_vector(domains, rng) for _ in range(task.particles - len(positions))]
    fit = [ctx.evaluate(expand(p)) for p in positions]
    k = min(range(len(positions)), key=lambda j: (fit[j], j))
    best_raw: tuple[float, Vector] = (fit[k], expand(positions[k]))
    fit[k] = min(fit[k], lower(expand(positions[k])))
    pbest, pbest_f = list(positions), list(fit)
    g = min(range(len(positions)), key=lambda j: (fit[j], j))
    gbest, gbest_f = positions[g], fit[g]
    stall = 0
    while ctx.evals + descent + len(positions) <= task.budget and stall < 20:
        before = ctx.evals
        for k in range(len(positions)):
            positions[k] = pso_move(positions[k], pbest[k], gbest, domains, rng)
            fit[k] = ctx.evaluate(expand(positions[k]))
        k = min(range(len(positions)), key=lambda j: (fit[j], j))
        best_raw = min(best_raw, (fit[k], expand(positions[k])))
        if ctx.evals + descent <= task.budget:
            fit[k] = min(fit[k], lower(expand(positions[k])))
        for j in range(len(positions)):
            if fit[j] < pbest_f[j]:
                pbest[j], pbest_f[j] = positions[j], fit[j]
                if fit[j] < gbest_f:
                    gbest, gbest_f = positions[j], fit[j]
        stall = stall + 1 if ctx.evals == before else 0
    if best_raw[0] < best_f - TOL:  # returned solutions must be lower-level outputs
        lower(best_raw[1])
    return SwarmResult(best_x, best_f, ctx.evals, searches)


@dataclass
class SearchReport:
    """What the last decision did (for tests and diagnostics)."""

    x: Vector | None = None
    f: float = float("inf")
    start_f: float = float("inf")
    evals: int = 0
    searches: int = 0
    parts: list[list[int]] = field(default_factory=list)


class ABSMapper:
    """ABS behind the common Mapper interface (module docstring for the algorithm)."""

    name = "abs"

    def __init__(self, budget: int = DEFAULT_BUDGET, swarms: int = 2, particles: int = 6,
                 ls_near: int | None = 3, weights: FragWeights | None = None,
                 objective: str = "frag", backend: str = "serial", workers: int | None = None,
                 ray_address: str | None = None) -> None:
        self.budget = budget
        self.swarms = swarms
        self.particles = particles
        self.ls_near = ls_near
        self.weights = weights or FragWeights()
        self.objective = objective
        self.backend = "ray" if ray_address else backend
        self.ray_address = ray_address
        self._executor: Executor | None = None
        self.workers = workers or swarms
        self.last = SearchReport()
        self.last_evals = 0

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def __enter__(self) -> ABSMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_executor"] = None
        return state

    def context(self, state: State, request: ServiceRequest) -> RequestContext:
        """A fresh context scoring exactly as this mapper does (used by the tests)."""
        return RequestContext.from_state(state, request, self.objective, self.weights)

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        ctx = self.context(state, request)
        if any(not ctx.candidates((i,)) for i in range(request.size)):
            self.last = SearchReport()
            return None
        initial = ctx.place_greedily(best_fit_ranking(ctx))
        start, start_f = None, float("inf")
        parts = partition_service(ctx)
        seed_f = float("inf")
        if initial is not None:
            seed_f = ctx.evaluate(initial)
            start, start_f = local_search(ctx, initial, parts, self.ls_near)
        seeds = rng.integers(0, 2**63 - 1, size=self.swarms)
        share = max((self.budget - ctx.evals) // max(self.swarms, 1), 0)
        tasks = [SwarmTask(state.infra, tuple(ctx.cpu), tuple(ctx.mem), tuple(ctx.bw),
                           state.typical, request, tuple(tuple(p) for p in parts), start,
                           start_f, share, self.particles, self.ls_near, self.weights,
                           self.objective, int(s))
                 for s in seeds]
        if self.backend in ("thread", "process") and self._executor is None:
            self._executor = make_executor(self.backend, self.workers)
        results = run_swarms(run_swarm, tasks, self.backend, executor=self._executor,
                             ray_address=self.ray_address) if share > 0 else []
        best = SwarmResult(start, start_f, 0, 1 if start is not None else 0)
        for r in results:  # lowest fitness, ties to the earliest: the same on every backend
            if r.x is not None and r.f < best.f - TOL:
                best = r
        self.last = SearchReport(best.x, best.f, seed_f,
                                 ctx.evals + sum(r.evals for r in results),
                                 1 + sum(r.searches for r in results), parts)
        self.last_evals = self.last.evals
        if best.x is None or infeasible(best.f):
            return None
        return ctx.decode(best.x)
