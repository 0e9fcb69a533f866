"""The numpy Llama runtime: tokenizer, greedy generation that is token-for-token the same on one
window, across pipeline windows and across tensor-parallel ranks, the Paris sanity check, a
shard holding only its window, and the Hugging Face safetensors path checked against an
independent reference (half-split rope on unpermuted weights) on a tiny random model."""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from payloads.llm import (
    GGUFFile,
    KVCache,
    LayerWindow,
    ModelWeights,
    StreamingLayers,
    TensorShard,
    Tokenizer,
    TPSlice,
    greedy_pipeline,
    greedy_tensor_parallel,
    hidden_from_bytes,
    layer_bytes,
    layer_bytes_of,
    load_config,
    load_tokenizer,
    load_weights,
    local_window,
    permute_qk,
    shard_bytes,
    tp_layer_forward,
    unpermute_qk,
)
from payloads.llm.runtime import RopeTable, _rope

pytestmark = pytest.mark.unit

N_NEW = 24


@pytest.fixture(scope="module")
def model_path() -> Path:
    from payloads.llm import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tok(model_path: Path) -> Tokenizer:
    return load_tokenizer(model_path)


@pytest.fixture(scope="module")
def full(model_path: Path) -> LayerWindow:
    return local_window(model_path)


@pytest.fixture(scope="module")
def prompts(tok: Tokenizer) -> list[list[int]]:
    return [tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}]),
            tok.encode("The history of satellite communication began")]


@pytest.fixture(scope="module")
def reference(full: LayerWindow, prompts: list[list[int]]) -> list[list[int]]:
    return [greedy_pipeline([full], p, N_NEW) for p in prompts]


# ---- tokenizer


@pytest.mark.parametrize("text", [
    "Hello world! It's 2024, and the price is $12.50.\n\n  indented\tline ",
    "héllo wörld — 日本語のテキスト 🚀 ½ Ⅻ ١٢٣ naïve café",
    "a   b\n\nc  \r\n",
])
def test_tokenizer_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert ids and all(0 <= i < len(tok.tokens) for i in ids)
    assert tok.decode(ids) == text


def test_tokenizer_digits_are_split_and_words_merge(tok: Tokenizer) -> None:
    # "smollm" pre-tokenizer: every digit is a piece of its own
    assert [tok.decode([i]) for i in tok.encode("2024")] == ["2", "0", "2", "4"]
    assert len(tok.encode(" the")) == 1 and len(tok.encode("hello")) == 1


def test_chat_template_and_special_tokens(tok: Tokenizer) -> None:
    text = tok.apply_chat_template([{"role": "user", "content": "Hi there"}])
    assert text.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\n")
    ids = tok.encode(text)
    start, end = tok.vocab["<|im_start|>"], tok.vocab["<|im_end|>"]
    assert ids.count(start) == 3 and ids.count(end) == 2
    last = len(ids) - 1 - ids[::-1].index(start)
    assert ids[last + 1:] == tok.encode("assistant\n")
    # not parsed as special: the same text is several ordinary tokens
    plain = tok.encode("<|im_start|>", parse_special=False)
    assert start not in plain and len(plain) > 1
    assert tok.decode(ids, skip_special=True).startswith("system\n")


def test_tokenizer_from_hf_json_matches_gguf(tok: Tokenizer, tmp_path: Path) -> None:
    special = sorted(tok.special_ids)
    tj = {
        "model": {"type": "BPE",
                  "vocab": {t: i for i, t in enumerate(tok.tokens) if i not in tok.special_ids},
                  "merges": [f"{a} {b}" for (a, b), _ in sorted(tok.ranks.items(),
                                                                key=lambda kv: kv[1])]},
        "added_tokens": [{"id": i, "content": tok.tokens[i], "special": True} for i in special],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": tok.chat_template, "bos_token": "<|im_start|>",
         "eos_token": "<|im_end|>"}))
    hf = Tokenizer.from_hf(tmp_path)
    assert hf.pre == "smollm" and (hf.bos_id, hf.eos_id) == (tok.bos_id, tok.eos_id)
    msgs = [{"role": "user", "content": "Déjà vu in 3 words, 42 times!"}]
    for text in ("The 12 satellites' orbits   decay.\n", hf.apply_chat_template(msgs)):
        assert hf.encode(text) == tok.encode(text)


# ---- generation equality


