"""LLM shard host: the part of a payload agent that holds layer windows of an edge LLM and moves
activations to the next node over the (emulated) network.

A *plan* is one way of splitting the model over nodes, loaded once and used for many prompts:

* ``pipeline`` (prima.cpp's piped ring): the plan's stages are ``(node, start, end)`` windows
  in execution order, possibly several rounds around the ring.  The master (the node of stage 0)
  holds the embedding and the output head.  A token's activations travel ring-wise: each node
  runs its window and sends the hidden state (float32, ``[T, dim]``) straight to the node of the
  next stage - one-way messages, no replies, so a hop costs one link latency, not a round trip.
  The last stage sends it back to the master, which computes the logits and the next token.
* ``tensor`` (TPI-LLM): every layer is split across ranks by attention heads and MLP columns.
  Rank 0 is the master: for each layer it sends the hidden state to every other rank, adds the
  partial sums that come back to its own (a star all-reduce: gather at the master, broadcast
  with the next request) - two round trips per layer, which is why it loses on slow links.

Device heterogeneity.  On a physical board, or a node slowed by a cgroup quota, the compute
time is the node's own.  An emulated node stands for a device `speed` times as fast as one
host core: every shard computation really runs (so the tokens are real) and is then held until
``cpu_time / speed`` has passed - the compute-side analogue of ns-3 emulating a link's delay.
The thread's CPU time, not wall time, is used, so host contention on a 2-core machine does not
make a device look slower than its profile; only when the host is too slow to keep up does the
wall time exceed the emulated time, and that is counted (``late``).

Memory: a node refuses a plan whose windows would exceed its `mem_limit_bytes` (the device's
budget for model weights), naming the plan, the bytes and the limit - unless it offloads
(``offload=True``, the agent's ``--llm-offload``): then it keeps resident as many of its layers
as fit next to the embedding and head (the master's, always resident) and one streaming buffer,
and re-reads the others from the model file for every token (`payloads.llm.stream`, TPI-LLM's
sliding window).  That is the solver's model (controllers/llm/latency.py): the node's profile
reports ``disk_ms_per_layer`` and the buffer as reserved memory, so the solver's layer capacity
is the node's pinned-layer count and its ``overflow`` is exactly the layers the node re-reads
per token.  The time an emulated device spends loading counts as its own: loads on demand run
in the compute thread (its CPU time), and the time it waits for a background load is added.
A load's ``options`` pick the scheduler per plan: ``window`` (1, or 2 = TPI-LLM's memory
window: the next layer loads while the current one computes) and ``prefetch`` (False: every
streamed layer is read when needed, Accelerate's blocking offload).  A tensor-parallel rank
streams its slices from a `SliceCache` (its own float32 files, TPI-LLM's split/node_<rank>), so
a load costs the slice's bytes; with ``disk_mb_s`` (the agent's --llm-disk-mb-s) every node
streams from such a cache through an emulated disk of that bandwidth, whose waits are wall time
(storage, not CPU: not divided by the device's speed).

Failures: when a node cannot reach the next stage it tells the master, which fails the prompt
with a sentence naming both nodes; a stage that never answers fails it after `step_timeout_s`.
The host itself keeps serving: another plan can be loaded without the dead node.
"""

# asyncio.TimeoutError stays spelled out: on Python 3.10 (boards) it is not the builtin one.
# ruff: noqa: UP041
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from payloads.client import AgentConnection
from payloads.llm.stream import SliceCache, StreamingLayers
from payloads.protocol import message_bytes

DEFAULT_STEP_TIMEOUT_S = 30.0


class ShardError(Exception):
    """A plan or prompt that cannot be served, with the reason in words."""


def _close_stores(plan: Any) -> None:
    """Stop a released plan's prefetch threads (its layers go with it)."""
    for s in plan.stores:
        s.close()


