"""DRDST sharding (GSA and baselines) and the min-max broadcast tree: determinism, the
ordering against the baselines, the constraints, and optimality gaps on tiny instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from controllers.iov.broadcast import (
    arrival_times,
    build_tree,
    check_tree,
    children_of,
    flat,
    max_latency,
    mst_tree,
    order_children,
    simulate_gossip,
)
from controllers.iov.sharding import (
    NodeInfo,
    ShardingProblem,
    distance_latency,
    fitness,
    gsa,
    objective_only,
    random_sharding,
    stability,
    static_sharding,
    synthetic_nodes,
    update_trust,
)

pytestmark = pytest.mark.unit


def _problem(seed: int, n: int = 100, k: int = 8, n_rsu: int = 12) -> ShardingProblem:
    nodes = synthetic_nodes(n, n_rsu, np.random.default_rng(seed))
    return ShardingProblem(nodes, k, distance_latency(nodes))


def _assert_constraints(problem: ShardingProblem, assignment: dict[str, int]) -> None:
    """Check the three constraints directly, not through the module's own violation count."""
    by_name = {nd.name: nd for nd in problem.nodes}
    shards: dict[int, list[NodeInfo]] = {s: [] for s in range(problem.k)}
    for name, s in assignment.items():
        shards[s].append(by_name[name])
    for s, members in shards.items():
        assert len(members) >= problem.min_size, f"shard {s} too small"
        assert any(m.kind == "rsu" for m in members), f"shard {s} has no RSU"
        low = sum(m.trust < problem.low_trust for m in members)
        assert low <= (len(members) - 1) // 3, f"shard {s}: {low} suspects of {len(members)}"


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("k", [0, -1, 11])
def test_bad_shard_count_raises(k: int) -> None:
    nodes = synthetic_nodes(10, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"k=-?\d+ shards for 10 nodes"):
        ShardingProblem(nodes, k, distance_latency(nodes))


def test_gsa_is_deterministic_under_seed() -> None:
    problem = _problem(1)
    a = gsa(problem, np.random.default_rng(7), generations=40)
    b = gsa(problem, np.random.default_rng(7), generations=40)
    assert a.assignment == b.assignment
    assert a.history == b.history
    assert a.fitness == pytest.approx(fitness(problem, a.assignment))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_gsa_beats_random_and_static_and_is_feasible(seed: int) -> None:
    problem = _problem(seed)
    res = gsa(problem, np.random.default_rng(seed))
    rand = random_sharding(problem, np.random.default_rng(seed))
    static = static_sharding(problem)
    assert res.fitness >= rand.fitness
    assert res.fitness >= static.fitness
    assert res.feasible
    _assert_constraints(problem, res.assignment)
    assert sorted(res.assignment) == sorted(problem.names)
    assert np.all(np.diff(res.history) >= -1e-12)  # elitism: best never gets worse


def test_objective_only_ablation_is_feasible_and_monotone() -> None:
    problem = _problem(21)
    res = objective_only(problem, np.random.default_rng(3))
    assert res.method == "objective_only" and res.feasible
    _assert_constraints(problem, res.assignment)
    assert np.all(np.diff(res.history) >= -1e-12)
    assert res.fitness > random_sharding(problem, np.random.default_rng(3)).fitness


def test_static_sharding_ignores_node_order_and_state() -> None:
    nodes = synthetic_nodes(40, 6, np.random.default_rng(2))
    lat = distance_latency(nodes)
    a = static_sharding(ShardingProblem(nodes, 4, lat)).assignment
    b = static_sharding(ShardingProblem(list(reversed(nodes)), 4, lat)).assignment
    assert a == b


def test_few_rsus_relax_the_rsu_constraint() -> None:
    problem = _problem(5, n=60, k=6, n_rsu=3)
    res = gsa(problem, np.random.default_rng(0), generations=60)
    assert res.feasible
    with_rsu = {s for name, s in res.assignment.items() if name.startswith("rsu")}
    assert len(with_rsu) == 3


def test_stability_scores_link_lifetime() -> None:
    nodes = [
        NodeInfo("r", "rsu", (0.0, 0.0), (0.0, 0.0), 0.9),
        NodeInfo("parked", "vehicle", (50.0, 0.0), (0.0, 0.0), 0.9),
        NodeInfo("leaving", "vehicle", (250.0, 0.0), (30.0, 0.0), 0.9),
        NodeInfo("alone", "vehicle", (5000.0, 0.0), (10.0, 0.0), 0.9),
    ]
    s = stability(nodes, range_m=300.0)
    assert all(0.0 <= v <= 1.0 for v in s.values())
    assert s["alone"] == 0.0
    assert s["parked"] > s["leaving"]
    broken = stability([*nodes[:1], NodeInfo("parked", "vehicle", (50.0, 0.0), (0.0, 0.0), 0.9,
                                             failure_prob=0.5)])
    # both static and in range: every link lasts forever (score 1); failure_prob halves it
    assert stability(nodes[:2])["parked"] == pytest.approx(1.0)
    assert broken["parked"] == pytest.approx(0.5)


def test_update_trust_is_bounded_and_punishes_faster() -> None:
    t = 0.6
    up, down = update_trust(t, True), update_trust(t, False)
    assert up > t > down
    assert t - down > up - t
    assert update_trust(t, (0.0, 0.0)) == pytest.approx(t)
    for _ in range(200):
        t = update_trust(t, False)
    assert 0.0 <= t < 0.01
    with pytest.raises(ValueError):
        update_trust(0.5, (-1.0, 0.0))


