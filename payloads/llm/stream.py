"""Sliding-window weight memory (TPI-LLM's "sliding window memory scheduler"): run more layers
than the device's memory holds by keeping some resident and re-reading the others from the model
file for every token, the next one loaded in the background while the current ones compute.

`StreamingLayers` is a ``Mapping[int, LayerWeights]`` over the layers a node runs, so it plugs
into `LayerWindow` / `TensorShard` as ``ModelWeights.layers`` (through `StreamingLayers.view`,
one view per window) and a fully resident window keeps its plain dict and its hot path.

Policy - pin the first ``resident`` layers, rotate the rest through ONE buffer.  Decoding walks
the node's layers in the same order for every token (a cyclic access pattern): LRU would evict
exactly the layer needed next and miss on every access.  With S = resident + 1 layer slots,
pinning reads n - S + 1 of n layers per token, the same every token, which is what the solver's
linear overflow cost assumes (controllers/llm/latency.py).  Belady's optimum, which rotates the
kept set, averages n(n - S)/(n - 1) - less than one load per token fewer (4.4 instead of 5
for n = 10, S = 6) - at the price of a varying per-token cost and a policy that must look ahead.
TPI-LLM double-buffers instead (the next layer loads while the current one computes, two
streamed layers alive), which with the same memory pins one layer fewer and so reads one layer
more per token.  Here that trade is bad: dequantising a Q4_1 layer to float32 takes ~25 ms on
this host against ~1 ms to compute it (docs/llm.md), so a second buffer would hide ~1 ms per
streamed layer and cost ~25 ms per token.  The one buffer is still prefetched whenever it is
free: when a window's pass ends (`pass_done`: the rest of the ring, the head and the network
then overlap the load) and whenever a pinned layer is accessed; consecutive streamed layers
are loaded on demand, in the calling thread.

Memory: at most ``resident`` + ``window`` layers are alive (``resident_bytes``/``peak_bytes``
count the layers really alive, via `weakref.finalize`, not only what the store references).

TPI-LLM's own regime (disk-bound devices, docs/llm.md "TPI-LLM in its own regime") adds three
options.  ``window=2`` is TPI's ``--memory_window 2``: the next streamed layer loads into a
second buffer while the current one computes, so consecutive streamed layers overlap too (one
pinned layer fewer for the same memory).  `SliceCache` is TPI's ``split/node_<rank>`` files (and
Accelerate's float ``.dat`` disk offload): a node writes the float32 arrays of exactly what it
runs - a tensor-parallel slice or whole layers - once, and a streamed load reads those bytes
back, so its cost scales with the slice, not with dequantising the whole layer.  ``disk_mb_s``
emulates the device's storage: a load lasts at least bytes / rate, and every load then runs on
the loader thread (the caller waits, ``wait_s``), since a disk read is not CPU time.

Counters (`stats`): streamed ``loads``, their ``load_s`` and ``bytes``; ``wait_s``, the time the
caller was blocked on a background load (an emulated device charges it as its own time, see
payloads/llm/node.py); ``prefetched`` (loads started ahead), ``wasted`` (prefetches not used).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from payloads.llm.model import LayerWeights, ModelConfig, TPSlice, layer_bytes_of, load_layer


class _OrderedLayers(Mapping[int, LayerWeights]):
    """Mapping plumbing shared by a store and its views: keys are `order` (the walk order of
    decoding), membership through the `_keys` set; subclasses supply `__getitem__`."""

    order: list[int]
    _keys: set[int]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, i: object) -> bool:
        return i in self._keys


_ARRAYS = ("attn_norm", "wqkv", "wo", "ffn_norm", "w_gate_up", "w_down")


class SliceCache:
    """A node's float32 copy of what it streams, one raw file per layer (TPI-LLM's per-rank
    ``split/node_<rank>`` weight files; Accelerate's disk offload writes float ``.dat`` files the
    same way).  Written once from the model file (dequantise the whole layer, keep the slice);
    `load` then reads exactly ``layer_bytes_of(config, part)`` bytes, so a rank of N reads 1/N
    of a layer per load instead of dequantising all of it (~25 ms per layer here, whatever N).
    ``directory`` None: a private temporary directory, removed by `close`."""

    def __init__(self, path: str | Path, config: ModelConfig, part: TPSlice | None = None,
                 directory: str | Path | None = None) -> None:
        self.path, self.config = Path(path), config
        self.part = part or TPSlice.full(config)
        self._own = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="llm-slices-") if directory is None
                        else directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._shapes: dict[int, list[tuple[int, ...]]] = {}
        self._lock = threading.Lock()

    def file(self, i: int) -> Path:
        p = self.part
        return self.dir / f"r{p.rank}of{p.world}-layer{i}.f32"

    def ensure(self, layers: Iterable[int]) -> None:
        """Write the layers not yet cached (one whole layer in memory at a time)."""
        for i in layers:
            with self._lock:
                if i in self._shapes:
                    continue
                lw = load_layer(self.path, self.config, i, self.part)
                arrays = [np.ascontiguousarray(getattr(lw, n), dtype=np.float32)
                          for n in _ARRAYS]
                tmp = self.file(i).with_suffix(".tmp")
                with open(tmp, "wb") as f:
                    for a in arrays:
                        f.write(a.tobytes())
                tmp.replace(self.file(i))
                self._shapes[i] = [a.shape for a in arrays]

    def load(self, i: int) -> LayerWeights:
        """Layer ``i``'s slice read back from its file: one read, views into one buffer."""
        if i not in self._shapes:
            self.ensure([i])
        shapes = self._shapes[i]
        buf = np.fromfile(self.file(i), dtype=np.float32)
        out, at = [], 0
        for shp in shapes:
            n = int(np.prod(shp))
            out.append(buf[at:at + n].reshape(shp))
            at += n
        return LayerWeights(i, self.part, *out)

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.dir, ignore_errors=True)


