"""The discrete-event transport: the same protocol code (protocol.py) over a modelled network,
thousands of decisions per second of CPU, deterministic under a seed.

The network model, per profile (every value is ours, stated as assumed in docs/consensus.md):

* one-way delay = base + uniform jitter, per message;
* loss: a message is lost with probability `loss` per transmission and resent after the
  sender's retransmission timeout (TCP's minimum RTO on Linux is 200 ms, doubling), as the
  live run's TCP does: loss costs time, never a message;
* `shared`: one radio medium for everybody (ad-hoc Wi-Fi): a transmission waits for the
  medium and occupies it for its airtime (a data frame and the TCP ack frame, each with
  802.11a's fixed per-frame overhead, plus the bytes at the data rate), so protocols that
  send more messages wait longer - what message complexity costs on a radio;
* otherwise links are independent (a wired LAN, a satellite hop).

Signatures are modelled, not computed: a signature is (node, digest of the payload) and only
the node's own code makes its own (Byzantine code never forges another node's), which is
the assumption unforgeable signatures give the protocols.
"""

from __future__ import annotations

import heapq
import itertools
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.consensus.behaviours import Byzantine, wrong_answer
from controllers.consensus.protocol import CLIENT, Client, Config, Msg, Node, digest

CHOICES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class LinkProfile:
    name: str
    delay_ms: float  # one way
    jitter_ms: float
    loss: float  # per transmission, after the link layer's own retries
    rate_mbps: float
    shared: bool = False  # one medium for all (Wi-Fi ad hoc)
    frame_overhead_us: float = 0.0  # per frame on a shared medium (preamble, IFS, backoff)
    rto_ms: float = 200.0


PROFILES = {
    "lan": LinkProfile("lan", 0.1, 0.05, 0.0, 1000.0),
    # 802.11a at 24 Mbit/s: DIFS 34 + mean backoff 67.5 + preamble 20 + SIFS 16 + ACK 44 us
    "wifi": LinkProfile("wifi", 0.5, 0.5, 0.03, 24.0, shared=True, frame_overhead_us=181.5),
    # a LEO bent pipe: ~550 km up and down, plus processing; per-pair, not shared
    "leo": LinkProfile("leo", 12.0, 4.0, 0.01, 50.0),
}


class Network:
    def __init__(self, profile: LinkProfile, rng: random.Random) -> None:
        self.p, self.rng = profile, rng
        self.medium_free = 0.0
        self.messages = 0
        self.bytes = 0
        self.retransmissions = 0

    def transit(self, now: float, size: int) -> float:
        """Seconds from handing a message to TCP until it is delivered (losses included)."""
        p, t, rto = self.p, now, p_rto(self.p)
        self.messages += 1
        self.bytes += size
        first = True
        while True:
            if p.shared:
                # the first attempt queues for the medium; a retransmission, an RTO later,
                # finds it free again (its airtime is small beside the timeout)
                air = (2 * p.frame_overhead_us + size * 8 / p.rate_mbps) / 1e6
                start = max(t, self.medium_free) if first else t
                if first:
                    self.medium_free = start + air
                sent = start + air
                first = False
            else:
                sent = t + size * 8 / (p.rate_mbps * 1e6)
            if self.rng.random() >= p.loss:
                return sent + (p.delay_ms + self.rng.uniform(0, p.jitter_ms)) / 1000 - now
            self.retransmissions += 1
            t = sent + rto
            rto *= 2


def p_rto(p: LinkProfile) -> float:
    return max(p.rto_ms, 2 * (2 * p.delay_ms + p.jitter_ms)) / 1000


class SimContext:
    def __init__(self, sim: Simulation, name: str) -> None:
        self.sim, self.name = sim, name

    def now(self) -> float:
        return self.sim.t

    def send(self, dst: str, msg: Msg) -> None:
        self.sim.deliver(self.name, dst, msg)

    def set_timer(self, delay: float, tag: str) -> None:
        self.sim.at(self.sim.t + delay, lambda: self.sim.timer(self.name, tag))

    def sign(self, payload: Any) -> Any:
        return (self.name, digest(payload))

    def verify(self, node: str, payload: Any, sig: Any) -> bool:
        return verify(node, payload, sig)


def verify(node: str, payload: Any, sig: Any) -> bool:
    return isinstance(sig, list | tuple) and len(sig) == 2 and tuple(sig) == (
        node, digest(payload))


@dataclass
class Outcome:
    """One decision as the client and the honest nodes saw it."""

    seq: int
    accepted: str | None
    key: str | None
    latency_s: float | None
    honest_values: set[str]
    views: int
    messages: int
    bytes: int

    @property
    def conflicting(self) -> bool:
        return len(self.honest_values) > 1