def test_pipeline_windows_generate_the_same_tokens(model_path: Path, full: LayerWindow,
                                                   prompts: list[list[int]],
                                                   reference: list[list[int]]) -> None:
    # three stages loaded from the file, each with only its window
    stages = [LayerWindow(load_weights(model_path, range(a, b), embed=a == 0, head=b == 30))
              for a, b in ((0, 7), (7, 19), (19, 30))]
    assert [(s.start, s.end) for s in stages] == [(0, 7), (7, 19), (19, 30)]
    # five stages carved out of the loaded model (same arrays, no copy)
    cuts = (0, 3, 9, 16, 24, 30)
    five = [LayerWindow(full.weights.subset(range(a, b), embed=a == 0, head=b == 30))
            for a, b in itertools.pairwise(cuts)]
    for ids, ref in zip(prompts, reference, strict=True):
        assert len(ref) == N_NEW
        assert greedy_pipeline(stages, ids, N_NEW) == ref
        assert greedy_pipeline(five, ids, N_NEW) == ref


def test_tensor_parallel_generates_the_same_tokens(model_path: Path, full: LayerWindow,
                                                   prompts: list[list[int]],
                                                   reference: list[list[int]]) -> None:
    coord = LayerWindow(full.weights.subset(range(0), embed=True, head=True))
    layers = range(full.config.n_layers)
    # a slice loaded from the file is the slice of the loaded model
    loaded = load_weights(model_path, range(2), False, False, tp=(1, 2))
    carved = full.weights.subset(range(2), False, False).tp_slice(1, 2)
    assert loaded.keys() == carved.keys() and loaded.part == carved.part
    for (_, a), (_, b) in zip(loaded.arrays(), carved.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    two, three = ([TensorShard(full.weights.subset(layers, False, False), rank=r, world=world)
                   for r in range(world)] for world in (2, 3))
    for ids, ref in zip(prompts, reference, strict=True):
        assert greedy_tensor_parallel(coord, two, ids, N_NEW) == ref
        assert greedy_tensor_parallel(coord, three, ids, N_NEW) == ref


def test_partials_sum_to_the_full_layer(full: LayerWindow, prompts: list[list[int]]) -> None:
    x = full.embed(prompts[0])
    want = full.forward_layer(5, x, 0, full.new_cache(64))
    for world in (2, 3, 4, 9):
        shards = [TensorShard(full.weights.subset([5], False, False), rank=r, world=world)
                  for r in range(world)]
        assert sum(s.weights.part.q_heads[1] - s.weights.part.q_heads[0] for s in shards) == 9
        got = tp_layer_forward(shards, 5, x, 0, [s.new_cache(64) for s in shards])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_prefill_then_decode_equals_one_prefill(full: LayerWindow,
                                                prompts: list[list[int]]) -> None:
    ids = prompts[1]
    whole = full.forward(full.embed(ids), 0, full.new_cache(4))  # grows the cache
    cache = KVCache(full.layers, full.config.n_kv_heads, full.config.head_dim, capacity=2)
    head = full.forward(full.embed(ids[:-3]), 0, cache)
    tail = [full.forward(full.embed([t]), len(ids) - 3 + k, cache) for k, t in
            enumerate(ids[-3:])]
    got = np.concatenate([head, *tail])
    np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-3)
    assert full.forward(whole[-1:], len(ids), cache).tobytes() != b""


def test_stage_handoff_through_bytes(full: LayerWindow, prompts: list[list[int]]) -> None:
    """What the network layer does between two stages: tobytes() and back (read-only array)."""
    a = LayerWindow(full.weights.subset(range(0, 2), embed=True, head=False))
    b = LayerWindow(full.weights.subset(range(2, 4), embed=False, head=False))
    ref = LayerWindow(full.weights.subset(range(0, 4), embed=True, head=False))
    ids = prompts[0]
    h = a.forward(a.embed(ids), 0, a.new_cache())
    assert h.dtype == np.float32 and h.flags.c_contiguous and h.shape == (len(ids), 576)
    got = b.forward(hidden_from_bytes(h.tobytes(), 576), 0, b.new_cache())
    np.testing.assert_array_equal(got, ref.forward(ref.embed(ids), 0, ref.new_cache()))


def test_paris(tok: Tokenizer, full: LayerWindow) -> None:
    ids = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    out = greedy_pipeline([full], ids, 32, eos_id=full.config.eos_id)
    assert "Paris" in tok.decode(out)