def _rss_bytes() -> int | None:
    """This process's resident set now (Linux /proc; None elsewhere): the whole agent -
    interpreter, numpy, KV caches, the page-cache-backed reads - not only model weights."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Peer(AgentConnection):
    """A persistent connection to another node's agent, shared by the node's tasks: one
    message at a time, each with its own time limit."""

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__(host, port, token)
        self._token_header = {"token": token}
        self.lock = asyncio.Lock()

    async def send_within(self, header: dict[str, Any], body: bytes, timeout: float) -> int:
        """One-way message; returns the bytes written."""
        async with self.lock:
            self.timeout = timeout
            return await self.send(header, body)

    async def request_within(self, header: dict[str, Any], body: bytes,
                             timeout: float) -> tuple[dict[str, Any], bytes, int]:
        """Request and reply; returns (reply, reply body, bytes both ways)."""
        async with self.lock:
            self.timeout = timeout
            reply, rbody, *_ = await self.request(header, body)
        return reply, rbody, (message_bytes({**header, **self._token_header}, body)
                              + message_bytes(reply, rbody))


@dataclass
class Stage:
    node: str
    host: str
    port: int
    start: int
    end: int


@dataclass
class Plan:
    """One loaded split of the model on this node."""

    name: str
    mode: str  # "pipeline" | "tensor"
    master: str
    stages: list[Stage]
    windows: dict[int, Any]  # stage index -> runtime.LayerWindow (pipeline)
    shard: Any = None  # runtime.TensorShard (tensor)
    head: Any = None  # LayerWindow with embedding and head (master only)
    ranks: list[Stage] = field(default_factory=list)  # tensor: rank r -> its node
    caches: dict[tuple[str, int], Any] = field(default_factory=dict)
    resident_bytes: int = 0
    stores: list[Any] = field(default_factory=list)  # stream.StreamingLayers (offloading)
    bytes_sent: int = 0
    messages_sent: int = 0
    compute_s: float = 0.0  # emulated device time spent


class ShardHost:
    """LLM shard service of one node; `handle` answers the agent's ``kind: llm`` messages."""

    def __init__(self, node: str, token: str, speed: float | None = None,
                 mem_limit_bytes: int | None = None,
                 step_timeout_s: float = DEFAULT_STEP_TIMEOUT_S, offload: bool = False,
                 disk_mb_s: float | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (device speed relative to one host core), "
                             f"got {speed!r}")
        self.node, self.speed, self.mem_limit = node, speed, mem_limit_bytes
        self.offload = bool(offload)
        if disk_mb_s is not None and not disk_mb_s > 0:
            raise ValueError(f"disk_mb_s must be > 0 MB/s, got {disk_mb_s!r}")
        self.disk_mb_s = disk_mb_s
        # float32 copies of what this node streams, per (model, slice): shared by its plans
        self._slice_caches: dict[tuple[str, int, int], SliceCache] = {}
        self.step_timeout_s = step_timeout_s
        self._token = token
        self._plans: dict[str, Plan] = {}
        self._peers: dict[tuple[str, int], Peer] = {}
        self._waiting: dict[tuple[str, str, int], asyncio.Future[Any]] = {}
        # one worker: a device computes one shard at a time, as a real one does
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llm-{node}")
        self._background: set[asyncio.Task[Any]] = set()
        # wall time by which computations overran their emulated device time: the host was
        # too slow or too busy to emulate this device faithfully
        self.late_s = 0.0

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for p in self._peers.values():
            await p.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for plan in self._plans.values():
            _close_stores(plan)
        self._plans.clear()
        for c in self._slice_caches.values():
            c.close()
        self._slice_caches.clear()

    def _slice_cache(self, path: Path, cfg: Any, part: Any) -> SliceCache:
        key = (str(path), part.rank, part.world)
        if key not in self._slice_caches:
            self._slice_caches[key] = SliceCache(path, cfg, part)
        return self._slice_caches[key]

    # ------------------------------------------------------------------ dispatch

    async def handle(self, header: dict[str, Any],
                     body: bytes) -> tuple[dict[str, Any], bytes] | None:
        """Answer one message; None for one-way messages (pipeline steps)."""
        op = header.get("op")
        try:
            if op == "step":
                self._spawn(self._on_step(header, body))
                return None
            if op == "final":
                self._on_final(header, body)
                return None
            handler = {"load": self._load, "release": self._release, "profile": self._profile,
                       "probe": self._probe, "echo": self._echo, "generate": self._generate,
                       "tp": self._tp, "stats": self._stats}.get(op or "")
            if handler is None:
                return {"ok": False, "node": self.node,
                        "error": f"bad request: unknown llm op {op!r}"}, b""
            return await handler(header, body)
        except ShardError as exc:
            return {"ok": False, "node": self.node, "error": str(exc)}, b""

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _peer(self, host: str, port: int) -> Peer:
        key = (host, int(port))
        if key not in self._peers:
            self._peers[key] = Peer(host, int(port), self._token)
        return self._peers[key]

    async def _compute(self, fn: Callable[[], Any],
                       plan: Plan | None = None) -> tuple[Any, float]:
        """Run `fn` on the device's worker and hold its result for the emulated device time.

        With streamed weights (`plan.stores`), the time the worker sat waiting for a background
        layer load is device time too: a real device would be loading at its own speed then,
        and thread CPU time does not see a wait."""
        t_wall = time.perf_counter()
        stores = plan.stores if plan is not None else []

        def timed() -> tuple[Any, float, float]:
            w0 = [s.wait_s for s in stores]
            c0 = time.thread_time()
            out = fn()
            cpu = time.thread_time() - c0
            # (max: a `stats` reset may zero the counters meanwhile).  A wait for emulated
            # storage (disk_mb_s) is wall time, a wait for a dequantising thread CPU time.
            waits = [(max(0.0, s.wait_s - w), s.disk_mb_s is not None)
                     for s, w in zip(stores, w0, strict=True)]
            return (out, cpu + sum(w for w, io in waits if not io),
                    sum(w for w, io in waits if io))

        out, cpu, io = await asyncio.get_running_loop().run_in_executor(self._pool, timed)
        device_s = (cpu / self.speed + io) if self.speed else time.perf_counter() - t_wall
        wait = device_s - (time.perf_counter() - t_wall)
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            self.late_s -= wait
        return out, device_s

    def _plan(self, name: Any) -> Plan:
        plan = self._plans.get(str(name))
        if plan is None:
            raise ShardError(f"{self.node}: no plan {name!r} is loaded here (load it first)")
        return plan

    # ------------------------------------------------------------------ setup ops

    async def _load(self, h: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        from payloads.llm import model as mdl
        from payloads.llm import runtime as rt

        name, mode = str(h.get("plan") or ""), h.get("mode", "pipeline")
        if not name or mode not in ("pipeline", "tensor"):
            raise ShardError("bad request: load needs 'plan' and mode 'pipeline' or 'tensor'")
        path = Path(h["model"]) if h.get("model") else mdl.default_model_path()
        stages = [Stage(**s) for s in h.get("stages", [])]
        master = str(h.get("master") or (stages[0].node if stages else self.node))
        old = self._plans.pop(name, None)
        if old is not None:
            _close_stores(old)
        cfg = mdl.load_config(path)
        opts = h.get("options") or {}
        window = int(opts.get("window", 1))
        prefetch = bool(opts.get("prefetch", True))
        if window not in (1, 2):
            raise ShardError(f"bad request: options.window must be 1 or 2, got {window!r}")
        t0 = time.perf_counter()
        if mode == "pipeline":
            mine = [i for i, s in enumerate(stages) if s.node == self.node]
            if not mine and self.node != master:
                raise ShardError(f"{self.node}: plan {name} gives this node no stage")
            if stages and stages[0].node != master:
                raise ShardError(f"plan {name}: stage 0 must be on the master {master}")
            layers = [j for i in mine for j in range(stages[i].start, stages[i].end)]
            need = mdl.shard_bytes(cfg, layers, embed=self.node == master,
                                   head=self.node == master)
            per_layer = mdl.layer_bytes_of(cfg)
            resident = self._fit(name, need, len(layers), per_layer, window)

            def build() -> Plan:
                stores, held = [], need
                if resident is None:
                    def layers_of(i: int) -> Any:
                        return mdl.load_weights(path, range(stages[i].start, stages[i].end),
                                                embed=False, head=False).layers
                else:  # one store over all this node's windows: one budget, ring order
                    cache = (self._slice_cache(path, cfg, mdl.TPSlice.full(cfg))
                             if self.disk_mb_s is not None else None)
                    store = StreamingLayers(path, cfg, layers, resident, prefetch=prefetch,
                                            window=window, cache=cache,
                                            disk_mb_s=self.disk_mb_s)
                    stores.append(store)
                    held = need - max(0, len(layers) - resident - window) * per_layer

                    def layers_of(i: int) -> Any:
                        return store.view(range(stages[i].start, stages[i].end))
                windows = {i: rt.LayerWindow(mdl.ModelWeights(
                    cfg, layers_of(i), mdl.TPSlice.full(cfg), source=str(path)), cfg)
                    for i in mine}
                head = (rt.LayerWindow(mdl.load_weights(path, range(0), embed=True, head=True),
                                       cfg) if self.node == master else None)
                return Plan(name, mode, master, stages, windows, head=head, resident_bytes=held,
                            stores=stores)
        else:
            ranks = stages
            world = len(ranks)
            rank = next((r for r, s in enumerate(ranks) if s.node == self.node), None)
            if rank is None:
                raise ShardError(f"{self.node}: plan {name} gives this node no rank")
            need = (mdl.shard_bytes(cfg, range(cfg.n_layers), False, False, tp=(rank, world))
                    + (mdl.shard_bytes(cfg, [], True, True) if rank == 0 else 0))
            part = mdl.TPSlice.of(cfg, rank, world)
            per_layer = mdl.layer_bytes_of(cfg, part)
            resident = self._fit(name, need, cfg.n_layers, per_layer, window)

            def build() -> Plan:
                stores, held = [], need
                if resident is None:
                    w = mdl.load_weights(path, range(cfg.n_layers), embed=False, head=False,
                                         tp=(rank, world))
                else:
                    # the rank's own slice files: a load reads 1/world of a layer
                    store = StreamingLayers(path, cfg, range(cfg.n_layers), resident, part,
                                            prefetch=prefetch, window=window,
                                            cache=self._slice_cache(path, cfg, part),
                                            disk_mb_s=self.disk_mb_s)
                    stores.append(store)
                    held = need - max(0, cfg.n_layers - resident - window) * per_layer
                    w = mdl.ModelWeights(cfg, store, part, source=str(path))
                shard = rt.TensorShard(w, cfg, rank, world)
                head = (rt.LayerWindow(mdl.load_weights(path, range(0), embed=True, head=True),
                                       cfg) if rank == 0 else None)
                return Plan(name, mode, ranks[0].node, [], {}, shard=shard, head=head,
                            ranks=ranks, resident_bytes=held, stores=stores)

        plan = await asyncio.get_running_loop().run_in_executor(self._pool, build)
        self._plans[name] = plan
        out = {"ok": True, "node": self.node, "plan": name, "resident_bytes": plan.resident_bytes,
               "load_s": round(time.perf_counter() - t0, 3)}
        if plan.stores:
            out |= {"weights_bytes": need, "resident_layers": resident, "window": window,
                    "prefetch": prefetch,
                    "streamed_layers": sum(len(s.streamed) for s in plan.stores)}
        return out, b""

    def _fit(self, plan: str, need: int, n_layers: int, per_layer: int,
             window: int = 1) -> int | None:
        """None when the plan's ``need`` bytes fit the device; otherwise, on an offloading
        node, how many of its ``n_layers`` layers stay resident (the rest stream through
        ``window`` buffers); otherwise refuse, naming the plan, the bytes and the limit."""
        if self.mem_limit is None or need <= self.mem_limit:
            return None
        if not self.offload:
            raise ShardError(f"{self.node}: plan {plan} needs {need / 2**20:.1f} MiB of weights "
                             f"here but the device's model memory is "
                             f"{self.mem_limit / 2**20:.1f} MiB (mem_limit); give it fewer "
                             f"layers")
        fixed = need - n_layers * per_layer  # embedding and head: always resident
        slots = (self.mem_limit - fixed) // per_layer
        if slots < 1 + window:
            what = f"the embedding and head ({fixed / 2**20:.1f} MiB) + " if fixed else ""
            least = fixed + (1 + window) * per_layer
            buf = "the streaming buffer" if window == 1 else f"{window} streaming buffers"
            raise ShardError(f"{self.node}: plan {plan} cannot run here even streaming its "
                             f"layers from the model file (--llm-offload): it needs at least "
                             f"{what}one resident layer + {buf} ("
                             f"{(1 + window) * per_layer / 2**20:.1f} MiB) = "
                             f"{least / 2**20:.1f} MiB, "
                             f"the device's model memory is {self.mem_limit / 2**20:.1f} MiB "
                             f"(mem_limit)")
        return int(slots) - window

    async def _release(self, h: dict[str, Any], _b: bytes) -> tuple[dict[str, Any], bytes]:
        names = [str(h["plan"])] if h.get("plan") else list(self._plans)
        for n in names:
            plan = self._plans.pop(n, None)
            if plan is not None:
                _close_stores(plan)
        return {"ok": True, "node": self.node, "released": names}, b""

    async def _stats(self, h: dict[str, Any], _b: bytes) -> tuple[dict[str, Any], bytes]:
        plan = self._plan(h.get("plan"))
        out = {"ok": True, "node": self.node, "bytes_sent": plan.bytes_sent,
               "messages_sent": plan.messages_sent, "compute_s": round(plan.compute_s, 6),
               "host_late_s": round(self.late_s, 6), "resident_bytes": plan.resident_bytes}
        out["rss_bytes"] = _rss_bytes()
        if plan.stores:
            st = [s.stats() for s in plan.stores]
            out["streamed"] = {k: sum(x[k] for x in st) for k in st[0]}
            # weight bytes alive at most: what is always resident + the stores' peak
            out["peak_weight_bytes"] = (plan.resident_bytes
                                        - sum(s.pinned_bytes + s.window * s.layer_bytes
                                              for s in plan.stores)
                                        + sum(s.peak_bytes for s in plan.stores))
        else:
            out["peak_weight_bytes"] = plan.resident_bytes
        if h.get("reset"):
            plan.bytes_sent = plan.messages_sent = 0
            plan.compute_s = 0.0
            for s in plan.stores:
                s.reset_stats()
        return out, b""

    async def _profile(self, h: dict[str, Any], _b: bytes) -> tuple[dict[str, Any], bytes]:
        """Decode time per layer and of the head on this device (Halda's compute input), and
        on an offloading node the time to load one layer from the file (its overflow cost)."""
        from payloads.llm import model as mdl
        from payloads.llm import runtime as rt

        path = Path(h["model"]) if h.get("model") else mdl.default_model_path()
        n_layers = int(h.get("layers", 2))
        tokens = int(h.get("tokens", 8))
        cfg = mdl.load_config(path)

        disk_loads = int(h.get("disk_loads", 5)) if self.offload else 0

        def measure() -> dict[str, Any]:
            w = rt.LayerWindow(mdl.load_weights(path, range(n_layers), embed=True, head=True),
                               cfg)
            out = rt.profile_layers(w, n_tokens=tokens)
            loads = []  # what streaming costs here: one layer read and dequantised
            for k in range(disk_loads):
                t0 = time.perf_counter()
                mdl.load_layer(path, cfg, k % cfg.n_layers)
                loads.append(time.perf_counter() - t0)
            out["disk_ms"] = float(np.median(loads)) * 1e3 if loads else None
            return out

        prof, _ = await self._compute(measure)
        scale = 1.0 / self.speed if self.speed else 1.0
        head_ms = prof["head_ms"] + prof["embed_ms"]  # the master does both for every token
        layer_b = mdl.shard_bytes(cfg, [0], False, False)
        out = {"ok": True, "node": self.node, "speed": self.speed,
               "layer_ms": prof["layer_ms"] * scale, "head_ms": head_ms * scale,
               "host_layer_ms": prof["layer_ms"], "host_head_ms": head_ms,
               "layer_bytes": layer_b,
               "embed_head_bytes": mdl.shard_bytes(cfg, [], True, True),
               "mem_limit_bytes": self.mem_limit, "offload": self.offload}
        if self.offload and self.disk_mb_s is not None:
            # emulated storage: a streamed layer costs its bytes at the disk's bandwidth
            # (wall time, not scaled by the speed); the read itself overlaps with it
            out |= {"disk_ms_per_layer": layer_b / (self.disk_mb_s * 1e6) * 1e3,
                    "host_disk_ms_per_layer": prof["disk_ms"], "disk_mb_s": self.disk_mb_s,
                    "stream_buffer_bytes": layer_b}
        elif prof["disk_ms"] is not None:
            # dequantisation is CPU work: it scales with the device's speed like layer_ms.
            # The streaming buffer is memory the solver must not count as layer capacity.
            out |= {"disk_ms_per_layer": prof["disk_ms"] * scale,
                    "host_disk_ms_per_layer": prof["disk_ms"], "stream_buffer_bytes": layer_b}
        return out, b""

    async def _echo(self, h: dict[str, Any], _b: bytes) -> tuple[dict[str, Any], bytes]:
        return {"ok": True, "node": self.node}, b"\0" * int(h.get("reply_bytes", 0))

    async def _probe(self, h: dict[str, Any], _b: bytes) -> tuple[dict[str, Any], bytes]:
        """RTT (small messages) and goodput (a bulk message) from this node to each peer."""
        count = int(h.get("count", 5))
        bulk = int(h.get("bulk_bytes", 256 * 1024))
        out: dict[str, Any] = {}
        for p in h.get("peers", []):
            peer = self._peer(p["host"], p["port"])
            try:
                rtts = []
                for _ in range(count):
                    t0 = time.perf_counter()
                    await peer.request_within({"kind": "llm", "op": "echo"}, b"",
                                              self.step_timeout_s)
                    rtts.append(time.perf_counter() - t0)
                rtt = float(np.median(rtts))
                t0 = time.perf_counter()
                await peer.request_within({"kind": "llm", "op": "echo"}, b"\0" * bulk,
                                   self.step_timeout_s)
                dt = max(time.perf_counter() - t0 - rtt, 1e-6)
                out[p["node"]] = {"rtt_ms": round(rtt * 1e3, 3),
                                  "mbps": round(bulk * 8 / dt / 1e6, 3)}
            except (OSError, asyncio.TimeoutError) as exc:
                out[p["node"]] = {"error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "node": self.node, "peers": out}, b""

    # ------------------------------------------------------------------ pipeline

    async def _generate(self, h: dict[str, Any], _b: bytes) -> tuple[dict[str, Any], bytes]:
        """Greedy generation driven by the master; per-token wall times come back."""
        plan = self._plan(h.get("plan"))
        if plan.head is None:
            raise ShardError(f"{self.node} is not the master of plan {plan.name}")
        session = str(h.get("session") or f"s{time.monotonic_ns()}")
        ids = [int(t) for t in h.get("prompt_ids", [])]
        if not ids:
            raise ShardError("bad request: generate needs a non-empty 'prompt_ids'")
        max_new = int(h.get("max_new_tokens", 16))
        eos = h.get("eos_id")
        timeout = float(h.get("step_timeout_s") or self.step_timeout_s)
        out: list[int] = []
        times: list[float] = []
        t0 = time.perf_counter()
        pos = 0
        feed = ids
        try:
            for _ in range(max_new):
                if plan.mode == "pipeline":
                    hidden = await self._pipeline_token(plan, session, pos, feed, timeout)
                else:
                    hidden = await self._tensor_token(plan, session, pos, feed, timeout)
                assert plan.head is not None
                logits, dev = await self._compute(
                    lambda w=plan.head, v=hidden: w.logits(v[-1:]))
                plan.compute_s += dev
                tok = int(np.argmax(logits[-1]))
                times.append(time.perf_counter() - t0)
                if eos is not None and tok == int(eos):
                    break  # EOS ends the answer and is not part of it
                out.append(tok)
                pos += len(feed)
                feed = [tok]
        except ShardError as exc:
            return {"ok": False, "node": self.node, "error": str(exc), "tokens": out,
                    "token_times_s": times}, b""
        finally:
            self._drop_session(plan, session)
            await self._broadcast_drop(plan, session)
        return {"ok": True, "node": self.node, "tokens": out, "token_times_s": times}, b""

    def _drop_session(self, plan: Plan, session: str) -> None:
        for k in [k for k in plan.caches if k[0] == session]:
            del plan.caches[k]
        for k in [k for k in self._waiting if k[1] == session]:
            self._waiting.pop(k).cancel()

    async def _broadcast_drop(self, plan: Plan, session: str) -> None:
        """Free the session's KV caches on the other nodes (best effort)."""
        for s in {(s.host, s.port, s.node) for s in plan.stages + plan.ranks
                  if s.node != self.node}:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await self._peer(s[0], s[1]).send_within(
                    {"kind": "llm", "op": "step", "plan": plan.name, "session": session,
                     "drop": True}, b"", 5.0)

    async def _pipeline_token(self, plan: Plan, session: str, pos: int, feed: list[int],
                              timeout: float) -> np.ndarray:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        key = (plan.name, session, pos)
        self._waiting[key] = fut
        head = plan.head
        assert head is not None
        x, dev = await self._compute(lambda: head.embed(np.asarray(feed, dtype=np.int64)))
        plan.compute_s += dev
        await self._run_stage(plan, session, pos, 0, x)
        try:
            got = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise ShardError(
                f"plan {plan.name}: no activations came back for position {pos} within "
                f"{timeout:g} s; a shard node may have died (stages: "
                + ", ".join(f"{s.node}[{s.start},{s.end})" for s in plan.stages) + ")") from None
        finally:
            self._waiting.pop(key, None)
        if isinstance(got, str):
            raise ShardError(got)
        return got

    async def _run_stage(self, plan: Plan, session: str, pos: int, idx: int,
                         x: np.ndarray) -> None:
        """Run stage `idx` (this node's) and pass the result on, locally or over the network."""
        while True:
            window = plan.windows[idx]
            cache = plan.caches.get((session, idx))
            if cache is None:
                cache = plan.caches[(session, idx)] = window.new_cache()
            x, dev = await self._compute(lambda w=window, c=cache, v=x: w.forward(v, pos, c),
                                         plan)
            plan.compute_s += dev
            nxt = idx + 1
            if nxt < len(plan.stages) and plan.stages[nxt].node == self.node:
                idx = nxt
                continue
            break
        body = np.ascontiguousarray(x, dtype=np.float32).tobytes()
        if nxt < len(plan.stages):
            target = plan.stages[nxt]
            header = {"kind": "llm", "op": "step", "plan": plan.name, "session": session,
                      "pos": pos, "stage": nxt, "rows": int(x.shape[0])}
        else:
            if self.node == plan.master:
                self._resolve(plan.name, session, pos, x)
                return
            target = plan.stages[0]
            header = {"kind": "llm", "op": "final", "plan": plan.name, "session": session,
                      "pos": pos, "rows": int(x.shape[0])}
        try:
            plan.bytes_sent += await self._peer(target.host, target.port).send_within(
                header, body, self.step_timeout_s)
            plan.messages_sent += 1
        except (OSError, asyncio.TimeoutError) as exc:
            await self._report_failure(plan, session, pos, f"{self.node} could not send the "
                                       f"activations to {target.node} ({target.host}:"
                                       f"{target.port}): {type(exc).__name__}: {exc}")

    async def _report_failure(self, plan: Plan, session: str, pos: int, why: str) -> None:
        if self.node == plan.master:
            self._resolve(plan.name, session, pos, why)
            return
        m = plan.stages[0]
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await self._peer(m.host, m.port).send_within(
                {"kind": "llm", "op": "final", "plan": plan.name, "session": session,
                 "pos": pos, "error": why}, b"", 5.0)

    async def _on_step(self, h: dict[str, Any], body: bytes) -> None:
        plan = self._plans.get(str(h.get("plan")))
        session = str(h.get("session"))
        if plan is None:
            return
        if h.get("drop"):
            self._drop_session(plan, session)
            return
        pos, idx = int(h["pos"]), int(h["stage"])
        if idx not in plan.windows:
            await self._report_failure(plan, session, pos, f"{self.node} got stage {idx} of "
                                       f"plan {plan.name}, which it does not hold")
            return
        x = np.frombuffer(body, dtype=np.float32).reshape(int(h["rows"]), -1)
        try:
            await self._run_stage(plan, session, pos, idx, x)
        except Exception as exc:  # noqa: BLE001 - the master must hear why, whatever it was
            await self._report_failure(plan, session, pos, f"{self.node} failed stage {idx}: "
                                       f"{type(exc).__name__}: {exc}")

    def _on_final(self, h: dict[str, Any], body: bytes) -> None:
        if h.get("error"):
            self._resolve(str(h.get("plan")), str(h.get("session")), int(h.get("pos", 0)),
                          str(h["error"]))
            return
        x = np.frombuffer(body, dtype=np.float32).reshape(int(h["rows"]), -1)
        self._resolve(str(h.get("plan")), str(h.get("session")), int(h["pos"]), x)

    def _resolve(self, plan: str, session: str, pos: int, value: Any) -> None:
        fut = self._waiting.get((plan, session, pos))
        if fut is None and isinstance(value, str):
            # an error for a position nobody waits on yet: fail whatever this session awaits
            fut = next((f for k, f in self._waiting.items() if k[:2] == (plan, session)), None)
        if fut is not None and not fut.done():
            fut.set_result(value)

    # ------------------------------------------------------------------ tensor parallel

    async def _tensor_token(self, plan: Plan, session: str, pos: int, feed: list[int],
                            timeout: float) -> np.ndarray:
        shard, head = plan.shard, plan.head
        assert shard is not None and head is not None
        x, dev = await self._compute(lambda: head.embed(np.asarray(feed, dtype=np.int64)))
        plan.compute_s += dev
        cache = plan.caches.get((session, 0))
        if cache is None:
            cache = plan.caches[(session, 0)] = shard.new_cache()
        for layer in shard.layers:
            for part in ("attn", "mlp"):
                x = x + await self._allreduce(plan, session, pos, layer, part, x, cache,
                                              timeout)
        for s in plan.stores:  # the head and the next token's round trips overlap a load
            s.pass_done()
        return x

    async def _allreduce(self, plan: Plan, session: str, pos: int, layer: int, part: str,
                         x: np.ndarray, cache: Any, timeout: float) -> np.ndarray:
        """Star all-reduce: the other ranks' partial sums of this sub-layer, plus ours."""
        body = np.ascontiguousarray(x, dtype=np.float32).tobytes()
        header = {"kind": "llm", "op": "tp", "plan": plan.name, "session": session,
                  "pos": pos, "layer": layer, "part": part, "rows": int(x.shape[0])}

        async def remote(stage: Stage) -> np.ndarray:
            try:
                reply, rbody, nbytes = await self._peer(stage.host, stage.port).request_within(
                    header, body, timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise ShardError(f"plan {plan.name}: rank on {stage.node} ({stage.host}:"
                                 f"{stage.port}) did not answer layer {layer} {part}: "
                                 f"{type(exc).__name__}: {exc}; a shard node may have died"
                                 ) from None
            if not reply.get("ok"):
                raise ShardError(f"plan {plan.name}: {stage.node}: {reply.get('error')}")
            plan.bytes_sent += nbytes
            plan.messages_sent += 2
            return np.frombuffer(rbody, dtype=np.float32).reshape(x.shape)

        shard = plan.shard
        assert shard is not None
        fn = shard.attn_partial if part == "attn" else shard.mlp_partial
        remotes = [asyncio.ensure_future(remote(s)) for s in plan.ranks[1:]]
        try:
            mine, dev = await self._compute(
                (lambda: fn(layer, x, pos, cache)) if part == "attn" else (lambda: fn(layer, x)),
                plan)
            plan.compute_s += dev
            parts = await asyncio.gather(*remotes)
        except BaseException:
            for r in remotes:
                r.cancel()
            await asyncio.gather(*remotes, return_exceptions=True)
            raise
        total = mine
        for p in parts:
            total = total + p
        return total

    async def _tp(self, h: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        plan = self._plan(h.get("plan"))
        shard = plan.shard
        if shard is None:
            raise ShardError(f"{self.node}: plan {plan.name} is not tensor-parallel")
        session, pos, layer = str(h.get("session")), int(h["pos"]), int(h["layer"])
        x = np.frombuffer(body, dtype=np.float32).reshape(int(h["rows"]), -1)
        cache = plan.caches.get((session, 0))
        if cache is None or (layer == 0 and h.get("part") == "attn" and pos == 0):
            cache = plan.caches[(session, 0)] = shard.new_cache()
        if h.get("part") == "attn":
            out, dev = await self._compute(lambda: shard.attn_partial(layer, x, pos, cache),
                                           plan)
        else:
            out, dev = await self._compute(lambda: shard.mlp_partial(layer, x), plan)
            if layer == shard.layers[-1]:
                for s in plan.stores:  # the pass is over here: prefetch for the next token
                    s.pass_done()
        plan.compute_s += dev
        return {"ok": True}, np.ascontiguousarray(out, dtype=np.float32).tobytes()
