"""LLM layer assignment: Halda is exact (against brute force over every k, window vector and
device subset), respects memory, never loses to a baseline on its own model; hand-checked
optima; the latency models (piped ring, tensor parallelism, TTFT) on hand-computed numbers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from collections.abc import Iterator, Sequence

import pytest

from controllers.llm import (
    Assignment,
    AssignmentError,
    Device,
    Link,
    ModelShape,
    build_assignment,
    even_split,
    full_mesh,
    halda,
    halda_by_rounds,
    links_from_matrix,
    memory_violations,
    pipeline_breakdown,
    pipeline_ms_per_token,
    pipeline_ttft_ms,
    proportional_shares,
    proportional_split,
    ring_order,
    single_device,
    smollm2_135m,
    tensor_parallel_breakdown,
    tensor_parallel_ms_per_token,
    tensor_parallel_ttft_ms,
)
from controllers.llm.latency import Links

pytestmark = pytest.mark.unit

# A toy model whose memory is easy to count: 100 B per layer, embedding+head 200 B on the master.
TOY = ModelShape(n_layers=6, layer_bytes=100, embed_bytes=150, head_bytes=50,
                 hidden_bytes_per_token=1000)
FREE = full_mesh("ABCD", 0.0)  # zero latency, infinite bandwidth


def dev(name: str, layer_ms: float, layers: int, *, master: bool = False, head_ms: float = 0.0,
        disk: float | None = None, model: ModelShape = TOY) -> Device:
    """A device whose memory holds exactly `layers` layers (plus embedding/head if master)."""
    mem = layers * model.layer_bytes + (model.master_bytes if master else 0)
    return Device(name, layer_ms, head_ms, mem, disk_ms_per_layer=disk)


# ---------------------------------------------------------------- brute force (independent)

def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in compositions(total - first, parts - 1):
            yield (first, *rest)


def brute_cost(ring: Sequence[Device], widths: Sequence[int], k: int, model: ModelShape,
               links: Links) -> float:
    """The latency of a layout written out from the definition, or inf if memory breaks.
    Stage by stage: compute, a hop whenever the device changes (and back to the master)."""
    cost = ring[0].head_ms
    for i, (d, w) in enumerate(zip(ring, widths, strict=True)):
        if w == 0:
            continue
        fixed = model.embed_bytes + model.head_bytes if i == 0 else 0
        cap = (d.mem_bytes - d.os_reserved_bytes - fixed) // model.layer_bytes
        if d.disk_ms_per_layer is None:
            if k * w > cap:
                return math.inf
        else:
            if w > cap:
                return math.inf
            cost += d.disk_ms_per_layer * max(0, k * w - cap)
    seq = [ring[0].name]
    for _ in range(k):
        for d, w in zip(ring, widths, strict=True):
            if w:
                cost += w * d.layer_ms
                seq.append(d.name)
    seq.append(ring[0].name)
    for a, b in itertools.pairwise(seq):
        if a != b:
            if b not in links.get(a, {}):
                return math.inf
            link = links[a][b]
            cost += link.latency_ms + model.hidden_bytes_per_token * 8 / (
                link.bandwidth_mbps * 1000)
    return cost


def brute_force(ring: Sequence[Device], model: ModelShape, links: Links) -> float:
    best = math.inf
    for k in range(1, model.n_layers + 1):
        if model.n_layers % k:
            continue
        for widths in compositions(model.n_layers // k, len(ring)):
            if widths[0] >= 1:
                best = min(best, brute_cost(ring, widths, k, model, links))
    return best


def random_instance(seed: int, n_layers: int = 12,
                    n_devices: int | None = None) -> tuple[list[Device], ModelShape, Links]:
    rng = random.Random(seed)
    n = n_devices or rng.choice([3, 4])
    model = ModelShape(n_layers, 100, 150, 50, rng.choice([0, 500, 2304]))
    names = [f"d{i}" for i in range(n)]
    devices = []
    for i, name in enumerate(names):
        layers = rng.randint(0, n_layers)
        mem = layers * 100 + (200 if i == 0 else 0) + rng.randint(0, 99)
        disk = rng.uniform(0.0, 15.0) if rng.random() < 0.35 else None
        devices.append(Device(name, rng.uniform(0.5, 10.0), rng.uniform(0.0, 5.0), mem,
                              disk_ms_per_layer=disk))
    lat = [[rng.uniform(0.0, 20.0) for _ in names] for _ in names]
    for i, j in itertools.permutations(range(n), 2):
        if rng.random() < 0.1:  # sparse links: some pairs cannot be neighbours
            lat[i][j] = math.nan
    bw = [[rng.choice([math.inf, rng.uniform(1.0, 100.0)]) for _ in names] for _ in names]
    return devices, model, links_from_matrix(names, lat, bw)


# ---------------------------------------------------------------- hand-checked optima

def test_zero_latency_puts_everything_on_the_fastest_device_that_fits() -> None:
    # One request: latency is the SUM of stage times, so with free links the fast master takes
    # all 6 layers (6 x 1 ms) rather than balancing with the 2x slower B.
    fast_master = [dev("A", 1.0, 6, master=True), dev("B", 2.0, 6)]
    plan = halda(fast_master, TOY, FREE)
    assert plan.order == ("A",) and plan.predicted_ms_per_token == pytest.approx(6.0)
    # A holds only 4: the fastest fills first, B takes the rest: 4 x 1 + 2 x 2 = 8 ms.
    limited = [dev("A", 1.0, 4, master=True), dev("B", 2.0, 6)]
    plan = halda(limited, TOY, FREE)
    assert plan.widths == {"A": 4, "B": 2} and plan.predicted_ms_per_token == pytest.approx(8.0)
    # A slow master keeps the one layer per round it must run: 1 x 2 + 5 x 1 = 7 ms.
    slow_master = [dev("A", 2.0, 6, master=True), dev("B", 1.0, 6)]
    plan = halda(slow_master, TOY, FREE)
    assert plan.widths == {"A": 1, "B": 5} and plan.predicted_ms_per_token == pytest.approx(7.0)


def test_link_latency_decides_whether_offloading_pays() -> None:
    # L = 4; master A 10 ms/layer (head 1 ms), B 2 ms/layer, 5 ms each way, infinite bandwidth.
    #   all on A: 4 x 10 + 1 = 41;  A1 B3: 10 + 6 + 2 x 5 + 1 = 27;  A2 B2: 20 + 4 + 10 + 1 = 35.
    model = ModelShape(4, 100, 150, 50, 1000)
    devices = [dev("A", 10.0, 4, master=True, head_ms=1.0, model=model), dev("B", 2.0, 4,
                                                                            model=model)]
    plan = halda(devices, model, full_mesh("AB", 5.0))
    assert plan.widths == {"A": 1, "B": 3}
    assert plan.predicted_ms_per_token == pytest.approx(27.0)
    assert plan.predicted_breakdown["network_ms"] == pytest.approx(10.0)
    # 20 ms each way: A1 B3 costs 10 + 6 + 40 + 1 = 57 > 41, so everything stays on A.
    plan = halda(devices, model, full_mesh("AB", 20.0))
    assert plan.order == ("A",) and plan.predicted_ms_per_token == pytest.approx(41.0)


def test_rounds_let_an_offloading_device_stream_layers() -> None:
    # L = 4.  Master A (hard limit) holds 2 layers, B holds 1 resident layer and may re-read
    # more from storage at 3 ms each.  k=1: at most 2 + 1 = 3 layers fit; k=4: A would need 4.
    # k=2: A and B each run a 1-layer window per round; B holds 2 layers, 1 overflows:
    #   compute 2 x 10 + 2 x 1 = 22, overflow 3, hops 2 rounds x (1 + 1) = 4  ->  29 ms.
    model = ModelShape(4, 100, 150, 50, 0)
    devices = [dev("A", 10.0, 2, master=True, model=model),
               dev("B", 1.0, 1, disk=3.0, model=model)]
    plan = halda(devices, model, full_mesh("AB", 1.0))
    assert plan.rounds == 2 and plan.widths == {"A": 1, "B": 1}
    assert plan.stages() == [("A", 0, 1), ("B", 1, 2), ("A", 2, 3), ("B", 3, 4)]
    assert plan.predicted_breakdown["overflow_ms"] == pytest.approx(3.0)
    assert plan.predicted_ms_per_token == pytest.approx(29.0)
    assert memory_violations(plan, devices, model) == []
    with pytest.raises(AssignmentError, match="rounds k in \\[1\\]"):
        halda(devices, model, full_mesh("AB", 1.0), max_rounds=1)


def test_ring_skips_a_slow_device_only_over_a_direct_link() -> None:
    # Ring A -> B -> C -> A; B is very slow.  With the direct link A -> C the ring skips B:
    # A1 C5 = 5 + 5 + 1 + 1 = 12.  Without it C can only be reached through B (>= 100 ms
    # for B's layer), so all 6 layers stay on A: 30.
    devices = [dev("A", 5.0, 6, master=True), dev("B", 100.0, 6), dev("C", 1.0, 6)]
    links = full_mesh("ABC", 1.0)
    plan = halda(devices, TOY, links)
    assert plan.order == ("A", "C") and plan.predicted_ms_per_token == pytest.approx(12.0)
    del links["A"]["C"]
    plan = halda(devices, TOY, links)
    assert plan.order == ("A",) and plan.predicted_ms_per_token == pytest.approx(30.0)
    # The ring is rotated to start at the master; `order` may leave devices out.  Master C
    # holds only 4 layers beside embedding/head (600 - 200 B): C4 A2 = 4 + 10 + 2 hops.
    links = full_mesh("ABC", 1.0)
    assert halda(devices, TOY, links, master="C").widths == {"C": 4, "A": 2}
    assert halda(devices, TOY, links, master="B").widths == {"B": 1, "C": 5}
    assert halda(devices, TOY, links, order=["B", "A"], master="A").order == ("A",)


# ---------------------------------------------------------------- exactness and invariants

@pytest.mark.parametrize("seed", range(60))
def test_halda_equals_brute_force(seed: int) -> None:
    devices, model, links = random_instance(seed)
    best = brute_force(devices, model, links)
    if math.isinf(best):
        with pytest.raises(AssignmentError):
            halda(devices, model, links)
        return
    plan = halda(devices, model, links)
    assert plan.predicted_ms_per_token == pytest.approx(best, rel=1e-9, abs=1e-6)
    # The latency module agrees with the brute force's own arithmetic on the chosen layout.
    ring = {d.name: d for d in devices}
    widths = [plan.widths.get(d.name, 0) for d in devices]
    assert brute_cost(list(ring.values()), widths, plan.rounds, model, links) == pytest.approx(
        pipeline_ms_per_token(plan, devices, model, links))
    assert plan.feasible and memory_violations(plan, devices, model) == []


@pytest.mark.parametrize("seed", range(6))
def test_halda_equals_brute_force_at_benchmark_size(seed: int) -> None:
    # 5 devices, 30 layers (SmolLM2-135M's depth): ~45,000 layouts per instance.
    devices, model, links = random_instance(seed + 500, n_layers=30, n_devices=5)
    best = brute_force(devices, model, links)
    if math.isinf(best):
        with pytest.raises(AssignmentError):
            halda(devices, model, links)
    else:
        assert halda(devices, model, links).predicted_ms_per_token == pytest.approx(best)


@pytest.mark.parametrize("seed", range(40))
def test_every_plan_respects_memory_and_covers_each_layer_once(seed: int) -> None:
    devices, model, links = random_instance(seed, n_layers=30, n_devices=5)
    by_name = {d.name: d for d in devices}
    try:
        plans = list(halda_by_rounds(devices, model, links).values())
    except AssignmentError:
        return
    for plan in plans:
        stages = plan.stages()
        assert [s for _, s, _ in stages] == [0, *[e for _, _, e in stages[:-1]]]
        assert stages[-1][2] == model.n_layers
        assert [d for d, _, _ in stages] == list(plan.order) * plan.rounds
        for d in plan.order:
            dv = by_name[d]
            fixed = model.master_bytes if d == plan.master else 0
            cap = (dv.mem_bytes - dv.os_reserved_bytes - fixed) // model.layer_bytes
            layers = plan.widths[d] if dv.disk_ms_per_layer is not None else plan.layers_on(d)
            assert layers <= cap
        assert memory_violations(plan, devices, model) == []


@pytest.mark.parametrize("seed", range(30))
def test_halda_beats_or_equals_every_feasible_baseline(seed: int) -> None:
    devices, model, links = random_instance(seed + 1000, n_layers=30, n_devices=5)
    links = full_mesh([d.name for d in devices], 4.0, 50.0)  # baselines need every link
    try:
        best = halda(devices, model, links)
    except AssignmentError:
        return
    for baseline in (even_split, proportional_split, single_device):
        plan = baseline(devices, model, links)
        if plan.feasible and plan.master == best.master:  # a relocated master is another problem
            assert best.predicted_ms_per_token <= plan.predicted_ms_per_token + 1e-9


def test_hard_limits_make_one_round_optimal() -> None:
    # More rounds only add hops when nothing offloads: k=1 with k*w layers is as feasible.
    for seed in range(20):
        devices, model, _ = random_instance(seed + 2000)
        hard = [Device(d.name, d.layer_ms, d.head_ms, d.mem_bytes) for d in devices]
        plans = halda_by_rounds(hard, model, full_mesh([d.name for d in hard], 2.0))
        if plans:
            assert min(plans.values(), key=lambda p: p.predicted_ms_per_token).rounds == 1


def test_infeasible_memory_names_devices_and_bytes() -> None:
    devices = [dev("A", 1.0, 2, master=True), dev("B", 1.0, 3)]
    with pytest.raises(AssignmentError) as err:
        halda(devices, TOY, FREE)
    assert "'A'" in err.value.args[0] and "'B'" in err.value.args[0]
    assert "600 B" in err.value.args[0] and "2 layers" in err.value.args[0]
    tiny_master = [Device("A", 1.0, 0.0, 250), dev("B", 1.0, 6)]
    with pytest.raises(AssignmentError, match=r"master 'A'.*needs 300 B.*has 250 B"):
        halda(tiny_master, TOY, FREE)


# ---------------------------------------------------------------- baselines

def test_even_split_reports_memory_violations_instead_of_fixing_them() -> None:
    devices = [dev("A", 1.0, 6, master=True), dev("B", 1.0, 1), dev("C", 1.0, 6),
               dev("D", 1.0, 6)]
    plan = even_split(devices, TOY, FREE)
    assert plan.widths == {"A": 2, "B": 2, "C": 1, "D": 1} and plan.rounds == 1
    assert not plan.feasible and "device 'B' needs 200 B" in plan.reason


def test_proportional_split_largest_remainder_and_spill() -> None:
    model = ModelShape(10, 100, 150, 50, 0)
    # speeds 1 : 1/2 : 1/4 of 10 layers = 5.71, 2.86, 1.43 -> floors 5, 2, 1, the two spare
    # layers to the largest remainders B (.86) and A (.71): 6, 3, 1.
    devices = [dev("A", 1.0, 10, master=True, model=model), dev("B", 2.0, 10, model=model),
               dev("C", 4.0, 10, model=model)]
    plan = proportional_split(devices, model, FREE)
    assert plan.widths == {"A": 6, "B": 3, "C": 1} and plan.feasible
    # A holds 4: its 2 extra spill to B (5), B holds 4: 1 spills on to C (2).
    capped = [dev("A", 1.0, 4, master=True, model=model), dev("B", 2.0, 4, model=model),
              dev("C", 4.0, 10, model=model)]
    plan = proportional_split(capped, model, FREE)
    assert plan.widths == {"A": 4, "B": 4, "C": 2} and plan.feasible
    too_small = [dev("A", 1.0, 2, master=True, model=model), dev("B", 2.0, 2, model=model)]
    assert not proportional_split(too_small, model, FREE).feasible


def test_single_device_relocates_when_the_master_is_too_small() -> None:
    devices = [dev("A", 1.0, 6, master=True, head_ms=2.0), dev("B", 0.5, 6)]
    assert single_device(devices, TOY, FREE).order == ("A",)
    small = [dev("A", 1.0, 3, master=True, head_ms=2.0), dev("B", 3.0, 20, head_ms=1.0),
             Device("C", 2.0, 1.0, 800)]
    plan = single_device(small, TOY, FREE)
    assert plan.order == ("C",) and plan.feasible and "runs on 'C'" in plan.reason
    assert plan.predicted_ms_per_token == pytest.approx(6 * 2.0 + 1.0)
    nothing = [dev("A", 1.0, 3, master=True), dev("B", 1.0, 3)]
    assert not single_device(nothing, TOY, FREE).feasible


# ---------------------------------------------------------------- latency models

def test_pipeline_latency_by_hand() -> None:
    # Ring A, B, C with windows 1, 2, 0 ... C unused; k = 2 over L = 6: A1 B2 A1 B2.
    # Links: 3 ms + 1000 B at 8 Mbit/s (1 ms) = 4 ms each way.  Compute 2 x (1x1 + 2x2) = 10,
    # head 0.5, hops A->B, B->A twice = 16.  Total 26.5 ms.
    devices = [dev("A", 1.0, 6, master=True, head_ms=0.5), dev("B", 2.0, 6), dev("C", 1.0, 6)]
    links = full_mesh("ABC", 3.0, 8.0)
    plan = build_assignment("hand", ["A", "B", "C"], {"A": 1, "B": 2, "C": 0}, 2, devices, TOY,
                            links)
    assert plan.order == ("A", "B")
    assert plan.windows == {"A": ((0, 1), (3, 4)), "B": ((1, 3), (4, 6))}
    b = pipeline_breakdown(plan, devices, TOY, links)
    assert (b["compute_ms"], b["network_ms"], b["hops"]) == pytest.approx((10.0, 16.0, 4.0))
    assert pipeline_ms_per_token(plan, devices, TOY, links) == pytest.approx(26.5)
    # One prompt token costs what a decoded token costs; 10 tokens: compute x10, payload x10.
    assert pipeline_ttft_ms(plan, devices, TOY, links, 1) == pytest.approx(26.5)
    assert pipeline_ttft_ms(plan, devices, TOY, links, 10) == pytest.approx(
        100.0 + 0.5 + 4 * (3.0 + 10.0))
    # A prompt arriving on C: 10 token ids (40 B) C->A and one token back.
    relay = 3.0 + 40 * 8 / 8000 + 3.0 + 4 * 8 / 8000
    assert pipeline_ttft_ms(plan, devices, TOY, links, 10, origin="C") == pytest.approx(
        100.0 + 0.5 + 52.0 + relay)


def test_tensor_parallel_compute_divides_by_world_size() -> None:
    model = smollm2_135m()
    names = ["a", "b", "c", "d"]
    devices = [Device(n, 4.0, 10.0, 1 << 30) for n in names]
    shares = proportional_shares(devices)
    assert shares == pytest.approx(dict.fromkeys(names, 0.25))
    free = full_mesh(names, 0.0)
    b = tensor_parallel_breakdown(devices, shares, model, free, "a")
    assert b["compute_ms"] == pytest.approx(30 * 4.0 / 4) and b["network_ms"] == 0.0
    assert b["total_ms"] == pytest.approx(30.0 + 10.0) and b["allreduces"] == 60
    # Attention on 3 ranks (3 KV heads), MLP on 4: attention half takes 25 % x 4/3 longer.
    attn = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3, "d": 0.0}
    b = tensor_parallel_breakdown(devices, attn, model, free, "a", mlp_shares=shares)
    assert b["compute_ms"] == pytest.approx(30 * 4.0 * (0.25 / 3 + 0.75 / 4))


def test_tensor_parallel_loses_to_the_pipeline_on_slow_links() -> None:
    model = smollm2_135m()
    names = ["a", "b", "c", "d"]
    devices = [Device(n, 4.0, 10.0, 1 << 30) for n in names]
    slow = full_mesh(names, 50.0, 100.0)
    tp = tensor_parallel_ms_per_token(devices, proportional_shares(devices), model, slow, "a")
    pipe = halda(devices, model, slow)
    # 60 all-reduces x (2 x 50 ms + transfer) against a pipeline that stays on one device.
    assert tp > 6000.0 and pipe.predicted_ms_per_token == pytest.approx(130.0)
    assert tp > 40 * pipe.predicted_ms_per_token
    # Free links: TP wins (40 ms against 130 ms) - the crossover the benchmark measures.
    free = full_mesh(names, 0.0)
    assert tensor_parallel_ms_per_token(devices, proportional_shares(devices), model, free,
                                        "a") < halda(devices, model, free).predicted_ms_per_token
    ttft = tensor_parallel_ttft_ms(devices, proportional_shares(devices), model, slow, "a", 16)
    assert ttft > tp


def test_tensor_parallel_with_offload_is_feasible_and_pays_its_slices_from_disk() -> None:
    """TPI-LLM's regime: each rank's share (300 B of layers here) exceeds its memory.  Without
    offload the plan is infeasible (OOM, named); with offload it is feasible once one pinned
    slice + the streaming buffer fit, and the prediction adds the slowest rank's re-read
    slices, each share x disk_ms_per_layer (a rank reads only its own slice)."""
    from controllers.llm.experiment import plan_for
    from controllers.llm.latency import tp_streamed_layers

    model = ModelShape(n_layers=12, layer_bytes=100, embed_bytes=150, head_bytes=50,
                       hidden_bytes_per_token=0)
    names = ["a", "b", "c", "d"]
    free = full_mesh(names, 0.0)
    # slice = 25 B; master: 200 B fixed + 100 B; workers 100 B: 4 slots, 3 pinned + buffer
    oom = [Device(n, 4.0, 10.0, 300 if n == "a" else 100) for n in names]
    p = plan_for("tensor", oom, model, free, "a")
    assert not p.feasible and "b needs 0 MiB" in p.reason and "OOM" in p.reason
    off = [dataclasses.replace(d, disk_ms_per_layer=8.0) for d in oom]
    p = plan_for("tensor", off, model, free, "a")
    assert p.feasible, p.reason
    assert tp_streamed_layers(off[1], 0.25, model, master=False) == 12 - 3
    assert tp_streamed_layers(off[1], 0.25, model, master=False, window=2) == 12 - 2
    assert tp_streamed_layers(off[0], 0.25, model, master=True) == 12 - 3
    b = tensor_parallel_breakdown(off, dict.fromkeys(names, 0.25), model, free, "a")
    assert b["disk_ms"] == pytest.approx(9 * 0.25 * 8.0)
    assert b["total_ms"] == pytest.approx(12 * 4.0 / 4 + 10.0 + 18.0)
    assert p.predicted_ms_per_token == pytest.approx(b["total_ms"])
    # everything fits: no disk term; too little even to stream: infeasible, with the least
    roomy = [dataclasses.replace(d, mem_bytes=1000) for d in off]
    assert tensor_parallel_breakdown(roomy, dict.fromkeys(names, 0.25), model, free,
                                     "a")["disk_ms"] == 0.0
    tiny = [dataclasses.replace(d, mem_bytes=40) if d.name == "b" else d for d in off]
    p = plan_for("tensor", tiny, model, free, "a")
    assert not p.feasible and "streaming: at least 0 MiB" in p.reason


# ---------------------------------------------------------------- data model

def test_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="layer_ms"):
        Device("a", -1.0, 0.0, 100)
    with pytest.raises(ValueError, match="mem_bytes"):
        Device("a", 1.0, 0.0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="disk_ms_per_layer"):
        Device("a", 1.0, 0.0, 100, disk_ms_per_layer=math.nan)
    with pytest.raises(ValueError, match="n_layers"):
        ModelShape(0, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="bandwidth_mbps"):
        Link(1.0, 0.0)
    with pytest.raises(ValueError, match=r"windows\['B'\]"):
        Assignment("x", ("A", "B"), 1, {"A": ((0, 2),), "B": ((3, 6),)}, 1.0, {})
    with pytest.raises(ValueError, match="duplicate device name"):
        halda([dev("A", 1.0, 6, master=True), dev("A", 1.0, 6)], TOY, FREE)
    with pytest.raises(ValueError, match="no link from 'A' to 'B'"):
        build_assignment("x", ["A", "B"], {"A": 3, "B": 3}, 1,
                         [dev("A", 1.0, 6, master=True), dev("B", 1.0, 6)], TOY, {"A": {}})


def test_assignment_round_trips_through_json() -> None:
    devices, model, links = random_instance(3, n_layers=30, n_devices=5)
    plan = halda_by_rounds(devices, model, links)
    for p in plan.values():
        assert Assignment.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_ring_order_is_nearest_neighbour_from_the_master() -> None:
    names = ["m", "x", "y", "z"]
    lat = [[0, 9, 1, 5], [9, 0, 2, 3], [1, 2, 0, 7], [5, 3, 7, 0]]
    devices = [Device(n, 1.0, 0.0, 1 << 20) for n in names]
    assert ring_order(devices, links_from_matrix(names, lat), "m") == ["m", "y", "x", "z"]
    assert ring_order(devices, links_from_matrix(names, lat), "z") == ["z", "x", "y", "m"]


def test_smollm2_shape_matches_the_gguf() -> None:
    model = smollm2_135m()
    assert (model.n_layers, model.layer_bytes, model.hidden_bytes_per_token) == (30, 2_216_448,
                                                                                 2304)
    llama = ModelShape.llama(30, 576, 1536, 9, 3, 49152, bytes_per_param=2.0)
    assert llama.attn_fraction == pytest.approx(0.25)
    assert llama.layer_bytes == 2 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536) + 2 * 576 * 4
