"""Client side of the LLM shard protocol: an orchestrator's handle on the shard nodes.

The orchestrator (on a ground station, or a benchmark) profiles the nodes, measures the links
between them, loads a plan - pipeline stages or tensor-parallel ranks - and sends prompts to the
plan's master.  Every call goes over the agents' TCP protocol, so on an emulated network it
crosses the emulated links like any other traffic.  Shard nodes are reached by the addresses
given here; the same addresses are handed to the nodes for their node-to-node traffic.
"""

# asyncio.TimeoutError stays spelled out: on Python 3.10 (boards) it is not the builtin one.
# ruff: noqa: UP041
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from payloads.client import AgentConnection


class ClusterError(Exception):
    """A node refused or could not be reached; the message names it."""


@dataclass(frozen=True)
class NodeAddr:
    node: str
    host: str
    port: int


@dataclass
class Generation:
    """One prompt's result as the orchestrator saw it."""

    ok: bool
    tokens: list[int]
    ttft_s: float | None  # request sent -> first token known at the master, plus the reply
    ms_per_token: float | None  # decode tokens after the first, at the master
    wall_s: float
    bytes_sent: int  # every shard message between nodes (application bytes above TCP)
    messages: int
    error: str | None = None
    token_times_s: list[float] | None = None
    # per member after the prompt: peak weight bytes, RSS, streaming counters (stats op)
    node_stats: dict[str, dict[str, Any]] | None = None


