"""Serve prompts on shard nodes with each assignment method and measure what happened.

Shared by the live scenario (controllers/llm/live.py) and the benchmark (controllers/llm/bench.py):
measurements from the nodes become the solver's inputs (`devices_from_profiles`,
`links_from_probe`, `model_shape`), each method becomes a plan (`plan_for`), and `serve` loads
the plan, generates every prompt and compares the tokens with a single-device reference.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from controllers.llm.assign import (
    AssignmentError,
    even_split,
    halda,
    proportional_split,
    single_device,
)
from controllers.llm.latency import (
    Assignment,
    Device,
    Link,
    ModelShape,
    tensor_parallel_breakdown,
)
from payloads.llm.cluster import ClusterError, ShardCluster

UNLIMITED = 1 << 40  # a node without a memory limit


def devices_from_profiles(profiles: dict[str, dict[str, Any]]) -> list[Device]:
    """Solver devices from the nodes' own measurements (op profile), in the given order.

    A node that offloads (``--llm-offload``: its profile has ``offload`` and
    ``disk_ms_per_layer``) becomes a device that may hold more layers than fit, paying
    ``disk_ms_per_layer`` per overflowing layer per token.  Its streaming buffer is reserved
    memory: the node keeps ``(mem - embedding/head) // layer - 1`` layers resident and re-reads
    every other one per token (payloads/llm/stream.py), which is exactly the solver's
    ``layer_capacity`` and ``overflow`` with that reserve."""
    out = []
    for name, p in profiles.items():
        disk = p.get("disk_ms_per_layer") if p.get("offload") else None
        out.append(Device(name, layer_ms=p["layer_ms"], head_ms=p["head_ms"],
                          mem_bytes=int(p.get("mem_limit_bytes") or UNLIMITED),
                          os_reserved_bytes=int(p.get("stream_buffer_bytes") or 0)
                          if disk is not None else 0,
                          disk_ms_per_layer=None if disk is None else float(disk)))
    return out


def links_from_probe(probe: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, Link]]:
    """One-way latency = half the measured RTT; bandwidth = the measured bulk goodput.  A pair
    whose probe failed gets no link (the ring will not put them next to each other)."""
    out: dict[str, dict[str, Link]] = {}
    for a, peers in probe.items():
        out[a] = {b: Link(m["rtt_ms"] / 2.0, max(m["mbps"], 1e-3))
                  for b, m in peers.items() if "rtt_ms" in m}
    return out


def model_shape(path: Any = None) -> ModelShape:
    """The model as the runtime holds it (float32 after dequantisation)."""
    from payloads.llm import model as mdl

    cfg = mdl.load_config(path)
    return ModelShape(cfg.n_layers, mdl.shard_bytes(cfg, [0], False, False),
                      mdl.shard_bytes(cfg, [], True, False),
                      mdl.shard_bytes(cfg, [], True, True) - mdl.shard_bytes(cfg, [], True, False),
                      cfg.dim * 4)


@dataclass
class MethodPlan:
    """What one method decided: pipeline stages or tensor-parallel ranks, and its prediction."""

    method: str
    mode: str  # "pipeline" | "tensor"
    master: str
    stages: list[tuple[str, int, int]] = field(default_factory=list)
    ranks: list[str] = field(default_factory=list)
    predicted_ms_per_token: float | None = None
    feasible: bool = True
    reason: str = ""
    assignment: dict[str, Any] | None = None
    # the offloading nodes' streaming scheduler, sent with the load: {"window", "prefetch"}
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def members(self) -> list[str]:
        return self.ranks if self.mode == "tensor" else list(dict.fromkeys(
            s[0] for s in self.stages))


def plan_for(method: str, devices: list[Device], model: ModelShape,
             links: dict[str, dict[str, Link]], master: str,
             max_rounds: int | None = None, window: int = 1) -> MethodPlan:
    """The plan `method` gives on these measurements; infeasible plans say why.

    Tensor parallel: a rank whose share of every layer exceeds its memory is feasible when it
    offloads (``disk_ms_per_layer`` set) and one pinned slice + ``window`` streaming buffers
    fit next to what it must keep resident (the master's embedding and head) - the node's own
    rule (payloads/llm/node.py `_fit`); the prediction then has a disk term."""
    if method == "tensor":
        names = [master] + [d.name for d in devices if d.name != master]
        by = {d.name: d for d in devices}
        share = 1.0 / len(names)
        fixed = {n: model.embed_bytes + model.head_bytes if n == master else 0 for n in names}
        need = {n: model.n_layers * model.layer_bytes * share + fixed[n] for n in names}
        least = {n: fixed[n] + (1 + window) * model.layer_bytes * share for n in names}
        over = [f"{n} needs {need[n] / 2**20:.0f} MiB, has {by[n].mem_bytes / 2**20:.0f} MiB"
                + (f" (streaming: at least {least[n] / 2**20:.0f} MiB)"
                   if by[n].disk_ms_per_layer is not None else " (OOM: it does not offload)")
                for n in names if need[n] > by[n].mem_bytes
                and (by[n].disk_ms_per_layer is None or least[n] > by[n].mem_bytes)]
        try:
            pred: float | None = tensor_parallel_breakdown(
                [by[n] for n in names], {n: share for n in names}, model, links, master,
                window=window)["total_ms"]
        except (KeyError, ValueError) as exc:
            pred, over = None, [*over, str(exc)]
        return MethodPlan(method, "tensor", master, ranks=names, predicted_ms_per_token=pred,
                          feasible=not over, reason="; ".join(over))
    solver = {"single": single_device, "even": even_split, "proportional": proportional_split}
    try:
        if method == "halda":
            a: Assignment = halda(devices, model, links, master=master, max_rounds=max_rounds)
        else:
            a = solver[method](devices, model, links, master=master)
    except AssignmentError as exc:
        return MethodPlan(method, "pipeline", master, feasible=False, reason=str(exc))
    pred = a.predicted_ms_per_token
    return MethodPlan(method, "pipeline", a.master, stages=list(a.stages()),
                      predicted_ms_per_token=pred if math.isfinite(pred) else None,
                      feasible=a.feasible, reason=a.reason, assignment=a.to_dict())


async def serve(cluster: ShardCluster, plan: MethodPlan, prompts: list[list[int]],
                max_new_tokens: int, eos_id: int | None, reference: list[list[int]] | None,
                model: Any = None, tag: str = "") -> dict[str, Any]:
    """Load `plan`, generate every prompt, release; one row of measurements."""
    row: dict[str, Any] = {"method": plan.method, "mode": plan.mode, "master": plan.master,
                           "members": plan.members, "stages": plan.stages,
                           "predicted_ms_per_token": plan.predicted_ms_per_token,
                           "feasible": plan.feasible, "reason": plan.reason}
    if not plan.feasible:
        return row
    name = f"{plan.method}{tag}"
    try:
        if plan.mode == "tensor":
            row["load"] = await cluster.load_tensor(name, plan.ranks, model, plan.options)
        else:
            row["load"] = await cluster.load_pipeline(name, plan.stages, model, plan.options)
    except ClusterError as exc:
        row |= {"ok": False, "error": f"load failed: {exc}"}
        await cluster.release(name)
        return row
    gens = []
    for i, ids in enumerate(prompts):
        g = await cluster.generate(name, plan.master, plan.members, ids, max_new_tokens, eos_id)
        d = asdict(g)
        d["t_done"] = time.time()  # wall clock: when it finished, for the live view
        if reference is not None:
            d["equal_to_reference"] = g.ok and g.tokens == reference[i]
        gens.append(d)
    await cluster.release(name)
    ok = [g for g in gens if g["ok"]]
    row["generations"] = gens
    row["ok"] = len(ok) == len(gens)
    row["error"] = next((g["error"] for g in gens if not g["ok"]), None)
    mpt = [g["ms_per_token"] for g in ok if g["ms_per_token"] is not None]
    row["ms_per_token"] = statistics.median(mpt) if mpt else None
    row["ttft_ms"] = (statistics.median(1e3 * g["ttft_s"] for g in ok if g["ttft_s"])
                      if ok else None)
    steps = sum(len(g["tokens"]) + 1 for g in ok)  # +1: the step that produced EOS (or the cap)
    row["bytes_per_token"] = (sum(g["bytes_sent"] for g in ok) / steps) if steps else None
    if reference is not None:
        row["tokens_equal"] = all(g.get("equal_to_reference") for g in gens)
    # memory per device over the prompts: weights alive at most, and the agent's RSS
    per: dict[str, dict[str, int]] = {}
    for g in ok:
        for n, st in (g.get("node_stats") or {}).items():
            cur = per.setdefault(n, {})
            for k in ("peak_weight_bytes", "rss_bytes"):
                if isinstance(st.get(k), int):
                    cur[k] = max(cur.get(k, 0), st[k])
    if per:
        row["memory"] = per
        row["peak_weight_bytes_max"] = max(v.get("peak_weight_bytes", 0) for v in per.values())
    return row