# --------------------------------------------------------------------------- broadcast


def _random_latency(names: list[str], rng: np.random.Generator):
    table = {(a, b): float(rng.uniform(1.0, 50.0)) for a in names for b in names if a != b}
    return lambda a, b: table[(a, b)]


def test_arrival_model_counts_sequential_sends() -> None:
    lat = {("r", "a"): 10.0, ("r", "b"): 1.0, ("a", "c"): 2.0}
    tree = {"r": ["a", "b"], "a": ["c"], "b": [], "c": []}
    t = arrival_times(tree, "r", lambda x, y: lat[(x, y)], tx_ms=1.0)
    assert t == {"r": 0.0, "a": 11.0, "b": 3.0, "c": 14.0}
    assert max_latency(tree, "r", lambda x, y: lat[(x, y)], 1.0) == 14.0
    assert children_of(tree, "r") == ["a", "b"] and children_of(tree, "zz") == []


@pytest.mark.parametrize("seed", range(12))
def test_build_tree_never_slower_than_star_or_mst(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(5, 31))
    names = [f"n{i}" for i in range(m + 1)]
    lat = _random_latency(names, rng)
    tx = float(rng.choice([0.2, 1.0, 5.0]))
    tree = build_tree(names[0], names, lat, tx_ms=tx)  # root inside members is tolerated
    check_tree(tree, names[0], names[1:])
    best = max_latency(tree, names[0], lat, tx)
    assert best <= max_latency(flat(names[0], names[1:]), names[0], lat, tx) + 1e-9
    assert best <= max_latency(mst_tree(names[0], names[1:], lat), names[0], lat, tx) + 1e-9


@pytest.mark.parametrize("fanout", [1, 2, 3])
def test_build_tree_respects_fanout(fanout: int) -> None:
    rng = np.random.default_rng(fanout)
    names = [f"n{i}" for i in range(20)]
    tree = build_tree(names[0], names[1:], _random_latency(names, rng), fanout=fanout)
    check_tree(tree, names[0], names[1:])
    assert max(len(kids) for kids in tree.values()) <= fanout


def test_order_children_never_hurts() -> None:
    rng = np.random.default_rng(4)
    names = [f"n{i}" for i in range(15)]
    lat = _random_latency(names, rng)
    tree = mst_tree(names[0], names[1:], lat)
    assert (max_latency(order_children(tree, names[0], lat), names[0], lat)
            <= max_latency(tree, names[0], lat) + 1e-9)


def _brute_force(root: str, members: list[str], lat, tx: float) -> float:
    """Optimum over all spanning trees rooted at `root`; each shape optimally ordered."""
    names = [root, *members]
    n, best = len(names), math.inf
    for par in itertools.product(range(n), repeat=n - 1):
        parent = [-1, *par]
        if not all(_reaches_root(parent, v) for v in range(1, n)):
            continue
        tree: dict[str, list[str]] = {nm: [] for nm in names}
        for v in range(1, n):
            tree[names[parent[v]]].append(names[v])
        best = min(best, max_latency(order_children(tree, root, lat, tx), root, lat, tx))
    return best


def _reaches_root(parent: list[int], v: int) -> bool:
    seen: set[int] = set()
    while v != 0:
        if v in seen or parent[v] == v:
            return False
        seen.add(v)
        v = parent[v]
    return True


def test_build_tree_near_optimal_on_tiny_instances() -> None:
    """Heuristic, not exact: over 300 random instances of 2..5 members the worst gap seen was
    10.6% and 96% were optimal; this fixed sample guards against regressions."""
    rng = np.random.default_rng(2024)
    ratios = []
    for _ in range(40):
        m = int(rng.integers(2, 6))
        names = [f"n{i}" for i in range(m + 1)]
        lat = _random_latency(names, rng)
        tx = float(rng.choice([0.5, 1.0, 5.0, 20.0]))
        got = max_latency(build_tree(names[0], names[1:], lat, tx_ms=tx), names[0], lat, tx)
        ratios.append(got / _brute_force(names[0], names[1:], lat, tx))
    assert min(ratios) >= 1.0 - 1e-9
    assert max(ratios) <= 1.15
    assert float(np.mean(ratios)) <= 1.02


def test_gossip_is_deterministic_and_counts_messages() -> None:
    rng = np.random.default_rng(9)
    names = [f"n{i}" for i in range(25)]
    lat = _random_latency(names, rng)
    a = simulate_gossip(names[0], names[1:], lat, np.random.default_rng(1), fanout=4)
    b = simulate_gossip(names[0], names[1:], lat, np.random.default_rng(1), fanout=4)
    assert a == b
    assert a.messages == 4 * a.reached
    if a.reached == len(names):
        assert a.completion_ms == max(a.arrivals.values())
    else:
        assert a.completion_ms == math.inf


def test_trivial_trees() -> None:
    assert build_tree("r", [], lambda a, b: 1.0) == {"r": []}
    assert build_tree("r", ["r", "x"], lambda a, b: 1.0) == {"r": ["x"], "x": []}
    with pytest.raises(ValueError):
        build_tree("r", ["x"], lambda a, b: 1.0, fanout=0)