class ShardCluster:
    """The shard nodes of one experiment; one connection per node, reused."""

    def __init__(self, nodes: list[NodeAddr], token: str, timeout: float = 120.0,
                 step_timeout_s: float | None = None) -> None:
        if not nodes:
            raise ValueError("a shard cluster needs at least one node")
        self.nodes = {n.node: n for n in nodes}
        self.token, self.timeout = token, timeout
        self.step_timeout_s = step_timeout_s  # how long the master waits for a shard
        self._conns: dict[str, AgentConnection] = {}

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            await c.close()

    async def call(self, node: str, header: dict[str, Any], body: bytes = b"",
                   check: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """One llm request to `node`; raises ClusterError if it cannot be sent, or (with
        `check`) if the node refuses."""
        a = self.nodes[node]
        conn = self._conns.get(node)
        if conn is None:
            conn = self._conns[node] = AgentConnection(a.host, a.port, self.token, self.timeout)
        try:
            reply, *_ = await asyncio.wait_for(
                conn.request({"kind": "llm", **header}, body), timeout or self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._conns.pop(node, None)
            raise ClusterError(f"{node} ({a.host}:{a.port}) unreachable: "
                               f"{type(exc).__name__}: {exc}") from None
        if check and not reply.get("ok"):
            raise ClusterError(f"{node}: {reply.get('error')}")
        return reply

    async def wait_ready(self, deadline_s: float = 60.0) -> None:
        """Until every node's agent answers a health request (agents start in parallel)."""
        t_end = time.monotonic() + deadline_s
        for name, a in self.nodes.items():
            while True:
                try:
                    async with AgentConnection(a.host, a.port, self.token, 2.0) as c:
                        await c.health()
                    break
                except (OSError, asyncio.TimeoutError) as exc:
                    if time.monotonic() > t_end:
                        raise ClusterError(f"{name} ({a.host}:{a.port}) did not come up "
                                           f"within {deadline_s:g} s: {exc}") from None
                    await asyncio.sleep(0.3)

    async def profile(self, model: str | None = None, layers: int = 2,
                      tokens: int = 8) -> dict[str, dict[str, Any]]:
        """Per node: decode ms per layer and of the head, memory facts (one node at a time,
        so that the nodes' measurements do not compete for the host's cores)."""
        out = {}
        for n in self.nodes:
            out[n] = await self.call(n, {"op": "profile", "model": model, "layers": layers,
                                         "tokens": tokens})
        return out

    async def probe(self, count: int = 5, bulk_bytes: int = 256 * 1024
                    ) -> dict[str, dict[str, dict[str, float]]]:
        """RTT and goodput from every node to every other, as the nodes see them."""
        out = {}
        for n in self.nodes:
            peers = [{"node": p.node, "host": p.host, "port": p.port}
                     for p in self.nodes.values() if p.node != n]
            out[n] = (await self.call(n, {"op": "probe", "peers": peers, "count": count,
                                          "bulk_bytes": bulk_bytes}))["peers"]
        return out

    def stage_dicts(self, stages: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
        return [{"node": d, "host": self.nodes[d].host, "port": self.nodes[d].port,
                 "start": a, "end": b} for d, a, b in stages]

    async def load_pipeline(self, plan: str, stages: list[tuple[str, int, int]],
                            model: str | None = None,
                            options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load a piped-ring plan: `stages` are (node, start, end) in execution order, the
        first on the master.  Returns per-node resident bytes and load times (and, on a node
        that streams some of its layers, how many stay resident and how many stream).
        ``options``: the streaming scheduler of an offloading node, ``{"window": 1 | 2,
        "prefetch": bool}`` (payloads/llm/node.py)."""
        sd = self.stage_dicts(stages)
        nodes = list(dict.fromkeys(s[0] for s in stages))
        replies = await asyncio.gather(*(self.call(n, {
            "op": "load", "plan": plan, "mode": "pipeline", "model": model, "stages": sd,
            "master": stages[0][0], "options": options or {}}) for n in nodes))
        return {r["node"]: _load_summary(r) for r in replies}

    async def load_tensor(self, plan: str, ranks: list[str], model: str | None = None,
                          options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load a tensor-parallel plan over `ranks` (rank 0 = master); ``options`` as for
        `load_pipeline`."""
        sd = self.stage_dicts([(n, 0, 0) for n in ranks])
        replies = await asyncio.gather(*(self.call(n, {
            "op": "load", "plan": plan, "mode": "tensor", "model": model, "stages": sd,
            "master": ranks[0], "options": options or {}}) for n in ranks))
        return {r["node"]: _load_summary(r) for r in replies}

    async def release(self, plan: str) -> None:
        async def one(n: str) -> None:
            try:
                await self.call(n, {"op": "release", "plan": plan}, timeout=5.0)
            except ClusterError:
                pass  # a dead node holds nothing we can free

        await asyncio.gather(*(one(n) for n in self.nodes))

    async def generate(self, plan: str, master: str, members: list[str], prompt_ids: list[int],
                       max_new_tokens: int, eos_id: int | None = None) -> Generation:
        """Greedy generation on a loaded plan, with the wire bytes of all its members."""
        await asyncio.gather(*(self._stats(n, plan, reset=True) for n in members))
        t0 = time.perf_counter()
        try:
            r = await self.call(master, {"op": "generate", "plan": plan,
                                         "prompt_ids": prompt_ids,
                                         "max_new_tokens": max_new_tokens, "eos_id": eos_id,
                                         "step_timeout_s": self.step_timeout_s},
                                check=False)
        except ClusterError as exc:
            r = {"ok": False, "error": str(exc)}
        ok, err = bool(r.get("ok")), r.get("error")
        wall = time.perf_counter() - t0
        stats = await asyncio.gather(*(self._stats(n, plan, reset=False) for n in members))
        sent = sum(s.get("bytes_sent", 0) for s in stats)
        msgs = sum(s.get("messages_sent", 0) for s in stats)
        times = r.get("token_times_s") or []
        decode = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None
        return Generation(ok=ok, tokens=r.get("tokens", []),
                          ttft_s=times[0] if times else None,
                          ms_per_token=1e3 * decode if decode is not None else None,
                          wall_s=wall, bytes_sent=sent, messages=msgs, error=err,
                          token_times_s=times,
                          node_stats={n: {k: s[k] for k in ("peak_weight_bytes", "rss_bytes",
                                                            "resident_bytes", "streamed")
                                          if k in s} for n, s in zip(members, stats,
                                                                     strict=True)})

    async def _stats(self, node: str, plan: str, reset: bool) -> dict[str, Any]:
        try:
            # short: after a failure a member may be dead, and its counters are lost anyway
            return await self.call(node, {"op": "stats", "plan": plan, "reset": reset},
                                   timeout=5.0)
        except ClusterError:
            return {}


def _load_summary(reply: dict[str, Any]) -> dict[str, Any]:
    """What a node's load reply says about memory: resident bytes, load time, and for a node
    that offloads (--llm-offload) its resident and streamed layer counts."""
    keys = ("resident_bytes", "load_s", "weights_bytes", "resident_layers", "streamed_layers",
            "window", "prefetch")
    return {k: reply[k] for k in keys if k in reply}
