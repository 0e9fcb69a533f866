"""DRDST robust dynamic sharding (arXiv 2412.04742): network stability, trust, and the Genetic
Sharding Algorithm (GSA), plus the baselines it is compared against.

The paper (Chen, Luo, Sun, Yu, Niyato, Dustdar) scores every node's *network stability*,
combines it with the node's *trust value*, and partitions the nodes into shards so that every
shard is robust (stable, trusted members) while consensus inside a shard stays fast; the
partition problem is solved with a genetic algorithm (GSA).  Roadside units (RSUs) are the
stable, computing-capable backbone; vehicles move and their links break.

Only the abstract and a third-party summary of the paper could be read here (the full text
was not retrievable), so the formulas below are this module's own, built to follow what
those sources state.  Everything marked *Assumed* is our choice and is the thing to revisit
once the paper's equations are at hand.

Model used
----------
Stability (`stability`), Assumed: the paper scores stability from online time, computing
power and failure probability; our `NodeInfo` carries kinematics instead, so stability is
derived from how long a node's links are expected to last.  For nodes i, j within radio
range R (`range_m`, default 300 m), with relative position p = x_j - x_i and relative
velocity v = v_j - v_i, the link expiration time is the positive root of |p + v t| = R::

    LET_ij = (-(p.v) + sqrt((p.v)^2 - |v|^2 (|p|^2 - R^2))) / |v|^2     (inf when v = 0)
    s_ij   = min(LET_ij, H) / H                                         (H = horizon_s, 30 s)
    stab_i = (1 - f_i) * (w_rsu * max_{j RSU in range} s_ij + (1 - w_rsu) * mean_{j in range} s_ij)

where f_i is the node's failure probability (`NodeInfo.failure_prob`, default 0, the one
input the paper names that we can carry) and w_rsu = 0.6.  An RSU counts as attached to
infrastructure (its RSU term is 1).  A node with no neighbour in range scores 0 on that term.

Trust (`update_trust`), Assumed: a beta-reputation with a fixed memory W (default 10
observations): the current trust t stands for W pseudo-observations, of which t*W good, and a
new batch of g good and b bad observations (bad ones weighted `bad_weight` = 2, trust is lost
faster than it is earned) gives t' = (W t + g) / (W + g + bad_weight * b).  With one
observation at a time this is an exponential moving average towards 1 (good) or 0 (bad).

Sharding objective (`fitness`, maximised), Assumed weights, the paper's ingredients: for
shard s with members M_s, mean stability S_s, mean trust T_s, mean pairwise (symmetrised)
latency D_s, size n_s::

    F = w_stab * min_s S_s + w_trust * min_s T_s
        - w_lat * mean_s D_s / D_ref - w_bal * std(n_s) / mean(n_s) - w_pen * V

D_ref is the mean latency over all node pairs, so every term is of order 1.  The minimum
over shards is the robustness criterion: an attacker or a traffic jam hits the weakest shard.
V is the total constraint violation (all three constraints are Assumed):

* RSU: every shard holds at least one RSU (when there are fewer RSUs than shards, at most
  k - n_rsu shards may lack one); violation = shards missing one beyond that allowance.
* size: every shard has at least `min_size` members (default min(4, n // k): four is the
  smallest PBFT group that tolerates one fault); violation = sum of relative deficits.
* trust: a node whose trust is below `low_trust` (0.5) is counted as possibly Byzantine,
  and a shard of n_s members may hold at most floor((n_s - 1) / 3) of them (the BFT bound);
  violation = sum of the excess counts.

GSA (`gsa`), Assumed operators (a standard GA for grouping problems): chromosome = one
shard id per node; initial population = RSU-first balanced random assignments, repaired;
tournament selection (3 contestants); label-aligned uniform crossover (the second parent's
shard ids are renamed to best match the first parent's via the assignment problem, otherwise
crossing two equivalent partitions would scramble both); mutation (3/n per gene, about three
genes a child) reassigns a gene either to a random shard or, half the time, to the shard of
one of the node's nearest neighbours by latency, and a tenth of the children also swap two
same-kind nodes (which keeps sizes and RSU counts); elitism keeps the best two.  Constraints
are handled by the penalty w_pen * V and a repair of the final best.

Baselines with the same `ShardingResult`:

* `random_sharding` - a balanced uniformly random partition (shuffle, then deal round-robin).
* `static_sharding` - non-adaptive: shard = blake2b(name) mod k, the ID-hash assignment that
  classic sharded ledgers use; it never looks at positions, trust or latency and never
  changes while nodes move (stable across processes, unlike Python's salted `hash`).
* `objective_only` - the ablation: the same objective, constraints, initial assignment,
  mutation neighbourhood and number of fitness evaluations, optimised by a sampled
  steepest-ascent local search from a single assignment.  What is ablated is the genetic
  search itself: population, selection and crossover.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

LatencyFn = Callable[[str, str], float]
LatencyLike = LatencyFn | Mapping[tuple[str, str], float]

KINDS = ("vehicle", "rsu")


@dataclass(frozen=True)
class NodeInfo:
    """One blockchain node as the sharding sees it: plain data, so a simulator and a live
    controller build the same input."""

    name: str
    kind: str  # "vehicle" | "rsu"
    position: tuple[float, float]  # metres
    velocity: tuple[float, float]  # m/s
    trust: float  # in [0, 1]
    failure_prob: float = 0.0  # probability the node is down in the next epoch

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"node {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if not 0.0 <= self.trust <= 1.0:
            raise ValueError(f"node {self.name!r}: trust {self.trust} must lie in [0, 1]")


@dataclass(frozen=True)
class Weights:
    """Weights of the sharding objective; every term is normalised to order 1."""

    stability: float = 1.0
    trust: float = 1.0
    latency: float = 1.0
    balance: float = 0.5
    penalty: float = 10.0  # per unit of constraint violation: a feasible partition wins


@dataclass
class ShardingResult:
    """A partition with its objective value; `history` is the best fitness after the initial
    population (index 0) and after each generation / iteration."""

    method: str
    assignment: dict[str, int]
    fitness: float
    feasible: bool
    history: list[float] = field(default_factory=list)

    def shards(self) -> list[list[str]]:
        """Members of each shard, in node order (shards above the highest used id are omitted)."""
        k = max(self.assignment.values(), default=-1) + 1
        out: list[list[str]] = [[] for _ in range(k)]
        for name, s in self.assignment.items():
            out[s].append(name)
        return out


# --------------------------------------------------------------------------- stability, trust


def stability(nodes: Sequence[NodeInfo], range_m: float = 300.0, horizon_s: float = 30.0,
              w_rsu: float = 0.6) -> dict[str, float]:
    """Network-stability score in [0, 1] per node, from expected link lifetimes (see module
    docstring).  Vectorised over all pairs: 500 nodes take a few milliseconds."""
    if not nodes:
        return {}
    pos = np.array([n.position for n in nodes], dtype=float)
    vel = np.array([n.velocity for n in nodes], dtype=float)
    rsu = np.array([n.kind == "rsu" for n in nodes])
    fail = np.array([n.failure_prob for n in nodes], dtype=float)
    score, in_range = _link_scores(pos, vel, range_m, horizon_s)
    rsu_term = np.where(in_range & rsu[None, :], score, 0.0).max(axis=1, initial=0.0)
    rsu_term = np.where(rsu, 1.0, rsu_term)
    deg = in_range.sum(axis=1)
    nb_term = np.where(deg > 0, np.where(in_range, score, 0.0).sum(axis=1) / np.maximum(deg, 1),
                       0.0)
    stab = (1.0 - np.clip(fail, 0.0, 1.0)) * (w_rsu * rsu_term + (1.0 - w_rsu) * nb_term)
    return {n.name: float(s) for n, s in zip(nodes, stab, strict=True)}


def _link_scores(pos: np.ndarray, vel: np.ndarray, range_m: float,
                 horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: normalised link expiration time min(LET, H)/H and whether in range now."""
    dp = pos[None, :, :] - pos[:, None, :]
    dv = vel[None, :, :] - vel[:, None, :]
    d2 = (dp**2).sum(axis=2)
    a = (dv**2).sum(axis=2)
    b = (dp * dv).sum(axis=2)
    c = d2 - range_m**2
    in_range = c <= 0.0
    np.fill_diagonal(in_range, False)
    disc = np.maximum(b * b - a * c, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        let = np.where(a > 0.0, (-b + np.sqrt(disc)) / a, np.inf)
    let = np.where(in_range, np.maximum(let, 0.0), 0.0)
    return np.minimum(let, horizon_s) / horizon_s, in_range


def update_trust(trust: float, behaviour: bool | tuple[float, float], memory: float = 10.0,
                 bad_weight: float = 2.0) -> float:
    """New trust after observing `behaviour`: True (one good act), False (one bad act) or a
    (good, bad) count pair.  Beta reputation with a fixed memory (module docstring), so old
    behaviour fades and a node can neither be trusted forever nor condemned forever."""
    if isinstance(behaviour, bool):
        good, bad = (1.0, 0.0) if behaviour else (0.0, 1.0)
    else:
        good, bad = float(behaviour[0]), float(behaviour[1])
    if good < 0 or bad < 0:
        raise ValueError(f"update_trust: observation counts must be >= 0, got {behaviour}")
    t = min(max(float(trust), 0.0), 1.0)
    return (memory * t + good) / (memory + good + bad_weight * bad)


# --------------------------------------------------------------------------- the problem


class ShardingProblem:
    """Nodes, number of shards k, latency and weights, turned once into numpy arrays so that
    the fitness of a whole population is a few matrix products."""

    def __init__(self, nodes: Sequence[NodeInfo], k: int, latency_ms: LatencyLike,
                 weights: Weights | None = None, *, min_size: int | None = None,
                 low_trust: float = 0.5, stability_scores: Mapping[str, float] | None = None,
                 range_m: float = 300.0, unreachable_ms: float | None = None) -> None:
        n = len(nodes)
        if k < 1 or k > n:
            raise ValueError(
                f"ShardingProblem: k={k} shards for {n} nodes; every shard needs at least "
                f"one node, so choose 1 <= k <= {n} (lower k or add nodes)")
        names = [nd.name for nd in nodes]
        if len(set(names)) != n:
            raise ValueError("ShardingProblem: node names must be unique")
        self.nodes = list(nodes)
        self.names = names
        self.k = int(k)
        self.weights = weights or Weights()
        self.min_size = int(min_size) if min_size is not None else max(1, min(4, n // k))
        if self.min_size * k > n:
            raise ValueError(f"ShardingProblem: min_size={self.min_size} x k={k} exceeds the "
                             f"{n} nodes; lower min_size or k")
        self.low_trust = low_trust
        scores = stability_scores if stability_scores is not None else stability(
            nodes, range_m=range_m)
        self.stab = np.array([scores[nm] for nm in names], dtype=float)
        self.trust = np.array([nd.trust for nd in nodes], dtype=float)
        self.is_rsu = np.array([nd.kind == "rsu" for nd in nodes])
        self.is_low = self.trust < low_trust
        self.n_rsu = int(self.is_rsu.sum())
        self.lat = latency_matrix(names, latency_ms, unreachable_ms)
        self.lat32 = self.lat.astype(np.float32)
        off = ~np.eye(n, dtype=bool)
        self.lat_ref = float(self.lat[off].mean()) if n > 1 else 1.0
        if self.lat_ref <= 0.0:
            self.lat_ref = 1.0
        # nearest neighbours by latency, for the guided mutation
        m = min(5, n - 1)
        order = np.argsort(self.lat + np.diag(np.full(n, np.inf)), axis=1, kind="stable")
        self.nearest = order[:, :max(m, 1)] if n > 1 else np.zeros((1, 1), dtype=int)

    @property
    def n(self) -> int:
        return len(self.names)

    def to_assignment(self, genes: np.ndarray) -> dict[str, int]:
        return {nm: int(s) for nm, s in zip(self.names, genes, strict=True)}

    def to_genes(self, assignment: Mapping[str, int] | np.ndarray) -> np.ndarray:
        if isinstance(assignment, np.ndarray):
            return assignment.astype(np.int64)
        return np.array([assignment[nm] for nm in self.names], dtype=np.int64)


def latency_matrix(names: Sequence[str], latency_ms: LatencyLike,
                   unreachable_ms: float | None = None) -> np.ndarray:
    """Symmetrised latency matrix (mean of both directions); unreachable pairs (inf/nan) are
    capped at `unreachable_ms` (default 10x the largest finite latency) so sums stay finite."""
    get = _as_fn(latency_ms)
    n = len(names)
    lat = np.zeros((n, n))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                lat[i, j] = get(a, b)
    lat[~np.isfinite(lat)] = np.inf
    finite = lat[np.isfinite(lat)]
    cap = unreachable_ms if unreachable_ms is not None else (
        10.0 * float(finite.max()) if finite.size and finite.max() > 0 else 1000.0)
    lat = np.minimum(lat, cap)
    return (lat + lat.T) / 2.0


def _as_fn(latency_ms: LatencyLike) -> LatencyFn:
    if callable(latency_ms):
        return latency_ms
    table = latency_ms

    def get(a: str, b: str) -> float:
        if (a, b) in table:
            return float(table[(a, b)])
        return float(table.get((b, a), math.inf))

    return get


# --------------------------------------------------------------------------- fitness


def evaluate(problem: ShardingProblem, pop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fitness and constraint violation of every row of `pop` (P x n shard ids), vectorised:
    one-hot membership A (P x n x k), intra-shard latency sums diag(A^T L A)."""
    pop = np.atleast_2d(pop)
    k, w = problem.k, problem.weights
    one = (pop[:, :, None] == np.arange(k)[None, None, :]).astype(float)
    sizes = one.sum(axis=1)
    safe = np.maximum(sizes, 1.0)
    s_mean = np.einsum("pnk,n->pk", one, problem.stab) / safe
    t_mean = np.einsum("pnk,n->pk", one, problem.trust) / safe
    s_mean = np.where(sizes > 0, s_mean, 0.0)
    t_mean = np.where(sizes > 0, t_mean, 0.0)
    intra = _intra_latency(problem, one)
    pairs = sizes * (sizes - 1.0)
    d_mean = np.where(pairs > 0, intra / np.maximum(pairs, 1.0), 0.0)
    balance = sizes.std(axis=1) / (problem.n / k)
    viol = _violations(problem, one, sizes)
    fit = (w.stability * s_mean.min(axis=1) + w.trust * t_mean.min(axis=1)
           - w.latency * d_mean.mean(axis=1) / problem.lat_ref - w.balance * balance
           - w.penalty * viol)
    return fit, viol


def _intra_latency(problem: ShardingProblem, one: np.ndarray) -> np.ndarray:
    """Sum of latencies over ordered member pairs of each shard, (P x k): one GEMM of the
    n x n latency matrix with all P x k membership columns (float32: 2x less memory traffic,
    the objective needs no more precision)."""
    p, n, k = one.shape
    cols = one.transpose(1, 0, 2).reshape(n, p * k).astype(np.float32)
    la = (problem.lat32 @ cols).reshape(n, p, k).transpose(1, 0, 2)
    return (one * la).sum(axis=1, dtype=np.float64)


def _violations(problem: ShardingProblem, one: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    rsu = np.einsum("pnk,n->pk", one, problem.is_rsu.astype(float))
    allowed = max(0, problem.k - problem.n_rsu)
    v_rsu = np.maximum((rsu == 0).sum(axis=1) - allowed, 0)
    v_size = (np.maximum(problem.min_size - sizes, 0.0) / problem.min_size).sum(axis=1)
    low = np.einsum("pnk,n->pk", one, problem.is_low.astype(float))
    cap = np.floor(np.maximum(sizes - 1.0, 0.0) / 3.0)
    v_trust = np.maximum(low - cap, 0.0).sum(axis=1)
    return v_rsu + v_size + v_trust


def fitness(problem: ShardingProblem, assignment: np.ndarray | Mapping[str, int]) -> float:
    """The sharding objective of one partition (higher is better; see module docstring)."""
    fit, _ = evaluate(problem, problem.to_genes(assignment)[None, :])
    return float(fit[0])


def violation(problem: ShardingProblem, assignment: np.ndarray | Mapping[str, int]) -> float:
    """Total constraint violation of one partition; 0 means feasible."""
    _, viol = evaluate(problem, problem.to_genes(assignment)[None, :])
    return float(viol[0])


def _result(problem: ShardingProblem, method: str, genes: np.ndarray,
            history: list[float] | None = None) -> ShardingResult:
    fit, viol = evaluate(problem, genes[None, :])
    return ShardingResult(method, problem.to_assignment(genes), float(fit[0]),
                          bool(viol[0] == 0), list(history or [float(fit[0])]))


# --------------------------------------------------------------------------- initialisation, repair


def _initial(problem: ShardingProblem, rng: np.random.Generator) -> np.ndarray:
    """RSU-first balanced random assignment: RSUs are dealt round-robin over the shards first
    (so each shard gets one when there are enough), then vehicles continue the deal."""
    genes = np.empty(problem.n, dtype=np.int64)
    rsu = np.flatnonzero(problem.is_rsu)
    veh = np.flatnonzero(~problem.is_rsu)
    order = np.concatenate([rng.permutation(rsu), rng.permutation(veh)])
    offset = rng.integers(problem.k)
    genes[order] = (np.arange(problem.n) + offset) % problem.k
    return genes


def repair(problem: ShardingProblem, genes: np.ndarray, max_steps: int | None = None) -> np.ndarray:
    """Best-effort repair of the three constraints by moving/swapping as few nodes as
    possible (RSUs first, then sizes, then trust); returns a new array."""
    g = genes.copy()
    steps = max_steps if max_steps is not None else 4 * problem.n
    for _ in range(steps):
        if not (_fix_rsu(problem, g) or _fix_size(problem, g) or _fix_trust(problem, g)):
            break
    return g


def _counts(problem: ShardingProblem, g: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    sel = g if mask is None else g[mask]
    return np.bincount(sel, minlength=problem.k)


def _fix_rsu(problem: ShardingProblem, g: np.ndarray) -> bool:
    rsu_count = _counts(problem, g, problem.is_rsu)
    lacking = np.flatnonzero(rsu_count == 0)
    if len(lacking) <= max(0, problem.k - problem.n_rsu):
        return False
    donor = int(np.argmax(rsu_count))
    if rsu_count[donor] < 2:
        return False
    target = int(lacking[0])
    cand = np.flatnonzero(problem.is_rsu & (g == donor))
    # move the donor RSU closest (by latency) to the target shard's members
    g[_closest_to(problem, g, cand, target)] = target
    return True


def _fix_size(problem: ShardingProblem, g: np.ndarray) -> bool:
    sizes = _counts(problem, g)
    small = np.flatnonzero(sizes < problem.min_size)
    if len(small) == 0:
        return False
    target = int(small[0])
    donor = int(np.argmax(sizes))
    if sizes[donor] <= problem.min_size:
        return False
    cand = np.flatnonzero(~problem.is_rsu & (g == donor))
    if len(cand) == 0:
        cand = np.flatnonzero(g == donor)
        rsu_in_donor = int((problem.is_rsu & (g == donor)).sum())
        if rsu_in_donor < 2:
            return False
    g[_closest_to(problem, g, cand, target)] = target
    return True


def _fix_trust(problem: ShardingProblem, g: np.ndarray) -> bool:
    sizes = _counts(problem, g)
    low = _counts(problem, g, problem.is_low)
    cap = np.maximum(sizes - 1, 0) // 3
    over = np.flatnonzero(low > cap)
    slack = np.flatnonzero(low + 1 <= cap)
    if len(over) == 0 or len(slack) == 0:
        return False
    s, t = int(over[0]), int(slack[np.argmax((cap - low)[slack])])
    for kind_rsu in (False, True):
        bad = np.flatnonzero((g == s) & problem.is_low & (problem.is_rsu == kind_rsu))
        good = np.flatnonzero((g == t) & ~problem.is_low & (problem.is_rsu == kind_rsu))
        if len(bad) and len(good):
            i = int(bad[np.argmin(problem.trust[bad])])
            j = int(good[np.argmax(problem.trust[good])])
            g[i], g[j] = t, s
            return True
    return False


def _closest_to(problem: ShardingProblem, g: np.ndarray, cand: np.ndarray, target: int) -> int:
    members = np.flatnonzero(g == target)
    if len(members) == 0:
        return int(cand[0])
    d = problem.lat[np.ix_(cand, members)].mean(axis=1)
    return int(cand[int(np.argmin(d))])


# --------------------------------------------------------------------------- GSA


def gsa(problem: ShardingProblem, rng: np.random.Generator, population: int = 40,
        generations: int = 150, crossover_rate: float = 0.9, mutation_rate: float | None = None,
        elite: int = 2, tournament: int = 3) -> ShardingResult:
    """The Genetic Sharding Algorithm (module docstring).  Deterministic for a seeded `rng`;
    costs population x generations fitness evaluations, batched per generation."""
    if population < 2:
        raise ValueError("gsa: population must be >= 2")
    n = problem.n
    pm = mutation_rate if mutation_rate is not None else min(1.0, 3.0 / n)
    elite = max(0, min(elite, population - 1))
    pop = np.stack([repair(problem, _initial(problem, rng)) for _ in range(population)])
    fit, _ = evaluate(problem, pop)
    history = [float(fit.max())]
    for _ in range(generations):
        keep = pop[np.argsort(-fit, kind="stable")[:elite]]
        n_child = population - elite
        pa = pop[_tournament(fit, n_child, tournament, rng)]
        pb = pop[_tournament(fit, n_child, tournament, rng)]
        kids = _crossover(pa, pb, problem.k, crossover_rate, rng)
        kids = _mutate(problem, kids, pm, rng)
        kid_fit, _ = evaluate(problem, kids)
        pop = np.concatenate([keep, kids])
        fit = np.concatenate([fit[np.argsort(-fit, kind="stable")[:elite]], kid_fit])
        history.append(float(fit.max()))
    best = pop[int(np.argmax(fit))]
    best = _polish_constraints(problem, best)
    res = _result(problem, "gsa", best, history)
    res.history[-1] = max(res.history[-1], res.fitness)
    return res


def _polish_constraints(problem: ShardingProblem, genes: np.ndarray) -> np.ndarray:
    """Repair an infeasible final answer when the repair scores better."""
    fixed = repair(problem, genes)
    f0, _ = evaluate(problem, np.stack([genes, fixed]))
    return fixed if f0[1] > f0[0] else genes


def _tournament(fit: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    cand = rng.integers(0, len(fit), size=(count, size))
    return cand[np.arange(count), np.argmax(fit[cand], axis=1)]


def _crossover(pa: np.ndarray, pb: np.ndarray, k: int, rate: float,
               rng: np.random.Generator) -> np.ndarray:
    """Uniform crossover after renaming pb's shards to best overlap pa's (shard ids are only
    labels: without the alignment two copies of one partition would produce garbage)."""
    m, n = pa.shape
    idx = (np.arange(m)[:, None] * k * k + pa * k + pb).ravel()
    overlap = np.bincount(idx, minlength=m * k * k).reshape(m, k, k)
    aligned = np.empty_like(pb)
    for i in range(m):
        rows, cols = linear_sum_assignment(-overlap[i])
        rename = np.empty(k, dtype=np.int64)
        rename[cols] = rows
        aligned[i] = rename[pb[i]]
    mask = rng.random((m, n)) < 0.5
    cross = rng.random(m) < rate
    return np.where(mask & cross[:, None], aligned, pa)


def _mutate(problem: ShardingProblem, pop: np.ndarray, pm: float,
            rng: np.random.Generator) -> np.ndarray:
    """Per-gene reassignment (random shard, or a near neighbour's shard half the time), plus
    one same-kind swap in a tenth of the individuals."""
    out = pop.copy()
    rows, cols = np.nonzero(rng.random(out.shape) < pm)
    if len(rows):
        guided = rng.random(len(rows)) < 0.5
        nb = problem.nearest[cols, rng.integers(0, problem.nearest.shape[1], len(rows))]
        out[rows, cols] = np.where(guided, pop[rows, nb], rng.integers(0, problem.k, len(rows)))
    swappers = np.flatnonzero(rng.random(len(out)) < 0.1)
    for r in swappers:
        _swap_same_kind(problem, out[r], rng)
    return out


def _swap_same_kind(problem: ShardingProblem, genes: np.ndarray, rng: np.random.Generator) -> None:
    i = int(rng.integers(problem.n))
    same = np.flatnonzero(problem.is_rsu == problem.is_rsu[i])
    j = int(same[rng.integers(len(same))])
    genes[i], genes[j] = genes[j], genes[i]


# --------------------------------------------------------------------------- baselines


def random_sharding(problem: ShardingProblem, rng: np.random.Generator) -> ShardingResult:
    """Balanced uniformly random partition: shuffle the nodes, deal them round-robin."""
    genes = np.empty(problem.n, dtype=np.int64)
    genes[rng.permutation(problem.n)] = np.arange(problem.n) % problem.k
    return _result(problem, "random", genes)


def static_sharding(problem: ShardingProblem) -> ShardingResult:
    """Non-adaptive ID-hash sharding: blake2b(name) mod k, fixed whatever nodes do."""
    genes = np.array([int.from_bytes(hashlib.blake2b(nm.encode(), digest_size=8).digest(),
                                     "big") % problem.k for nm in problem.names], dtype=np.int64)
    return _result(problem, "static", genes)


def objective_only(problem: ShardingProblem, rng: np.random.Generator, population: int = 40,
                   generations: int = 150) -> ShardingResult:
    """Ablation of GSA's genetic search: same objective, constraints, initial assignment,
    mutation neighbourhood and evaluation budget, but a single assignment improved by sampled
    steepest ascent (each step draws `population` single-node moves or same-kind swaps and
    takes the best if it improves)."""
    cur = repair(problem, _initial(problem, rng))
    cur_fit = float(evaluate(problem, cur[None, :])[0][0])
    history = [cur_fit]
    for _ in range(generations):
        cand = _neighbours(problem, cur, population, rng)
        fit, _ = evaluate(problem, cand)
        best = int(np.argmax(fit))
        if fit[best] > cur_fit:
            cur, cur_fit = cand[best], float(fit[best])
        history.append(cur_fit)
    cur = _polish_constraints(problem, cur)
    res = _result(problem, "objective_only", cur, history)
    res.history[-1] = max(res.history[-1], res.fitness)
    return res


def _neighbours(problem: ShardingProblem, genes: np.ndarray, count: int,
                rng: np.random.Generator) -> np.ndarray:
    cand = np.repeat(genes[None, :], count, axis=0)
    idx = rng.integers(0, problem.n, count)
    guided = rng.random(count) < 0.5
    nb = problem.nearest[idx, rng.integers(0, problem.nearest.shape[1], count)]
    cand[np.arange(count), idx] = np.where(guided, genes[nb], rng.integers(0, problem.k, count))
    for r in np.flatnonzero(rng.random(count) < 0.25):
        _swap_same_kind(problem, cand[r], rng)
    return cand


# --------------------------------------------------------------------------- synthetic instances


def synthetic_nodes(n: int, n_rsu: int, rng: np.random.Generator, area_m: float = 2000.0,
                    max_speed: float = 30.0) -> list[NodeInfo]:
    """Random instance for tests and sweeps: RSUs on a jittered grid, vehicles anywhere with
    random headings and speeds, trust ~ Beta(5, 2) (most nodes honest, a tail of suspects)."""
    out: list[NodeInfo] = []
    side = max(1, math.ceil(math.sqrt(n_rsu)))
    for i in range(n_rsu):
        cx, cy = (i % side + 0.5) * area_m / side, (i // side + 0.5) * area_m / side
        jitter = rng.normal(0.0, area_m / side / 10.0, 2)
        out.append(NodeInfo(f"rsu{i}", "rsu", (cx + jitter[0], cy + jitter[1]), (0.0, 0.0),
                            float(rng.beta(8, 1.5))))
    for i in range(n - n_rsu):
        heading = rng.uniform(0.0, 2.0 * math.pi)
        speed = rng.uniform(0.0, max_speed)
        out.append(NodeInfo(f"veh{i}", "vehicle", tuple(rng.uniform(0.0, area_m, 2)),
                            (speed * math.cos(heading), speed * math.sin(heading)),
                            float(rng.beta(5, 2))))
    return out


def distance_latency(nodes: Sequence[NodeInfo], base_ms: float = 1.0,
                     per_km_ms: float = 5.0) -> LatencyFn:
    """One-way latency growing with distance (multi-hop V2X relaying): base + per_km * d."""
    where = {nd.name: (float(nd.position[0]), float(nd.position[1])) for nd in nodes}

    def lat(a: str, b: str) -> float:
        (xa, ya), (xb, yb) = where[a], where[b]
        return base_ms + per_km_ms * math.hypot(xa - xb, ya - yb) / 1000.0

    return lat
