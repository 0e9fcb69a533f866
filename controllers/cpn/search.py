"""Metaheuristic baselines over component -> node vectors: a genetic algorithm and flat PSO.

Both are the forms the VNE literature uses (GA: Mi et al. style, PSO: Zhang et al., "Virtual
network embedding based on particle swarm optimization", 2011/2013) and get what ABS gets:
the same evaluation budget (distinct candidates scored, `RequestContext.evals`), the same
domain (per component, the nodes that can host it), and a best-fit solution as one initial
individual/particle - so they are never worse than best fit by their own fitness.  Their fitness
is the classic embedding cost ("cost" in fitness.py); pass objective="frag" for an ablation
that hands them ABS's fragmentation-aware evaluation.

`seeded=False` drops the best-fit individual/particle: the whole initial population is random,
as GA and PSO baselines are usually run in the papers that compare against them (the
`ga_paper` / `pso_paper` baselines of the paper preset, docs/cpn-paper.md).  The difference
between the two is how much of a search baseline's result its greedy seed supplies.

The discrete PSO update (`pso_move`) is shared with ABS's upper level: each coordinate keeps its
value (inertia w), takes the personal best's (c1) or the global best's (c2), or else jumps to a
random node of its domain - the probabilistic recombination form of discrete PSO for
assignment problems, since node indices have no meaningful arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controllers.cpn.fitness import RequestContext, Vector, best_fit_ranking, infeasible
from controllers.cpn.model import Mapping, ServiceRequest, State

DEFAULT_BUDGET = 240  # distinct candidates per decision; sized for the 10-minute default eval


def pso_move(x: Sequence[int], pbest: Sequence[int], gbest: Sequence[int],
             domains: Sequence[Sequence[int]], rng: np.random.Generator,
             w: float = 0.3, c1: float = 0.3, c2: float = 0.3) -> Vector:
    """One discrete PSO step (module docstring)."""
    r = rng.random((2, len(x))).tolist()
    out = []
    for d, rd in enumerate(r[0]):
        if rd < w:
            out.append(x[d])
        elif rd < w + c1:
            out.append(pbest[d])
        elif rd < w + c1 + c2:
            out.append(gbest[d])
        else:
            dom = domains[d]
            out.append(dom[int(r[1][d] * len(dom))])
    return tuple(out)


def random_vector(domains: Sequence[Sequence[int]], rng: np.random.Generator) -> Vector:
    r = rng.random(len(domains)).tolist()
    return tuple(dom[int(rd * len(dom))] for dom, rd in zip(domains, r, strict=True))


class PSOMapper:
    """Flat (single-level) discrete PSO over component -> node vectors."""

    name = "pso"

    def __init__(self, budget: int = DEFAULT_BUDGET, particles: int = 10,
                 objective: str = "cost", seeded: bool = True, w: float = 0.3,
                 c1: float = 0.3, c2: float = 0.3) -> None:
        self.budget = budget
        self.particles = particles
        self.objective = objective
        self.seeded = seeded
        self.w, self.c1, self.c2 = w, c1, c2
        self.last_evals = 0

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        ctx = RequestContext.from_state(state, request, self.objective)
        domains = [ctx.candidates((i,)) for i in range(request.size)]
        if any(not d for d in domains):
            return None
        seed = ctx.place_greedily(best_fit_ranking(ctx)) if self.seeded else None
        pos = [seed] if seed is not None else []
        pos += [random_vector(domains, rng) for _ in range(self.particles - len(pos))]
        fit = [ctx.evaluate(p) for p in pos]
        pbest, pbest_f = list(pos), list(fit)
        g = int(np.argmin(fit))
        gbest, gbest_f = pos[g], fit[g]
        stall = 0
        while ctx.evals < self.budget and stall < 20:
            before = ctx.evals
            for k in range(len(pos)):
                pos[k] = pso_move(pos[k], pbest[k], gbest, domains, rng,
                                  self.w, self.c1, self.c2)
                f = ctx.evaluate(pos[k])
                if f < pbest_f[k]:
                    pbest[k], pbest_f[k] = pos[k], f
                    if f < gbest_f:
                        gbest, gbest_f = pos[k], f
            stall = stall + 1 if ctx.evals == before else 0
        self.last_evals = ctx.evals
        return None if infeasible(gbest_f) else ctx.decode(gbest)


class GAMapper:
    """Generational GA: binary tournaments, uniform crossover, per-gene mutation to a random
    node of the gene's domain, elitism."""

    name = "ga"

    def __init__(self, budget: int = DEFAULT_BUDGET, population: int = 12,
                 crossover: float = 0.9, elite: int = 2, objective: str = "cost",
                 seeded: bool = True, mutation: float | None = None) -> None:
        self.budget = budget
        self.population = population
        self.crossover = crossover
        self.elite = elite
        self.objective = objective
        self.seeded = seeded
        self.mutation = mutation  # per gene; None: 1 / components
        self.last_evals = 0

    def map(self, state: State, request: ServiceRequest,
            rng: np.random.Generator) -> Mapping | None:
        ctx = RequestContext.from_state(state, request, self.objective)
        c = request.size
        domains = [ctx.candidates((i,)) for i in range(c)]
        if any(not d for d in domains):
            return None
        seed = ctx.place_greedily(best_fit_ranking(ctx)) if self.seeded else None
        pop = [seed] if seed is not None else []
        pop += [random_vector(domains, rng) for _ in range(self.population - len(pop))]
        fit = [ctx.evaluate(p) for p in pop]
        mutation = 1.0 / c if self.mutation is None else self.mutation
        stall = 0
        while ctx.evals < self.budget and stall < 20:
            before = ctx.evals
            ranked = sorted(range(len(pop)), key=lambda k: (fit[k], k))
            children = [pop[k] for k in ranked[:self.elite]]
            n_kids = self.population - len(children)
            # all of a generation's random draws at once: per-call Generator overhead
            # otherwise dominates at these sizes
            duels = rng.integers(len(pop), size=(n_kids, 2, 2)).tolist()
            cross = (rng.random(n_kids) < self.crossover).tolist()
            masks = (rng.random((n_kids, c)) < 0.5).tolist()
            mutate = (rng.random((n_kids, c)) < mutation).tolist()
            genes = rng.random((n_kids, c)).tolist()
            for k in range(n_kids):
                p1, p2 = (pop[a] if fit[a] <= fit[b] else pop[b] for a, b in duels[k])
                if cross[k]:
                    child = [p1[d] if masks[k][d] else p2[d] for d in range(c)]
                else:
                    child = list(p1)
                for d in range(c):
                    if mutate[k][d]:
                        child[d] = domains[d][int(genes[k][d] * len(domains[d]))]
                children.append(tuple(child))
            pop = children
            fit = [ctx.evaluate(p) for p in pop]
            stall = stall + 1 if ctx.evals == before else 0
        best = min(range(len(pop)), key=lambda k: (fit[k], k))
        self.last_evals = ctx.evals
        return None if infeasible(fit[best]) else ctx.decode(pop[best])
