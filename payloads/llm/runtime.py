"""The transformer math: a window of Llama layers, or a tensor-parallel slice of every layer.

Pure numpy, float32 throughout.  A pipeline stage is a `LayerWindow` over layers [start, end)
(the first also embeds tokens, the last also holds the final norm and head); the network layer
moves the hidden state between stages as ``hidden.tobytes()`` - a C-contiguous float32 array of
shape [T, dim] - and rebuilds it with `hidden_from_bytes`.  A `TensorShard` holds one rank's
slice of every layer (TPI-LLM style); the coordinator sums the ranks' partial outputs.

Threads: one BLAS thread is what we measure and recommend (a node shares its cores with the
network emulation and other payloads, and a single-token matrix-vector product gains little
from a second thread).  The library does not touch the environment: the caller sets
``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1``) before numpy is imported, or uses
``threadpoolctl.threadpool_limits(1)`` where it is installed.

Rope is applied to adjacent pairs (x0, x1), (x2, x3), ... of each head, which is right for the
GGUF row order of Q and K; Hugging Face weights are permuted into that order at load
(`payloads.llm.model.permute_qk`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from payloads.llm.model import (
    LayerWeights,
    ModelConfig,
    ModelWeights,
    TPSlice,
    default_model_path,
    load_config,
    load_weights,
)

F32 = np.float32


def hidden_from_bytes(buf: bytes | bytearray | memoryview, dim: int) -> np.ndarray:
    """The [T, dim] float32 hidden state sent as ``hidden.tobytes()`` by the previous stage."""
    return np.frombuffer(buf, dtype=F32).reshape(-1, dim)


# --------------------------------------------------------------------------------------------
# building blocks


class KVCache:
    """Keys and values of one session for some layers, preallocated and growable.

    ``k[layer]`` / ``v[layer]`` are (n_kv_heads, capacity, head_dim); ``lengths[layer]`` is how
    many positions are filled.  Writing at position p < length rewinds the session to p (the
    later positions are overwritten), so a caller can retry a step.
    """

    def __init__(self, layers: Iterable[int], n_kv_heads: int, head_dim: int,
                 capacity: int = 256) -> None:
        self.n_kv_heads, self.head_dim = n_kv_heads, head_dim
        self.capacity = max(1, int(capacity))
        self.k: dict[int, np.ndarray] = {}
        self.v: dict[int, np.ndarray] = {}
        self.lengths: dict[int, int] = {}
        for i in layers:
            self.k[i] = np.zeros((n_kv_heads, self.capacity, head_dim), F32)
            self.v[i] = np.zeros((n_kv_heads, self.capacity, head_dim), F32)
            self.lengths[i] = 0

    def reset(self) -> None:
        """Forget the session (keeps the memory)."""
        for i in self.lengths:
            self.lengths[i] = 0

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self.capacity)
        for d in (self.k, self.v):
            for i, a in d.items():
                b = np.zeros((a.shape[0], cap, a.shape[2]), F32)
                b[:, :self.capacity] = a
                d[i] = b
        self.capacity = cap

    def update(self, layer: int, pos: int, k: np.ndarray,
               v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store k, v (n_kv, T, hd) at positions pos..pos+T-1 and return all keys and values
        so far (views, (n_kv, pos+T, hd))."""
        length = self.lengths[layer]
        if pos > length:
            raise ValueError(f"layer {layer}: position {pos} skips past the {length} cached")
        end = pos + k.shape[1]
        if end > self.capacity:
            self._grow(end)
        self.k[layer][:, pos:end] = k
        self.v[layer][:, pos:end] = v
        self.lengths[layer] = end
        return self.k[layer][:, :end], self.v[layer][:, :end]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k.values()) + sum(a.nbytes for a in self.v.values())