# ---- shard memory


def test_shard_holds_only_its_window(model_path: Path) -> None:
    cfg = load_config(model_path)
    w = load_weights(model_path, range(0, 5), embed=True, head=False)
    assert set(w.layers) == set(range(5))
    keys = set(w.keys())
    assert {k.split(".")[1] for k in keys if k.startswith("blk.")} == {str(i) for i in range(5)}
    assert "token_embd" in keys and "output" not in keys and w.head_t is None
    est = layer_bytes(model_path)
    assert w.nbytes == shard_bytes(cfg, range(0, 5), True, False) == 5 * est.layer + est.embed
    assert all(a.dtype == np.float32 for _, a in w.arrays())
    # a tensor-parallel slice holds a third of the layer, plus its kv heads
    tp = load_weights(model_path, range(10, 12), embed=False, head=False, tp=(1, 3))
    assert tp.nbytes == shard_bytes(cfg, range(10, 12), False, False, tp=(1, 3))
    assert tp.nbytes < 2 * est.layer / 2.5
    # the last stage with a tied head holds the table once
    assert shard_bytes(cfg, [], True, True) == est.embed + est.head_with_embed


# ---- sliding-window weights (TPI-LLM): more layers than fit, the rest re-read per token


def test_streamed_window_equals_the_resident_window(model_path: Path, full: LayerWindow,
                                                    prompts: list[list[int]]) -> None:
    """10 layers with 3 resident: the same greedy tokens, at most 3 + 1 layers alive, and the
    7 streamed layers read once per pass (prefill + every decode step)."""
    cfg, w, n_new = full.config, full.weights, 8
    ref = LayerWindow(w.subset(range(10), embed=True, head=True))
    want = greedy_pipeline([ref], prompts[0], n_new)
    store = StreamingLayers(model_path, cfg, range(10), resident=3)
    try:
        assert store.resident_bytes == 3 * store.layer_bytes  # only the pinned ones loaded
        win = LayerWindow(ModelWeights(cfg, store, w.part, w.embed_t, w.output_norm, w.head_t))
        assert (win.start, win.end) == (0, 10)
        assert greedy_pipeline([win], prompts[0], n_new) == want
        st = store.stats()
        assert st["loads"] == 7 * n_new and st["bytes"] == 7 * n_new * store.layer_bytes
        assert st["wasted"] == 0 and st["load_s"] > 0
        # the first streamed layer of every pass was prefetched (after the previous pass or
        # while the pinned layers ran); the others were read on demand
        assert st["loads"] - st["misses"] == n_new
        assert store.peak_bytes <= 4 * store.layer_bytes
        assert store.resident_bytes <= 4 * store.layer_bytes
    finally:
        store.close()


def test_streamed_windows_share_one_budget_and_tp_slices_stream(
        model_path: Path, full: LayerWindow, prompts: list[list[int]]) -> None:
    """Two windows of one node over one store (what ShardHost builds for two rounds of the
    ring), and a tensor-parallel rank streaming its slices: both give the resident tokens."""
    cfg, w, n_new = full.config, full.weights, 4
    order = [*range(0, 3), *range(6, 9)]
    store = StreamingLayers(model_path, cfg, order, resident=2)
    try:
        a, b = (LayerWindow(ModelWeights(cfg, store.view(r), w.part)) for r in
                (range(0, 3), range(6, 9)))
        first = LayerWindow(w.subset(range(0), embed=True, head=False))
        mid = LayerWindow(w.subset(range(3, 6), embed=False, head=False))
        last = LayerWindow(w.subset(range(9, 10), embed=False, head=True))
        stages = [first, a, mid, b, last]
        want = greedy_pipeline([LayerWindow(w.subset(range(10), True, True))], prompts[1], n_new)
        assert greedy_pipeline(stages, prompts[1], n_new) == want
        assert store.stats()["loads"] == 4 * n_new  # layers 2, 6, 7, 8 each pass
        assert store.peak_bytes <= 3 * store.layer_bytes
    finally:
        store.close()
    coord = LayerWindow(w.subset(range(0), embed=True, head=True))
    resident = [TensorShard(w.subset(range(5), False, False), rank=r, world=2) for r in (0, 1)]
    part = resident[0].weights.part
    tp = StreamingLayers(model_path, cfg, range(5), resident=2, part=part)
    try:
        streamed = TensorShard(ModelWeights(cfg, tp, part), rank=0, world=2)
        assert tp.layer_bytes == layer_bytes_of(cfg, part)
        assert (greedy_tensor_parallel(coord, [streamed, resident[1]], prompts[0], n_new)
                == greedy_tensor_parallel(coord, resident, prompts[0], n_new))
        assert tp.stats()["loads"] == 3 * n_new
        assert tp.peak_bytes <= 3 * tp.layer_bytes
    finally:
        tp.close()


