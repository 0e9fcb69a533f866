"""CPN service mapping: feasibility of every mapper, ABS's guarantees (never worse than its
best-fit start, local optimality), determinism, the instance format, and the swarm runner."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from controllers.cpn import swarm
from controllers.cpn.abs_search import ABSMapper, neighbours
from controllers.cpn.fitness import RequestContext, best_fit_ranking, infeasible
from controllers.cpn.instances import (
    PRESETS,
    Instance,
    InstanceError,
    generate,
    infrastructure_from_dict,
    instance_to_dict,
    load_instance,
    save_instance,
)
from controllers.cpn.mappers import DEFAULT_ALGOS, Mapper, make_mapper
from controllers.cpn.model import (
    Infrastructure,
    Mapping,
    ServiceRequest,
    State,
    VirtualLink,
)
from controllers.cpn.online import simulate
from controllers.cpn.partition import partition_service

pytestmark = pytest.mark.unit

BUDGET = 60  # small search budgets keep the file fast; the guarantees do not depend on it


def line_infra() -> Infrastructure:
    """a -(1 ms, 100)- b -(5 ms, 50)- c, plus a switch s between a and c (2 + 2 ms, 1000)."""
    return infrastructure_from_dict({
        "nodes": [{"name": "a", "cpu": 4, "mem": 4}, {"name": "b", "cpu": 8, "mem": 8},
                  {"name": "c", "cpu": 16, "mem": 16}, {"name": "s"}],
        "links": [{"a": "a", "b": "b", "bandwidth_mbps": 100, "latency_ms": 1},
                  {"a": "b", "b": "c", "bandwidth_mbps": 50, "latency_ms": 5},
                  {"a": "a", "b": "s", "bandwidth_mbps": 1000, "latency_ms": 2},
                  {"a": "s", "b": "c", "bandwidth_mbps": 1000, "latency_ms": 2}]})


def request(cpu: tuple[float, ...], links: tuple[tuple[int, int, float], ...] = (),
            bound: float = 10.0, **kw: object) -> ServiceRequest:
    return ServiceRequest(0, cpu, tuple(1.0 for _ in cpu),
                          tuple(VirtualLink(a, b, bw) for a, b, bw in links), bound, 0.0, 10.0,
                          **kw)


def replay_checked(instance: Instance, mapper: Mapper, seed: int = 0) -> list[Mapping]:
    """Online replay asserting state.check on every returned mapping and that residuals never
    go negative; returns the accepted mappings."""
    import heapq

    state = State(instance.infra)
    rng = np.random.default_rng(seed)
    live: list[tuple[float, int, Mapping]] = []
    out = []
    for req in instance.requests:
        while live and live[0][0] <= req.arrival:
            state.release(heapq.heappop(live)[2])
        state.observe(req)
        m = mapper.map(state, req, rng)
        if m is None:
            continue
        assert state.check(m) == [], (mapper.name, req.id, state.check(m))
        infra = instance.infra
        for path in (*m.paths, m.ingress_path):
            assert infra.path_latency(path) <= req.latency_bound + 1e-9
        state.allocate(m)
        assert (state.cpu >= -1e-9).all() and (state.mem >= -1e-9).all()
        assert (state.bw >= -1e-9).all()
        heapq.heappush(live, (req.departure, req.id, m))
        out.append(m)
    return out


# ---------------------------------------------------------------- the model


def test_check_allocate_release_by_hand() -> None:
    infra = line_infra()
    state = State(infra)
    req = request((3.0, 10.0), ((0, 1, 40.0),), bound=6.0)
    # a -> c over the switch (4 ms), within the bound
    ok = Mapping(req, (0, 2), ((2, 3),))
    assert state.check(ok) == []
    state.allocate(ok)
    assert state.cpu[0] == 1.0 and state.cpu[2] == 6.0
    assert state.bw[2] == 960.0 and state.bw[3] == 960.0
    # a -> b -> c is 6 ms (ok) but the first one left c with 6 cores < 10
    again = Mapping(dataclasses.replace(req, id=1), (0, 2), ((0, 1),))
    problems = state.check(again)
    assert any("node a: cpu" in p for p in problems)
    assert any("node c: cpu" in p for p in problems)
    with pytest.raises(ValueError, match="cpu"):
        state.allocate(again)
    state.release(ok)
    assert state.cpu.tolist() == infra.cpu.tolist() and state.bw.tolist() == [100, 50, 1000, 1000]


def test_check_catches_latency_bandwidth_and_broken_paths() -> None:
    state = State(line_infra())
    slow = request((1.0, 1.0), ((0, 1, 10.0),), bound=5.0)
    assert any("latency 6.000 ms > bound 5" in p
               for p in state.check(Mapping(slow, (0, 2), ((0, 1),))))
    fat = request((1.0, 1.0), ((0, 1, 80.0),), bound=10.0)
    assert any("bandwidth 80 > residual 50" in p
               for p in state.check(Mapping(fat, (0, 2), ((0, 1),))))
    assert any("does not connect" in p
               for p in state.check(Mapping(fat, (0, 2), ((0,),))))
    entry = request((1.0,), bound=3.0, entry=0, ingress=2)
    assert any("ingress path" in p for p in state.check(Mapping(entry, (0,), (), ())))
    assert state.check(Mapping(entry, (2,), (), ())) == []  # entry at the ingress: no path


# ---------------------------------------------------------------- mappers


@pytest.mark.parametrize("preset", ["simple", "complex"])
def test_every_mapper_returns_only_feasible_mappings(preset: str) -> None:
    instance = generate(preset, 3, n_requests=120 if preset == "complex" else 150, load=2.0)
    accepted = {}
    for algo in DEFAULT_ALGOS:
        accepted[algo] = len(replay_checked(instance, make_mapper(algo, BUDGET), seed=1))
    assert all(n > 0 for n in accepted.values()), accepted
    if preset == "complex":
        assert min(accepted.values()) < len(instance.requests)  # the load really constrains


def test_every_mapper_is_deterministic_under_a_seed() -> None:
    instance = generate("medium", 5, n_requests=25)
    for algo in DEFAULT_ALGOS:
        first = replay_checked(instance, make_mapper(algo, BUDGET), seed=7)
        second = replay_checked(instance, make_mapper(algo, BUDGET), seed=7)
        assert first == second, algo


def test_abs_never_worse_than_its_best_fit_start() -> None:
    instance = generate("complex", 4, n_requests=150, load=1.5)
    mapper = ABSMapper(budget=BUDGET)
    best_fit = make_mapper("best_fit")
    state = State(instance.infra)
    rng = np.random.default_rng(0)
    checked = 0
    for req in instance.requests:
        state.observe(req)
        start_ok = best_fit.map(state, req, rng) is not None
        m = mapper.map(state, req, rng)
        report = mapper.last
        if start_ok:
            checked += 1
            assert m is not None, req.id  # best fit's answer is always available to ABS
            assert report.f <= report.start_f + 1e-9
            ctx = mapper.context(state, req)
            assert ctx.evaluate(m.nodes) == pytest.approx(report.f)
        if m is not None:
            state.allocate(m)
    assert checked > 10


@pytest.mark.parametrize("ls_near", [None, 3])
def test_abs_returns_local_optima(ls_near: int | None) -> None:
    instance = generate("simple", 2, n_requests=60, load=1.5)
    mapper = ABSMapper(budget=BUDGET, ls_near=ls_near)
    state = State(instance.infra)
    rng = np.random.default_rng(0)
    examined = 0
    for req in instance.requests:
        state.observe(req)
        m = mapper.map(state, req, rng)
        if m is None:
            continue
        ctx = mapper.context(state, req)
        parts = partition_service(ctx)
        assert parts == mapper.last.parts
        fx = ctx.evaluate(m.nodes)
        moves = list(neighbours(ctx, m.nodes, parts, ls_near))
        if ls_near is None:  # full neighbourhood: every single-component move is in it
            assert len({y for y in moves if sum(a != b for a, b in zip(y, m.nodes,
                                                                        strict=True)) == 1}) \
                == sum(len([u for u in ctx.candidates((i,)) if u != m.nodes[i]])
                       for i in range(req.size))
        assert all(ctx.evaluate(y) >= fx - 1e-9 for y in moves), req.id
        examined += 1
        state.allocate(m)
    assert examined >= 10


def test_partition_groups_strong_links_within_capacity() -> None:
    infra = line_infra()
    state = State(infra)
    state.observe(request((1.0,)))
    # 0-1 heavy, 1-2 heavy, 2-3 light: {0,1,2} fits c (16 cores) and b (8): 2 hosts >= 2
    req = request((2.0, 2.0, 2.0, 2.0), ((0, 1, 90.0), (1, 2, 80.0), (2, 3, 5.0)))
    parts = partition_service(RequestContext.from_state(state, req))
    assert parts == [[0, 1, 2], [3]]
    # too big to have two hosts: stays apart
    big = request((6.0, 6.0), ((0, 1, 90.0),))
    assert partition_service(RequestContext.from_state(state, big)) == [[0], [1]]


def test_greedy_and_fitness_agree_on_feasibility() -> None:
    instance = generate("complex", 6, n_requests=40, load=2.0)
    state = State(instance.infra)
    for req in instance.requests:
        state.observe(req)
        ctx = RequestContext.from_state(state, req)
        x = ctx.place_greedily(best_fit_ranking(ctx))
        if x is None:
            continue
        assert not infeasible(ctx.evaluate(x))
        m = ctx.decode(x)
        assert m is not None and state.check(m) == []
        state.allocate(m)


def test_two_stage_maps_on_k_shortest_paths_and_respects_the_bound() -> None:
    state = State(line_infra())
    rng = np.random.default_rng(0)
    # 16 cores only fit c; 4 more then fit a (rank 4 x 1100) best: a -> c over the switch
    req = request((4.0, 16.0), ((0, 1, 60.0),), bound=4.0)
    m = make_mapper("two_stage").map(state, req, rng)
    assert m is not None and m.nodes == (0, 2) and m.paths == ((2, 3),)
    assert state.check(m) == []
    # 3.9 ms: no node within the bound of c has room left, and no path is fast enough
    assert make_mapper("two_stage").map(state, dataclasses.replace(req, latency_bound=3.9),
                                        rng) is None


# ---------------------------------------------------------------- online replay


def test_simulate_metrics_are_consistent() -> None:
    instance = generate("simple", 1, n_requests=80)
    m = simulate(instance, make_mapper("best_fit"), seed=0)
    assert 0 < m.acceptance <= 1
    assert m.accepted == round(m.acceptance * m.requests)
    assert 0 < m.cpu_util < 1 and 0 <= m.fragmentation <= 1 and 0 <= m.bw_util < 1
    assert m.time_p95_ms >= m.time_median_ms > 0
    assert m.revenue > 0


# ---------------------------------------------------------------- instances


def test_generators_are_seeded_and_load_changes_only_timing() -> None:
    a = generate("medium", 11, n_requests=20)
    b = generate("medium", 11, n_requests=20)
    assert instance_to_dict(a) == instance_to_dict(b)
    fast = generate("medium", 11, load=2.0, n_requests=20)
    assert [r.cpu for r in fast.requests] == [r.cpu for r in a.requests]
    assert fast.requests[-1].arrival == pytest.approx(a.requests[-1].arrival / 2, rel=0.01)
    assert instance_to_dict(generate("medium", 12, n_requests=20)) != instance_to_dict(a)


def test_topologies() -> None:
    rng_preset = dataclasses.replace(PRESETS["simple"], topology="fattree", fattree_k=4)
    ft = generate(rng_preset, 0, n_requests=5).infra
    assert ft.n == 36 and len(ft.compute) == 16 and ft.m == 48
    ba = generate("medium", 0, n_requests=5).infra
    assert ba.n == 50 and 0 < len(ba.compute) < 50
    wax = generate("complex", 0, n_requests=5).infra
    assert wax.n == 100
    for infra in (ft, ba, wax):  # connected
        assert all(np.isfinite(infra.static_tree(0)[0]))


def test_json_round_trip(tmp_path: Path) -> None:
    instance = generate("simple", 9, n_requests=30)
    path = save_instance(instance, tmp_path / "i.json")
    data = json.loads(path.read_text())
    assert data["format"] == "sagin-cpn-instance" and data["version"] == 1
    back = load_instance(path)
    assert instance_to_dict(back) == instance_to_dict(instance)
    mapper_a, mapper_b = make_mapper("abs", BUDGET), make_mapper("abs", BUDGET)
    ra, rb = simulate(instance, mapper_a, 0), simulate(back, mapper_b, 0)
    assert (ra.accepted, ra.cpu_util) == (rb.accepted, rb.cpu_util)


def test_bad_files_name_the_field_and_the_fix(tmp_path: Path) -> None:
    good = instance_to_dict(generate("simple", 1, n_requests=3))
    bad = json.loads(json.dumps(good))
    bad["requests"][1]["links"] = [{"a": "c0", "b": "c9", "bandwidth_mbps": 5}]
    bad["infrastructure"]["links"][0]["bandwidth_mbps"] = 0
    del bad["requests"][2]["duration_s"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(InstanceError) as err:
        load_instance(path)
    text = str(err.value)
    assert "requests[1]: links[0].b: unknown component 'c9'" in text
    assert "use one of this request's components" in text
    assert "infrastructure.links[0].bandwidth_mbps" in text and "greater than 0" in text
    assert "requests[2].duration_s: Field required; add this field" in text
    path.write_text(json.dumps({**good, "format": "other"}))
    with pytest.raises(InstanceError, match=r'format.*set "format": "sagin-cpn-instance"'):
        load_instance(path)
    path.write_text("{not json")
    with pytest.raises(InstanceError, match="not valid JSON"):
        load_instance(path)


def test_infrastructure_from_dict_errors() -> None:
    with pytest.raises(InstanceError, match=r"links\[0\]\.b: unknown node 'x'"):
        infrastructure_from_dict({"nodes": [{"name": "a", "cpu": 1}],
                                  "links": [{"a": "a", "b": "x", "bandwidth_mbps": 1,
                                             "latency_ms": 1}]})
    with pytest.raises(InstanceError, match="no node has cpu > 0"):
        infrastructure_from_dict({"nodes": [{"name": "a"}], "links": []})


# ---------------------------------------------------------------- swarms


def _square(x: int) -> int:
    return x * x


def test_swarm_runner_local_processes_and_abs_backends_agree() -> None:
    assert swarm.run_swarms(_square, [1, 2, 3], "process", workers=2) == [1, 4, 9]
    assert swarm.run_swarms(_square, [1, 2, 3], "thread") == [1, 4, 9]
    with pytest.raises(ValueError, match="unknown swarm backend"):
        swarm.run_swarms(_square, [1], "cluster")
    instance = generate("complex", 8, n_requests=15)
    serial = replay_checked(instance, ABSMapper(budget=BUDGET), seed=3)
    with ABSMapper(budget=BUDGET, backend="process", workers=2) as mapper:
        parallel = replay_checked(instance, mapper, seed=3)
    assert serial == parallel


def test_ray_backend_without_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # make setup installs Ray; a None entry in sys.modules makes `import ray` fail as on a
    # machine without it, so the message a user would see there is still checked
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RuntimeError, match=r"pip install ray==2\.58\.0"):
        swarm.run_swarms(_square, [1, 2], "ray", ray_address="auto")
    from controllers.cpn.evaluate import main

    with pytest.raises(SystemExit, match=r"--ray-address.*pip install ray==2\.58\.0"):
        main(["--ray-address", "10.0.0.1:6379", "--seeds", "2"])


def test_evaluate_cli_on_an_instance_file(tmp_path: Path) -> None:
    from controllers.cpn.evaluate import main

    path = save_instance(generate("simple", 2, n_requests=25), tmp_path / "tiny.json")
    out = tmp_path / "eval"
    main(["--instance", str(path), "--seeds", "2", "--workers", "1", "--budget", "40",
          "--out", str(out)])
    report = json.loads((out / "results.json").read_text())
    table = report["points"]["tiny"]["table"]
    assert set(table) == set(DEFAULT_ALGOS)
    assert table["best_fit"]["acceptance"]["ci95"] == 0.0  # deterministic baseline
    assert "acceptance" in report["claims"]
    assert "| abs |" in (out / "table.md").read_text()