@dataclass
class Simulation:
    cfg: Config
    profile: LinkProfile
    behaviours: dict[str, str] = field(default_factory=dict)  # node -> behaviour (faulty)
    accuracy: dict[str, float] = field(default_factory=dict)  # honest node -> P(correct)
    answer_s: dict[str, float] = field(default_factory=dict)  # node -> LLM time
    seed: int = 0
    answer_jitter_s: float = 0.02  # answers finish at slightly different times per query
    late_s: float = 3.0
    timeout_s: float = 60.0  # the client gives up on a query after this

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.net = Network(self.profile, random.Random(self.seed + 1))
        self.t = 0.0
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = itertools.count()
        colluders = frozenset(n for n, b in self.behaviours.items() if b == "collude")
        self.nodes: dict[str, Node] = {}
        for i, n in enumerate(self.cfg.nodes):
            ctx = SimContext(self, n)
            b = self.behaviours.get(n, "honest")
            self.nodes[n] = (Node(self.cfg, ctx) if b == "honest" else
                             Byzantine(self.cfg, ctx, b, colluders, self.late_s, self.seed + i))
        self.client = Client(self.cfg, verify)
        self.fixed: dict[str, tuple[str, float]] = {}  # node -> (answer, answer time): replay
        self.accepted_at: dict[int, float] = {}

    # ---- the event engine ---------------------------------------------------------------------
    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (t, next(self.counter), fn))

    def deliver(self, src: str, dst: str, msg: Msg) -> None:
        arrive = self.t + self.net.transit(self.t, msg.size())
        if dst == CLIENT:
            self.at(arrive, lambda: self._client_reply(msg))
        elif dst in self.nodes:
            self.at(arrive, lambda: self.nodes[dst].on_message(msg))

    def timer(self, node: str, tag: str) -> None:
        self.nodes[node].on_timer(tag)

    def _client_reply(self, msg: Msg) -> None:
        if self.client.on_reply(msg) is not None:
            self.accepted_at[msg.seq] = self.t
        elif self.cfg.protocol == "majority" and \
                len(self.client.replies.get(msg.seq, {})) == len(self.cfg.nodes) - self.cfg.f:
            # n - f answers are in: the rest get `view_timeout` more, then the plurality
            self.at(self.t + self.cfg.view_timeout, lambda: self._close(msg.seq))

    def run_until(self, done: Callable[[], bool], limit: float) -> None:
        while self.queue and not done():
            t, _, fn = heapq.heappop(self.queue)
            if t > limit:
                heapq.heappush(self.queue, (t, next(self.counter), fn))
                return
            self.t = t
            fn()

    # ---- queries ------------------------------------------------------------------------------
    def answer(self, node: str, seq: int, key: str) -> str:
        n = self.nodes[node]
        right = self.rng.random() < self.accuracy.get(node, 0.6)
        honest = key if right else wrong_answer(seq, key, salt=self.rng.randrange(3))
        return n.answer_for(seq, honest, key) if isinstance(n, Byzantine) else honest

    def query(self, seq: int, key: str, previous_key: str | None) -> Outcome:
        """Submit one query (the client publishes the previous one's key with it) and run
        until the client accepts an answer or gives up."""
        t0 = self.t
        before = (self.net.messages, self.net.bytes)
        for name in self.cfg.nodes:
            arrive = self.t + self.net.transit(self.t, 200)
            if name in self.fixed:  # a live run's own answer and LLM time, replayed
                ans, delay = self.fixed[name]
                node = self.nodes[name]
                if isinstance(node, Byzantine):
                    ans = node.answer_for(seq, ans, key)
            else:
                ans = self.answer(name, seq, key)
                delay = self.answer_s.get(name, 0.0) * self.rng.uniform(0.8, 1.2) + \
                    self.rng.uniform(0.0, self.answer_jitter_s)
            self.at(arrive + delay, lambda n=name, a=ans: self.nodes[n].on_answer(
                seq, a, previous_key))
        self.run_until(lambda: seq in self.client.accepted, t0 + self.timeout_s)
        honest = self.honest_values(seq)
        views = max((d.view for n in self.cfg.nodes if (d := self.nodes[n].decisions.get(seq))
                     is not None), default=0)
        accepted = self.client.accepted.get(seq)
        lat = self.accepted_at[seq] - t0 if seq in self.accepted_at else None
        if accepted is None:
            self.t = max(self.t, t0 + self.timeout_s)
        return Outcome(seq, accepted, key, lat, honest, views,
                       self.net.messages - before[0], self.net.bytes - before[1])

    def honest_values(self, seq: int) -> set[str]:
        """What the honest nodes decided for `seq`: more than one value is a conflict."""
        return {self.nodes[n].decisions[seq].value for n in self.cfg.nodes
                if n not in self.behaviours and seq in self.nodes[n].decisions}

    def _close(self, seq: int) -> None:
        if self.client.close(seq) is not None:
            self.accepted_at[seq] = self.t

    def settle(self, seconds: float = 10.0) -> None:
        """Let in-flight messages land (late nodes, commits still travelling)."""
        self.run_until(lambda: False, self.t + seconds)


def run(cfg: Config, profile: LinkProfile, keys: Sequence[str], *,
        behaviours: dict[str, str] | None = None, accuracy: dict[str, float] | None = None,
        answer_s: dict[str, float] | None = None, seed: int = 0) -> list[Outcome]:
    """`len(keys)` queries one after another (closed loop); returns one Outcome each."""
    sim = Simulation(cfg, profile, behaviours or {}, accuracy or {}, answer_s or {}, seed)
    out = []
    prev: str | None = None
    for i, key in enumerate(keys, 1):
        out.append(sim.query(i, key, prev))
        prev = key
    sim.settle()
    # decisions that landed after the client moved on still count for safety
    for o in out:
        o.honest_values = sim.honest_values(o.seq)
    return out


def outcome_stats(out: Sequence[Outcome], warmup: int = 0) -> dict[str, float]:
    """What a run measured, the queries after `warmup` scored (conflicts over all of them):
    the one summary the evaluation and the benchmark both report from."""
    scored = out[warmup:]
    lat = sorted(o.latency_s for o in scored if o.latency_s is not None)
    nan = float("nan")
    return {"latency_ms": 1000 * statistics.median(lat) if lat else nan,
            "latency_p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))] if lat else nan,
            "decisions_per_s": len(lat) / sum(lat) if lat else 0.0,
            "messages": statistics.mean(o.messages for o in scored),
            "kbytes": statistics.mean(o.bytes for o in scored) / 1000,
            "accuracy": sum(o.accepted == o.key for o in scored) / len(scored),
            "undecided": float(sum(o.accepted is None for o in scored)),
            "conflicting": float(sum(o.conflicting for o in out)),
            "views": statistics.mean(o.views for o in scored)}