def test_tp_slice_cache_reads_only_the_slice_and_costs_its_bytes(model_path: Path,
                                                                  tmp_path: Path) -> None:
    """A rank's slice files hold exactly its slice (1/N of a layer, not the whole layer it was
    cut from), read back bit-identical; through an emulated disk a streamed load lasts at
    least its bytes / bandwidth, so a rank of 3 pays about a third of a whole layer."""
    from payloads.llm import load_layer
    from payloads.llm.stream import SliceCache

    cfg = load_config(model_path)
    part = TPSlice.of(cfg, 1, 3)
    cache = SliceCache(model_path, cfg, part, tmp_path)
    cache.ensure([4])
    assert cache.file(4).stat().st_size == layer_bytes_of(cfg, part)
    assert layer_bytes_of(cfg, part) < layer_bytes_of(cfg) / 2.5
    got, want = cache.load(4), load_layer(model_path, cfg, 4, part)
    for (_, a), (_, b) in zip(got.arrays(), want.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    rate = 100.0  # MB/s
    costs = {}
    for name, sl in (("slice", part), ("whole", TPSlice.full(cfg))):
        c = SliceCache(model_path, cfg, sl, tmp_path / name)
        store = StreamingLayers(model_path, cfg, range(4), resident=1, part=sl, cache=c,
                                disk_mb_s=rate, prefetch=False)
        try:
            for i in range(1, 4):
                store[i]
            st = store.stats()
            assert st["bytes"] == 3 * layer_bytes_of(cfg, sl) and st["loads"] == 3
            assert st["load_s"] >= 3 * layer_bytes_of(cfg, sl) / (rate * 1e6)
            assert st["wait_s"] >= st["load_s"] * 0.99  # storage: the caller waited for it
            costs[name] = st["load_s"]
        finally:
            store.close()
    assert costs["slice"] < costs["whole"] / 2


def test_tp_window_of_two_prefetches_while_computing_and_keeps_the_tokens(
        model_path: Path, full: LayerWindow, prompts: list[list[int]]) -> None:
    """TPI-LLM's memory window 2 under tensor parallelism: each streamed slice is loaded in
    the background while the previous one computes (from the rank's slice files, through an
    emulated disk); the tokens are the resident ones, at most resident + 2 slices alive."""
    from payloads.llm.stream import SliceCache

    cfg, w, n_new = full.config, full.weights, 3
    coord = LayerWindow(w.subset(range(0), embed=True, head=True))
    resident = [TensorShard(w.subset(range(6), False, False), rank=r, world=2) for r in (0, 1)]
    want = greedy_tensor_parallel(coord, resident, prompts[0], n_new)
    part = resident[0].weights.part
    cache = SliceCache(model_path, cfg, part)
    stores = {}
    try:
        for window, prefetch in ((2, True), (1, False)):
            st = stores[window] = StreamingLayers(model_path, cfg, range(6), resident=1,
                                                  part=part, window=window, prefetch=prefetch,
                                                  cache=cache, disk_mb_s=2000.0)
            streamed = TensorShard(ModelWeights(cfg, st, part), rank=0, world=2)
            assert greedy_tensor_parallel(coord, [streamed, resident[1]], prompts[0],
                                          n_new) == want
        two, one = stores[2].stats(), stores[1].stats()
        passes = n_new  # prefill + decode steps (the last token needs no pass)
        assert two["loads"] == one["loads"] == 5 * passes
        assert one["prefetched"] == 0 and one["misses"] == one["loads"]
        # window 2: only the first streamed slice of the first pass was read on demand
        assert two["misses"] <= 1 + passes and two["prefetched"] >= 4 * passes - 1
        assert two["wasted"] == 0
        assert stores[2].peak_bytes <= (1 + 2) * stores[2].layer_bytes
        assert stores[1].peak_bytes <= (1 + 1) * stores[1].layer_bytes
    finally:
        for st in stores.values():
            st.close()
        cache.close()


# ---- Hugging Face directory, rope permutation


def _rotate_half_rope(x: np.ndarray, pos: np.ndarray, base: float) -> np.ndarray:
    """HF's rope: pairs (i, i + d/2) of x (T, H, d)."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = np.outer(pos, inv)
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :]
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], axis=-1)
    return x * cos + rot * sin


def test_permutation_makes_interleaved_rope_equal_half_split_rope() -> None:
    rng = np.random.default_rng(1)
    n_heads, hd, dim, t = 3, 16, 24, 7
    wq = rng.standard_normal((n_heads * hd, dim))
    wk = rng.standard_normal((n_heads * hd, dim))
    x = rng.standard_normal((t, dim))
    pos = np.arange(5, 5 + t)
    q_hf = _rotate_half_rope((x @ wq.T).reshape(t, n_heads, hd), pos, 10000.0)
    k_hf = _rotate_half_rope((x @ wk.T).reshape(t, n_heads, hd), pos, 10000.0)
    table = RopeTable(hd, 10000.0)
    cos, sin = table.get(5, t)
    pq, pk = permute_qk(wq, n_heads), permute_qk(wk, n_heads)
    np.testing.assert_array_equal(unpermute_qk(pq, n_heads), wq)
    q_gg = _rope((x @ pq.T).reshape(t, n_heads, hd).astype(np.float32), cos, sin)
    k_gg = _rope((x @ pk.T).reshape(t, n_heads, hd).astype(np.float32), cos, sin)
    # same vectors up to the order of the dimensions in each head ...
    back = unpermute_qk(q_gg.reshape(t, -1).T, n_heads).T.reshape(t, n_heads, hd)
    np.testing.assert_allclose(back, q_hf, rtol=1e-4, atol=1e-4)
    # ... so the same attention scores
    np.testing.assert_allclose(np.einsum("thd,shd->hts", q_gg, k_gg),
                               np.einsum("thd,shd->hts", q_hf, k_hf), rtol=1e-4, atol=1e-3)


TINY = {"n_layers": 2, "dim": 64, "n_heads": 4, "n_kv_heads": 2, "ffn": 96, "vocab": 101}


def _tiny_hf_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    d, f, v = TINY["dim"], TINY["ffn"], TINY["vocab"]
    hd = d // TINY["n_heads"]
    kv = TINY["n_kv_heads"] * hd

    def m(*shape: int, scale: float = 0.15) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t = {"model.embed_tokens.weight": m(v, d, scale=1.0),
         "model.norm.weight": 1 + m(d, scale=0.1), "lm_head.weight": m(v, d)}
    for i in range(TINY["n_layers"]):
        p = f"model.layers.{i}."
        t |= {p + "input_layernorm.weight": 1 + m(d, scale=0.1),
              p + "post_attention_layernorm.weight": 1 + m(d, scale=0.1),
              p + "self_attn.q_proj.weight": m(d, d), p + "self_attn.k_proj.weight": m(kv, d),
              p + "self_attn.v_proj.weight": m(kv, d), p + "self_attn.o_proj.weight": m(d, d),
              p + "mlp.gate_proj.weight": m(f, d), p + "mlp.up_proj.weight": m(f, d),
              p + "mlp.down_proj.weight": m(d, f)}
    # round to bf16 so that the bf16 file and the f32 GGUF hold the same values
    return {k: ((a.view(np.uint32) + 0x8000) & 0xFFFF0000).view(np.float32) for k, a in
            t.items()}


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        raw = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _write_tiny_gguf(path: Path, t: dict[str, np.ndarray]) -> None:
    import gguf

    d, nh, nkv = TINY["dim"], TINY["n_heads"], TINY["n_kv_heads"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(TINY["n_layers"])
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_feed_forward_length(TINY["ffn"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(TINY["vocab"])
    w.add_rope_dimension_count(d // nh)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def perm(a: np.ndarray, n: int) -> np.ndarray:  # llama.cpp convert_hf_to_gguf.py
        return a.reshape(n, 2, a.shape[0] // n // 2, *a.shape[1:]).swapaxes(1, 2).reshape(
            a.shape)

    w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    w.add_tensor("output.weight", t["lm_head.weight"])
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(TINY["n_layers"]):
        for hf, gg in names.items():
            a = t[f"model.layers.{i}.{hf}.weight"]
            a = perm(a, nh) if gg == "attn_q" else perm(a, nkv) if gg == "attn_k" else a
            w.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _reference_logits(t: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """A plain float64 Llama forward on the HF tensors with HF's rotate_half rope."""
    d, nh, nkv = TINY["dim"], TINY["n_heads"], TINY["n_kv_heads"]
    hd, n = d // nh, len(ids)

    def norm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-5) * w

    x = t["model.embed_tokens.weight"][ids].astype(np.float64)
    pos = np.arange(n)
    for i in range(TINY["n_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, t[p + "input_layernorm.weight"])
        q = _rotate_half_rope((h @ t[p + "self_attn.q_proj.weight"].T).reshape(n, nh, hd), pos,
                              10000.0)
        k = _rotate_half_rope((h @ t[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, hd),
                              pos, 10000.0)
        v = (h @ t[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, hd)
        out = np.zeros((n, nh, hd))
        for head in range(nh):
            kvh = head // (nh // nkv)
            s = q[:, head] @ k[:, kvh].T / np.sqrt(hd)
            s[np.triu_indices(n, 1)] = -np.inf
            s = np.exp(s - s.max(-1, keepdims=True))
            out[:, head] = (s / s.sum(-1, keepdims=True)) @ v[:, kvh]
        x = x + out.reshape(n, d) @ t[p + "self_attn.o_proj.weight"].T
        h = norm(x, t[p + "post_attention_layernorm.weight"])
        g, u = h @ t[p + "mlp.gate_proj.weight"].T, h @ t[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ t[p + "mlp.down_proj.weight"].T
    return norm(x, t["model.norm.weight"]) @ t["lm_head.weight"].T


def test_hf_safetensors_and_gguf_match_a_half_split_reference(tmp_path: Path) -> None:
    t = _tiny_hf_tensors(np.random.default_rng(7))
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": TINY["n_layers"],
        "hidden_size": TINY["dim"], "num_attention_heads": TINY["n_heads"],
        "num_key_value_heads": TINY["n_kv_heads"], "intermediate_size": TINY["ffn"],
        "vocab_size": TINY["vocab"], "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2,
        "tie_word_embeddings": False}))
    _write_safetensors(hf_dir / "model.safetensors", t)
    gguf_path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(gguf_path, t)

    c_hf, c_gg = load_config(hf_dir), load_config(gguf_path)
    assert c_gg.rms_eps == pytest.approx(c_hf.rms_eps)  # GGUF stores it as float32
    assert dataclasses.replace(c_gg, rms_eps=c_hf.rms_eps) == c_hf
    import gguf

    ours, theirs = GGUFFile(gguf_path), gguf.GGUFReader(gguf_path)
    assert {x.name: x.data_offset for x in theirs.tensors} == {
        n: i.offset for n, i in ours.tensors.items()}

    ids = [3, 17, 99, 42, 5, 60, 7, 11, 0]
    want = _reference_logits(t, ids)
    n = TINY["n_layers"]
    for path in (hf_dir, gguf_path):
        win = LayerWindow(load_weights(path, range(n), embed=True, head=True))
        got = win.logits(win.forward(win.embed(ids), 0, win.new_cache()))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
        # and decoding token by token after a prefill gives the last row again
        stages = [LayerWindow(load_weights(path, [0], True, False)),
                  LayerWindow(load_weights(path, [1], False, True))]
        caches = [s.new_cache(2) for s in stages]  # too small: grows
        h = stages[0].embed(ids[:4])
        for s, c in zip(stages, caches, strict=True):
            h = s.forward(h, 0, c)
        for pos in range(4, len(ids)):
            h = stages[0].embed([ids[pos]])
            for s, c in zip(stages, caches, strict=True):
                h = s.forward(h, pos, c)
        np.testing.assert_allclose(stages[1].logits(h)[0], want[-1], rtol=1e-3, atol=1e-3)
    # TP on the tiny HF model too (2 kv heads, 4 q heads over 3 ranks: uneven groups)
    full_w = load_weights(hf_dir, range(n), True, True)
    coord = LayerWindow(full_w.subset([], True, True))
    shards = [TensorShard(full_w.subset(range(n), False, False), rank=r, world=3)
              for r in range(3)]
    single = greedy_pipeline([LayerWindow(full_w)], ids, 8)
    assert greedy_tensor_parallel(coord, shards, ids, 8) == single