class RopeTable:
    """cos/sin of every position for interleaved-pair rope, computed in float64 once and
    extended (doubling) on demand."""

    def __init__(self, head_dim: int, base: float, n: int = 512) -> None:
        self.inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        self.cos = self.sin = np.empty((0, head_dim // 2), F32)
        self._extend(n)

    def _extend(self, n: int) -> None:
        ang = np.outer(np.arange(n, dtype=np.float64), self.inv_freq)
        self.cos, self.sin = np.cos(ang).astype(F32), np.sin(ang).astype(F32)

    def get(self, pos: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(cos, sin), each (t, 1, head_dim/2), for positions pos..pos+t-1."""
        if pos + t > len(self.cos):
            self._extend(max(pos + t, 2 * len(self.cos)))
        return self.cos[pos:pos + t, None, :], self.sin[pos:pos + t, None, :]


def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs of x (T, H, hd)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty(x.shape, F32)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def _rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm; the mean of squares is accumulated in float64 as llama.cpp does."""
    ms = np.mean(np.square(x), axis=-1, keepdims=True, dtype=np.float64)
    return x * (1.0 / np.sqrt(ms + eps)).astype(F32) * w


def _silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) written with tanh, which cannot overflow (exp(-x) can)."""
    return x * (F32(0.5) + F32(0.5) * np.tanh(F32(0.5) * x))


def _softmax_inplace(s: np.ndarray) -> np.ndarray:
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, pos: int) -> np.ndarray:
    """Causal attention of g query heads per kv head.

    q (n, g, T, hd) already scaled and roped; k, v (n, L, hd) with L = pos + T.
    Returns (n, g, T, hd).
    """
    n, g, t, hd = q.shape
    s = np.matmul(q.reshape(n, g * t, hd), k.transpose(0, 2, 1))  # (n, gT, L)
    if t > 1:
        s4 = s.reshape(n, g, t, -1)
        future = np.arange(s.shape[-1])[None, :] > (pos + np.arange(t))[:, None]  # (T, L)
        s4[:, :, future] = -np.inf
    _softmax_inplace(s)
    return np.matmul(s, v).reshape(n, g, t, hd)


class _Block:
    """The per-layer math shared by `LayerWindow` (whole layers) and `TensorShard` (slices):
    with the whole-layer `TPSlice` the partial outputs are the full ones."""

    def __init__(self, config: ModelConfig, part: TPSlice) -> None:
        c = config
        self.config, self.part = c, part
        self.hd = c.head_dim
        self.nq = part.q_heads[1] - part.q_heads[0]
        self.nkv = part.kv_heads[1] - part.kv_heads[0]
        self.f = part.ffn[1] - part.ffn[0]
        self.scale = F32(1.0 / np.sqrt(c.head_dim))
        self.rope = RopeTable(c.head_dim, c.rope_base)
        # (local kv head, first local q head, end) for each kv head this slice reads
        g, h0, k0 = c.group, part.q_heads[0], part.kv_heads[0]
        self.segments = [(j - k0, max(part.q_heads[0], j * g) - h0,
                          min(part.q_heads[1], (j + 1) * g) - h0)
                         for j in range(part.kv_heads[0], part.kv_heads[1])]
        self.uniform = len({b - a for _, a, b in self.segments}) == 1

    def attn(self, lw: LayerWeights, x: np.ndarray, pos: int, cache: KVCache) -> np.ndarray:
        """This slice's share of the attention block's output (before the residual add)."""
        c, hd, t = self.config, self.hd, x.shape[0]
        h = _rmsnorm(x, lw.attn_norm, c.rms_eps)
        qkv = h @ lw.wqkv
        qd, kd = self.nq * hd, self.nkv * hd
        cos, sin = self.rope.get(pos, t)
        q = _rope(qkv[:, :qd].reshape(t, self.nq, hd), cos, sin)
        k = _rope(qkv[:, qd:qd + kd].reshape(t, self.nkv, hd), cos, sin)
        v = qkv[:, qd + kd:].reshape(t, self.nkv, hd)
        q *= self.scale
        keys, values = cache.update(lw.index, pos, k.transpose(1, 0, 2), v.transpose(1, 0, 2))
        if self.uniform:  # every kv head serves the same number of local q heads: one batch
            g = self.nq // self.nkv
            qg = q.reshape(t, self.nkv, g, hd).transpose(1, 2, 0, 3)
            o = _attend(qg, keys, values, pos)  # (nkv, g, T, hd)
            o = o.transpose(2, 0, 1, 3).reshape(t, qd)
        else:
            o = np.empty((t, self.nq, hd), F32)
            for j, a, b in self.segments:
                qg = q[:, a:b].transpose(1, 0, 2)[None]
                o[:, a:b] = _attend(qg, keys[j:j + 1], values[j:j + 1], pos)[0].transpose(1, 0, 2)
            o = o.reshape(t, qd)
        return o @ lw.wo

    def mlp(self, lw: LayerWeights, x: np.ndarray) -> np.ndarray:
        """This slice's share of the MLP block's output (before the residual add)."""
        h = _rmsnorm(x, lw.ffn_norm, self.config.rms_eps)
        gu = h @ lw.w_gate_up
        return (_silu(gu[:, :self.f]) * gu[:, self.f:]) @ lw.w_down

    def new_cache(self, layers: Iterable[int], capacity: int) -> KVCache:
        return KVCache(layers, self.nkv, self.hd, capacity)


def _as_hidden(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"hidden state must be [T, {dim}], got {x.shape}")
    return x


# --------------------------------------------------------------------------------------------
# pipeline stage


class LayerWindow:
    """A pipeline stage: layers [start, end), plus the embedding on the first stage and the
    final norm and head on the last.  All inputs and outputs are float32 [T, dim] arrays.
    """

    def __init__(self, weights: ModelWeights, config: ModelConfig | None = None) -> None:
        self.weights = weights
        self.config = config or weights.config
        if weights.part != TPSlice.full(self.config):
            raise ValueError("LayerWindow needs whole layers; use TensorShard for a TP slice")
        self.layers = sorted(weights.layers)
        self._block = _Block(self.config, weights.part)
        # a streamed window (payloads.llm.stream) is told when its pass is over, so that it
        # can load its next streamed layer meanwhile; a plain dict has no such hook
        self._pass_done: Callable[[], None] | None = getattr(weights.layers, "pass_done", None)

    @property
    def start(self) -> int:
        return self.layers[0] if self.layers else 0

    @property
    def end(self) -> int:
        return self.layers[-1] + 1 if self.layers else 0

    @property
    def has_embed(self) -> bool:
        return self.weights.embed_t is not None

    @property
    def has_head(self) -> bool:
        return self.weights.head_t is not None

    def new_cache(self, capacity: int = 256) -> KVCache:
        """A KV cache for one session over this window's layers."""
        return self._block.new_cache(self.layers, capacity)

    def embed(self, token_ids: Sequence[int]) -> np.ndarray:
        """Hidden states [T, dim] of the tokens (first stage only)."""
        if self.weights.embed_t is None:
            raise RuntimeError("this window does not hold the token embedding")
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        return np.ascontiguousarray(self.weights.embed_t[:, ids].T)

    def forward_layer(self, layer: int, hidden: np.ndarray, pos: int,
                      cache: KVCache) -> np.ndarray:
        """One layer for T new tokens at positions pos..pos+T-1."""
        lw = self.weights.layers[layer]
        h = hidden + self._block.attn(lw, hidden, pos, cache)
        return h + self._block.mlp(lw, h)

    def forward(self, hidden: np.ndarray, pos: int, cache: KVCache) -> np.ndarray:
        """This window's layers for T new tokens at positions pos..pos+T-1: prefill (T > 1,
        one batched causal pass) or decode (T = 1).  Returns a new [T, dim] array."""
        h = _as_hidden(hidden, self.config.dim)
        for i in self.layers:
            h = self.forward_layer(i, h, pos, cache)
        if self._pass_done is not None:
            self._pass_done()
        return np.ascontiguousarray(h)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """[T, vocab] logits: final RMSNorm and head (last stage only).  Pass only the rows
        you need (``hidden[-1:]`` when generating)."""
        w = self.weights
        if w.head_t is None or w.output_norm is None:
            raise RuntimeError("this window does not hold the output head")
        h = _rmsnorm(_as_hidden(hidden, self.config.dim), w.output_norm, self.config.rms_eps)
        return h @ w.head_t


# --------------------------------------------------------------------------------------------
# tensor parallelism


class TensorShard:
    """One rank's slice of every layer it holds (TPI-LLM style).

    Query heads are split contiguously across ranks, the rank computes K/V only for the kv
    heads its query heads read, and holds the matching rows of the output projection; the
    MLP's hidden units are split (gate/up columns, down rows).  The coordinator computes
    ``h += sum(attn_partial)`` then ``h += sum(mlp_partial)`` for each layer
    (`tp_layer_forward`), and embeds and applies the head itself (`coordinator`).
    """

    def __init__(self, weights: ModelWeights, config: ModelConfig | None = None,
                 rank: int | None = None, world: int | None = None) -> None:
        config = config or weights.config
        if rank is not None and world is not None:
            part = TPSlice.of(config, rank, world)
            if weights.part != part:
                if weights.part != TPSlice.full(config):
                    raise ValueError(f"weights hold slice {weights.part}, not rank {rank} of"
                                     f" {world}")
                weights = weights.tp_slice(rank, world)
        self.weights, self.config = weights, config
        self.rank, self.world = weights.part.rank, weights.part.world
        self.layers = sorted(weights.layers)
        self._block = _Block(config, weights.part)

    def new_cache(self, capacity: int = 256) -> KVCache:
        """This rank's KV cache (only its kv heads) for one session."""
        return self._block.new_cache(self.layers, capacity)

    def attn_partial(self, layer: int, hidden: np.ndarray, pos: int,
                     cache: KVCache) -> np.ndarray:
        """[T, dim]: this rank's contribution to the attention output projection (the
        layer's attention RMSNorm is applied here, on the full hidden state)."""
        h = _as_hidden(hidden, self.config.dim)
        return self._block.attn(self.weights.layers[layer], h, pos, cache)

    def mlp_partial(self, layer: int, hidden: np.ndarray) -> np.ndarray:
        """[T, dim]: this rank's contribution to the MLP output (ffn RMSNorm applied here)."""
        h = _as_hidden(hidden, self.config.dim)
        return self._block.mlp(self.weights.layers[layer], h)


def _reduce(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Sum in rank order (a fixed order keeps results reproducible)."""
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


def tp_layer_forward(shards: Sequence[TensorShard], layer: int, hidden: np.ndarray, pos: int,
                     caches: Sequence[KVCache]) -> np.ndarray:
    """One layer across all ranks, in process: what the coordinator does with the partials
    it receives over the network."""
    h = hidden + _reduce([s.attn_partial(layer, hidden, pos, c)
                          for s, c in zip(shards, caches, strict=True)])
    return h + _reduce([s.mlp_partial(layer, h) for s in shards])


def coordinator(path: str | Path | None = None) -> LayerWindow:
    """The tensor-parallel coordinator's (rank 0's) extra part: embedding, final norm and
    head, no layers."""
    return LayerWindow(load_weights(path, range(0), embed=True, head=True))


# --------------------------------------------------------------------------------------------
# generation


def _argmax(logits: np.ndarray) -> int:
    return int(np.argmax(logits[-1]))


def _greedy(step: Callable[[list[int], int], np.ndarray], prompt_ids: Sequence[int],
            max_new: int, eos_id: int | None) -> list[int]:
    """The greedy loop shared by every in-process layout: `step(ids, pos)` runs the new
    tokens `ids` at positions pos.. through the model and returns the last row's logits."""
    out: list[int] = []
    ids, pos = list(prompt_ids), 0
    while len(out) < max_new:
        tok = _argmax(step(ids, pos))
        if tok == eos_id:
            break
        out.append(tok)
        pos += len(ids)
        ids = [tok]
    return out


def greedy_pipeline(stages: Sequence[LayerWindow], prompt_ids: Sequence[int], max_new: int,
                    eos_id: int | None = None) -> list[int]:
    """Greedy decoding through the stages in sequence, in process: the first embeds, each
    runs its layers, the last produces logits.  Returns the new tokens (an EOS, if ``eos_id``
    is given and generated, ends the output and is not included)."""
    if not stages or not stages[0].has_embed or not stages[-1].has_head:
        raise ValueError("the first stage must hold the embedding and the last the head")
    if not prompt_ids or max_new <= 0:
        return []
    caches = [s.new_cache(len(prompt_ids) + max_new) for s in stages]

    def step(ids: list[int], pos: int) -> np.ndarray:
        h = stages[0].embed(ids)
        for stage, cache in zip(stages, caches, strict=True):
            h = stage.forward(h, pos, cache)
        return stages[-1].logits(h[-1:])

    return _greedy(step, prompt_ids, max_new, eos_id)


def greedy_tensor_parallel(coord: LayerWindow, shards: Sequence[TensorShard],
                           prompt_ids: Sequence[int], max_new: int,
                           eos_id: int | None = None) -> list[int]:
    """Greedy decoding with every layer split across ``shards`` (in process)."""
    if not prompt_ids or max_new <= 0:
        return []
    layers = shards[0].layers
    if any(s.layers != layers for s in shards):
        raise ValueError("all ranks must hold the same layers")
    caches = [s.new_cache(len(prompt_ids) + max_new) for s in shards]

    def step(ids: list[int], pos: int) -> np.ndarray:
        h = coord.embed(ids)
        for i in layers:
            h = tp_layer_forward(shards, i, h, pos, caches)
        return coord.logits(h[-1:])

    return _greedy(step, prompt_ids, max_new, eos_id)


@lru_cache(maxsize=1)
def _full_window(path: str) -> LayerWindow:
    n = load_config(path).n_layers
    return LayerWindow(load_weights(path, range(n), embed=True, head=True))


def local_window(model_path: str | Path | None = None) -> LayerWindow:
    """The whole model as one window (cached: the last model loaded stays in memory)."""
    p = Path(model_path) if model_path is not None else default_model_path()
    return _full_window(str(p.resolve()))


def generate_local(model_path: str | Path | None, prompt_ids: Sequence[int],
                   max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
    """Single-device greedy reference: the new token ids (EOS not included)."""
    win = local_window(model_path)
    eos = win.config.eos_id if stop_at_eos else None
    return greedy_pipeline([win], prompt_ids, max_new_tokens, eos_id=eos)


def chat_local(question: str, model_path: str | Path | None = None,
               max_new_tokens: int = 64) -> str:
    """Ask the model one question (its chat template, greedy decoding) and return the answer."""
    from payloads.llm.tokenizer import load_tokenizer

    tok = load_tokenizer(model_path)
    ids = tok.encode_chat([{"role": "user", "content": question}])
    return tok.decode(generate_local(model_path, ids, max_new_tokens), skip_special=True)


# --------------------------------------------------------------------------------------------
# profiling (for the assignment solver)


def profile_layers(window: LayerWindow, n_tokens: int = 16, prompt_len: int = 8) -> dict:
    """Per-layer decode time of this window on this machine.

    Prefills ``prompt_len`` tokens, then decodes ``n_tokens`` one at a time, timing each
    layer, the embedding and the head separately.  Reports medians in milliseconds:
    ``{"layers": {i: ms}, "layer_ms": mean over layers, "embed_ms", "head_ms",
    "token_ms": sum of the parts, "n_tokens"}``.
    """
    c = window.config
    rng = np.random.default_rng(0)
    cache = window.new_cache(prompt_len + n_tokens)
    ids = rng.integers(0, c.vocab_size, prompt_len + n_tokens)
    if window.has_embed:
        h = window.embed(ids[:prompt_len])
    else:
        h = rng.standard_normal((prompt_len, c.dim)).astype(F32)
    h = window.forward(h, 0, cache)
    per_layer: dict[int, list[float]] = {i: [] for i in window.layers}
    embed_t: list[float] = []
    head_t: list[float] = []
    clock = time.perf_counter
    for step in range(n_tokens):
        pos = prompt_len + step
        t0 = clock()
        x = window.embed([int(ids[pos])]) if window.has_embed else np.ascontiguousarray(h[-1:])
        embed_t.append(clock() - t0)
        for i in window.layers:
            t0 = clock()
            x = window.forward_layer(i, x, pos, cache)
            per_layer[i].append(clock() - t0)
        if window.has_head:
            t0 = clock()
            window.logits(x)
            head_t.append(clock() - t0)
        h = x

    def med(v: list[float]) -> float:
        return float(np.median(v)) * 1e3 if v else 0.0

    layers = {i: med(v) for i, v in per_layer.items()}
    out = {"layers": layers,
           "layer_ms": float(np.mean(list(layers.values()))) if layers else 0.0,
           "embed_ms": med(embed_t) if window.has_embed else 0.0,
           "head_ms": med(head_t) if window.has_head else 0.0,
           "n_tokens": n_tokens}
    out["token_ms"] = sum(layers.values()) + out["embed_ms"] + out["head_ms"]
    return out