class StreamingLayers(_OrderedLayers):
    """Layer index -> weights, with only ``resident`` layers (+ one buffer) in memory.

    ``layers`` is the node's execution order (its windows in ring order, each ascending); the
    first ``resident`` of them are loaded now and stay, the others are read from ``path`` when
    needed.  ``part`` restricts every layer to a tensor-parallel slice (the whole layer is
    dequantised, then sliced: the load costs the same).  ``loader(i)`` replaces the file read
    (tests); ``prefetch=False`` loads only on demand (to measure what prefetching buys).
    ``window``: streaming buffers (1: the default policy above; 2: TPI-LLM's memory window, the
    next streamed layer loads while the current one computes).  ``cache``: read the layers
    from this `SliceCache` (cost proportional to the slice).  ``disk_mb_s``: emulated storage
    bandwidth in MB/s (a load lasts at least its bytes / rate; loads run on the loader thread).
    Passes are expected from one thread at a time, as a device computes one thing at a time;
    a lock keeps the bookkeeping consistent anyway.
    """

    def __init__(self, path: str | Path, config: ModelConfig, layers: Iterable[int],
                 resident: int, part: TPSlice | None = None,
                 loader: Any = None, prefetch: bool = True, window: int = 1,
                 cache: SliceCache | None = None, disk_mb_s: float | None = None) -> None:
        self.path, self.config = Path(path), config
        self.part = part or TPSlice.full(config)
        self.order = list(dict.fromkeys(int(i) for i in layers))
        if not self.order:
            raise ValueError("StreamingLayers needs at least one layer")
        bad = [i for i in self.order if not 0 <= i < config.n_layers]
        if bad:
            raise ValueError(f"layers {bad} outside 0..{config.n_layers - 1}")
        if int(resident) < 0:
            raise ValueError(f"resident must be >= 0, got {resident!r}")
        self.resident = min(int(resident), len(self.order))
        self.layer_bytes = layer_bytes_of(config, self.part)
        self.prefetch = bool(prefetch)
        if int(window) not in (1, 2):
            raise ValueError(f"window must be 1 or 2 streaming buffers, got {window!r}")
        self.window = int(window)
        if disk_mb_s is not None and not disk_mb_s > 0:
            raise ValueError(f"disk_mb_s must be > 0 MB/s, got {disk_mb_s!r}")
        self.disk_mb_s = disk_mb_s
        if cache is not None:
            cache.ensure(self.order[int(resident):])
        from_file = loader or (lambda i: load_layer(self.path, config, i, self.part))
        self._loader = cache.load if cache is not None and loader is None else from_file
        self._pin_loader = from_file  # pinned layers are read once: no need to cache them
        self._keys = set(self.order)
        pinned = self.order[:self.resident]
        self.streamed = self.order[self.resident:]
        # the next streamed layer after each layer of the cycle (None: nothing is streamed)
        self._next: dict[int, int | None] = {}
        n = len(self.order)
        for k, i in enumerate(self.order):
            self._next[i] = next((self.order[(k + d) % n] for d in range(1, n + 1)
                                  if self.order[(k + d) % n] not in pinned), None)
        self._lock = threading.Lock()
        self._live_lock = threading.Lock()
        self._live = 0  # streamed LayerWeights alive anywhere in the process
        self.peak_live = 0
        self._buf: LayerWeights | None = None
        self._buf_index: int | None = None
        self._pending: Future[tuple[LayerWeights, float]] | None = None
        self._pending_index: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.reset_stats()
        self._pinned: dict[int, LayerWeights] = {}
        for i in pinned:  # one at a time: the transient memory is one layer
            self._pinned[i] = self._pin_loader(i)

    # ------------------------------------------------------------------ Mapping

    def __getitem__(self, i: int) -> LayerWeights:
        lw = self._pinned.get(i)
        if lw is not None:
            self._prefetch_after(i)  # the buffer is free while a pinned layer computes
            return lw
        if i not in self._keys:
            raise KeyError(i)
        return self._streamed(i)

    def view(self, layers: Iterable[int]) -> StreamingView:
        """The layers of one window, sharing this store (its budget, buffer and counters)."""
        return StreamingView(self, layers)

    # ------------------------------------------------------------------ policy

    def pass_done(self, last: int | None = None) -> None:
        """A window's pass ended with layer ``last`` (default: the store's last): no streamed
        layer is in use any more, so start loading the next one now, overlapping whatever
        happens until it is needed (the other stages, the head, the network)."""
        self._prefetch_after(self.order[-1] if last is None else last)

    def _prefetch_after(self, i: int) -> None:
        target = self._next.get(i)
        if target is None or not self.prefetch or target in (self._buf_index, self._pending_index):
            return
        with self._lock:
            self._start_locked(target, keep_buf=False)

    def _drop_locked(self) -> None:
        """Free the buffer and abandon a background load (caller holds the lock)."""
        self._buf = self._buf_index = None
        fut, self._pending, self._pending_index = self._pending, None, None
        if fut is not None and not fut.cancel():
            lw, dt = fut.result()  # already running: let it finish, count it, drop it
            self._count(lw, dt)
            self.wasted += 1
        elif fut is not None:
            self.prefetched -= 1  # never started

    def _streamed(self, i: int) -> LayerWeights:
        with self._lock:
            if self._buf_index == i and self._buf is not None:
                self.buffer_hits += 1
                return self._buf
            if self._pending_index == i and self._pending is not None:
                fut, self._pending, self._pending_index = self._pending, None, None
                t0 = time.perf_counter()
                lw, dt = fut.result()
                self.wait_s += time.perf_counter() - t0
                self._count(lw, dt)
                del fut
            else:
                self._drop_locked()
                if self.disk_mb_s is None:
                    lw, dt = self._timed_load(i)  # on demand, in the caller's thread
                else:  # a disk read: the caller waits for the device's storage
                    t0 = time.perf_counter()
                    lw, dt = self._executor().submit(self._timed_load, i).result()
                    self.wait_s += time.perf_counter() - t0
                self._count(lw, dt)
                self.misses += 1
            self._buf, self._buf_index = lw, i
            if self.window == 2 and self.prefetch:
                self._start_locked(self._next.get(i), keep_buf=True)
            return lw

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-prefetch")
        return self._pool

    def _start_locked(self, target: int | None, keep_buf: bool) -> None:
        """Start loading ``target`` in the background (caller holds the lock); with
        ``keep_buf`` the buffer stays (the second slot of a window of 2)."""
        if target is None or target in (self._buf_index, self._pending_index):
            return
        if keep_buf:
            buf, idx = self._buf, self._buf_index
            self._drop_locked()
            self._buf, self._buf_index = buf, idx
        else:
            self._drop_locked()
        self._pending = self._executor().submit(self._timed_load, target)
        self._pending_index = target
        self.prefetched += 1

    def _timed_load(self, i: int) -> tuple[LayerWeights, float]:
        t0 = time.perf_counter()
        lw = self._loader(i)
        if self.disk_mb_s is not None:  # the device's storage: at least bytes / bandwidth
            rest = self.layer_bytes / (self.disk_mb_s * 1e6) - (time.perf_counter() - t0)
            if rest > 0:
                time.sleep(rest)
        dt = time.perf_counter() - t0
        with self._live_lock:
            self._live += 1
            self.peak_live = max(self.peak_live, self._live)
        weakref.finalize(lw, self._dead)
        return lw, dt

    def _dead(self) -> None:
        with self._live_lock:
            self._live -= 1

    def _count(self, lw: LayerWeights, dt: float) -> None:
        self.loads += 1
        self.load_s += dt
        self.bytes += sum(a.nbytes for _, a in lw.arrays())

    # ------------------------------------------------------------------ accounting

    def reset_stats(self) -> None:
        """Zero the counters (the peak restarts from what is alive now)."""
        self.loads = self.misses = self.buffer_hits = self.prefetched = self.wasted = 0
        self.bytes = 0
        self.load_s = self.wait_s = 0.0
        with self._live_lock:
            self.peak_live = self._live

    @property
    def pinned_bytes(self) -> int:
        return self.resident * self.layer_bytes

    @property
    def resident_bytes(self) -> int:
        """Layer bytes alive now: the pinned layers and every streamed layer not yet freed."""
        return self.pinned_bytes + self._live * self.layer_bytes

    @property
    def peak_bytes(self) -> int:
        """The most layer bytes alive at once since the last `reset_stats`."""
        return self.pinned_bytes + self.peak_live * self.layer_bytes

    def stats(self) -> dict[str, Any]:
        return {"resident_layers": self.resident, "streamed_layers": len(self.streamed),
                "window": self.window, "prefetch": self.prefetch,
                "loads": self.loads, "misses": self.misses, "prefetched": self.prefetched,
                "wasted": self.wasted, "buffer_hits": self.buffer_hits,
                "bytes": self.bytes, "load_s": round(self.load_s, 6),
                "wait_s": round(self.wait_s, 6), "peak_bytes": self.peak_bytes}

    def close(self) -> None:
        """Stop the prefetch thread and free the buffer (the pinned layers go with the store)."""
        with self._lock:
            self._drop_locked()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class StreamingView(_OrderedLayers):
    """One window's layers of a `StreamingLayers`.  `LayerWindow` calls `pass_done` after each
    pass (it looks the method up once, so a plain dict costs nothing)."""

    def __init__(self, store: StreamingLayers, layers: Iterable[int]) -> None:
        self.store = store
        self.order = list(dict.fromkeys(int(i) for i in layers))
        missing = [i for i in self.order if i not in store]
        if missing:
            raise KeyError(f"layers {missing} are not in the store")
        self._keys = set(self.order)
        self._last = self.order[-1] if self.order else None

    def __getitem__(self, i: int) -> LayerWeights:
        if i not in self._keys:
            raise KeyError(i)
        return self.store[i]

    def pass_done(self) -> None:
        if self._last is not None:
            self.store.pass_done(self._last)
