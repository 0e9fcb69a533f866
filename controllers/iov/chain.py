"""One blockchain node of the IoV workload, as a message-driven state machine: epochs of
sharding, the shard's broadcast structure, consensus and the node's own transactions.

Why one more state machine on top of the protocols: the same object runs in the simulator
(controllers.iov.sim, which delivers its messages over the SUMO drive) and in a real process
in a vehicle's namespace (controllers.iov.live, over UDP through the emulated radio links),
so the sim-to-emulation gap measures the network, not two implementations.

Epochs (DRDST's dynamic sharding): every node beacons its position and velocity (a CAM, as
ITS-G5 vehicles do) to the coordinator - the first RSU, fixed and on the backbone - every
`beacon_s`.  Every `epoch_s` the coordinator takes the nodes it heard from recently, updates
their trust (a beacon heard in the epoch is good behaviour, a member gone silent is bad),
shards them with the method's algorithm (GSA, its objective alone, random, static), builds
each shard's broadcast tree (S-MLBT, controllers.iov.broadcast) and announces the epoch to
everyone.  Nodes left out (not heard from: off the map, out of reach) idle until an epoch
includes them again.

Broadcast inside a shard steers the DAG's gossip-about-gossip: `tree` syncs with the node's
tree neighbours (the paper's tree broadcasting of events), `gossip` with random peers
(Swirlds), `flat` with every member in turn.  PBFT broadcasts all-to-all by design (`flat`).

Transactions: a node in a shard submits Poisson arrivals at `tx_rate` per second; a fraction
`cross_fraction` also touch another shard (cross-shard).  The submitter logs submit, commit
or failure, which the summary turns into latency, throughput and success rate.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from controllers.iov.dag import DagNode
from controllers.iov.messages import Send, Tx
from controllers.iov.pbft import PbftNode

if TYPE_CHECKING:  # only the coordinator shards: vehicles' processes skip scipy and networkx
    from controllers.iov import sharding

Position = tuple[tuple[float, float], tuple[float, float]]  # (x, y), (vx, vy)
Locator = Callable[[float], Position | None]  # now_ms -> where am I (None: unknown)
LatencyFn = Callable[[str, str], float]
BEACON_BYTES = 96  # a CAM-sized beacon: id, position, speed, heading, kind


@dataclass(frozen=True)
class Method:
    """A combination of the three parts DRDST replaces, so each part can be compared alone."""

    name: str
    sharding: str  # gsa | objective | random | static
    broadcast: str  # tree | gossip | flat
    consensus: str  # dag | pbft
    about: str = ""


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("drdst", "gsa", "tree", "dag", "DRDST: GSA sharding, S-MLBT tree, hashgraph DAG"),
    Method("objective-dag", "objective", "tree", "dag",
           "ablation: DRDST with GSA's objective solved by local search, no GA"),
    Method("random-dag", "random", "gossip", "dag",
           "hashgraph (Swirlds gossip) on random shards"),
    Method("static-dag", "static", "gossip", "dag",
           "hashgraph on static (hash) shards, no adaptation to mobility"),
    Method("gsa-pbft", "gsa", "flat", "pbft", "PBFT inside GSA's shards, 2PC across"),
    Method("static-pbft", "static", "flat", "pbft",
           "classic sharded PBFT (static shards, 2PC across): Elastico/OmniLedger style"),
    Method("random-pbft", "random", "flat", "pbft", "PBFT on random shards, 2PC across"),
)}


class ChainConfig(BaseModel):
    """Protocol and load parameters (the experiment file's `chain` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epoch_s: float = Field(default=20.0, ge=2.0, le=3600.0, description="resharding period")
    first_epoch_s: float = Field(default=4.0, ge=0.5, description="first sharding after start")
    beacon_s: float = Field(default=2.0, ge=0.1, le=60.0, description="position beacons")
    tick_ms: float = Field(default=50.0, ge=5.0, le=1000.0, description="protocol tick")
    tx_rate: float = Field(default=0.5, ge=0.0, le=100.0, description="tx/s per node")
    cross_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    tx_bytes: int = Field(default=250, ge=16, le=60_000)
    tx_timeout_ms: float = Field(default=10_000.0, ge=100.0)
    shards: int | None = Field(default=None, ge=1, description="none: one per 9 nodes, at "
                               "most one per RSU")
    radio_range_m: float = Field(default=300.0, gt=0.0)
    ga_population: int = Field(default=30, ge=4, le=1000)
    ga_generations: int = Field(default=60, ge=1, le=10_000)
    seed: int = 1


def auto_shards(n_nodes: int, n_rsu: int, wanted: int | None) -> int:
    k = wanted if wanted is not None else max(1, n_nodes // 9)
    return max(1, min(k, n_rsu if n_rsu else k, n_nodes))


def shard_nodes(method: Method, infos: list[sharding.NodeInfo], k: int, latency: LatencyFn,
                rng: np.random.Generator, cfg: ChainConfig) -> sharding.ShardingResult:
    """The method's sharding of `infos` into k shards."""
    from controllers.iov import sharding

    problem = sharding.ShardingProblem(infos, k, latency, range_m=cfg.radio_range_m)
    if method.sharding == "gsa":
        return sharding.gsa(problem, rng, population=cfg.ga_population,
                            generations=cfg.ga_generations)
    if method.sharding == "objective":
        return sharding.objective_only(problem, rng, population=cfg.ga_population,
                                       generations=cfg.ga_generations)
    if method.sharding == "random":
        return sharding.random_sharding(problem, rng)
    return sharding.static_sharding(problem)


def shard_trees(method: Method, members: dict[int, list[str]], stab: dict[str, float],
                latency: LatencyFn) -> dict[int, dict[str, list[str]]]:
    """S-MLBT per shard, rooted at its most stable member (tree broadcast only)."""
    from controllers.iov import broadcast

    if method.broadcast != "tree":
        return {}
    out = {}
    for s, names in members.items():
        root = max(names, key=lambda n: (stab.get(n, 0.0), n))
        out[s] = broadcast.build_tree(root, names, latency)
    return out


@dataclass
class Coordinator:
    """The epoch maker (on the first RSU): beacons in, shards and trees out."""

    method: Method
    cfg: ChainConfig
    rsus: list[str]
    latency_model: Callable[[dict[str, Position], dict[str, str]], LatencyFn]
    heard: dict[str, tuple[float, Position, str]] = field(default_factory=dict)
    trust: dict[str, float] = field(default_factory=dict)
    epoch: int = 0
    last_members: set[str] = field(default_factory=set)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.cfg.seed)

    def beacon(self, now_ms: float, src: str, body: dict[str, Any]) -> None:
        self.heard[src] = (now_ms, ((body["x"], body["y"]), (body["vx"], body["vy"])),
                           body["kind"])

    def next_epoch(self, now_ms: float) -> dict[str, Any] | None:
        from controllers.iov import sharding

        fresh = {n: v for n, v in self.heard.items()
                 if now_ms - v[0] <= 2.5 * self.cfg.beacon_s * 1000}
        window_start = now_ms - self.cfg.epoch_s * 1000
        for n in self.last_members | set(fresh):
            seen = n in self.heard and self.heard[n][0] >= window_start
            self.trust[n] = sharding.update_trust(self.trust.get(n, 0.8), seen)
        if len(fresh) < 2:
            return None
        names = sorted(fresh)
        pos = {n: fresh[n][1] for n in names}
        kinds = {n: fresh[n][2] for n in names}
        infos = [sharding.NodeInfo(n, kinds[n], pos[n][0], pos[n][1], self.trust.get(n, 0.8))
                 for n in names]
        latency = self.latency_model(pos, kinds)
        k = auto_shards(len(names), sum(kinds[n] == "rsu" for n in names), self.cfg.shards)
        t0 = time.process_time()
        result = shard_nodes(self.method, infos, k, latency, self.rng, self.cfg)
        members = {s: sorted(v) for s, v in enumerate(result.shards()) if v}
        members = {i: v for i, v in enumerate(members.values())}  # no empty shard ids
        stab = sharding.stability(infos, range_m=self.cfg.radio_range_m)
        trees = shard_trees(self.method, members, stab, latency)
        cpu_ms = (time.process_time() - t0) * 1e3
        self.epoch += 1
        left = sorted(self.last_members - set(names))
        self.last_members = set(names)
        rec = {"e": self.epoch, "t_ms": now_ms, "members": members, "trees": trees,
               "fitness": result.fitness, "feasible": result.feasible,
               "shard_cpu_ms": round(cpu_ms, 1), "left": left}
        self.rounds.append({k2: v for k2, v in rec.items() if k2 != "trees"})
        return rec


def geo_latency_model(rsu_pos: dict[str, tuple[float, float]], range_m: float = 450.0,
                      v2v_range_m: float = 300.0
                      ) -> Callable[[dict[str, Position], dict[str, str]], LatencyFn]:
    """The coordinator's latency estimate from beaconed positions: a vehicle reaches the
    backbone through its nearest RSU in range (~0.5 ms a wireless hop for a 300-byte message
    at the 802.11p rates, plus the backbone), else only vehicles within V2V range directly
    (~1 ms at 6 Mbit/s); out of reach: 1 s (a soft infinity the objective can still rank)."""
    rsus = sorted(rsu_pos)
    rp = np.array([rsu_pos[r] for r in rsus]) if rsus else np.zeros((0, 2))

    def model(pos: dict[str, Position], kinds: dict[str, str]) -> LatencyFn:
        near: dict[str, str | None] = {}
        for n, ((x, y), _v) in pos.items():
            if kinds[n] == "rsu":
                near[n] = n
                continue
            if len(rp) == 0:
                near[n] = None
                continue
            d = np.hypot(rp[:, 0] - x, rp[:, 1] - y)
            near[n] = rsus[int(np.argmin(d))] if d.min() <= range_m else None

        def lat(a: str, b: str) -> float:
            if a == b:
                return 0.0
            ra, rb = near.get(a), near.get(b)
            if ra is not None and rb is not None:
                return 0.5 * (kinds[a] != "rsu") + 0.5 * (kinds[b] != "rsu") + \
                    (0.05 if ra != rb else 0.0)
            (xa, ya), _ = pos[a]
            (xb, yb), _ = pos[b]
            return 1.0 if math.hypot(xa - xb, ya - yb) <= v2v_range_m else 1000.0

        return lat

    return model


class ChainNode:
    """Everything one node does; the runtime delivers messages and ticks and sends what the
    methods return.  `log` collects the records the summary reads."""

    def __init__(self, name: str, kind: str, method: Method, cfg: ChainConfig,
                 rsus: dict[str, tuple[float, float]], locate: Locator) -> None:
        self.name, self.kind, self.method, self.cfg = name, kind, method, cfg
        self.locate = locate
        self.coordinator_name = sorted(rsus)[0]
        self.coord = Coordinator(method, cfg, sorted(rsus), geo_latency_model(rsus)) \
            if name == self.coordinator_name else None
        self.rng = random.Random(f"{cfg.seed}-{name}")
        self.cons: DagNode | PbftNode | None = None
        self.epoch = 0
        self.shard: int | None = None
        self.tree: dict[str, list[str]] = {}
        self.members: dict[int, list[str]] = {}
        self.seq = 0
        self.next_beacon = self.rng.uniform(0.0, cfg.beacon_s * 1000)
        self.next_epoch = cfg.first_epoch_s * 1000
        self.mine: dict[str, float] = {}  # my tx id -> submit time
        self.log: list[dict[str, Any]] = []
        self._rr = 0
        self._last_sync: dict[str, float] = {}

    # ---- runtime entry points ------------------------------------------------------------
    def on_tick(self, now: float) -> list[Send]:
        out: list[Send] = []
        if now >= self.next_beacon:
            self.next_beacon = now + self.cfg.beacon_s * 1000
            out += self._beacon(now)
        if self.coord is not None and now >= self.next_epoch:
            self.next_epoch = now + self.cfg.epoch_s * 1000
            out += self._new_epoch(now)
        if self.cons is not None:
            out += self._transactions(now)
            out += self.cons.on_tick(now)
            self._harvest(now)
        return out

    def on_message(self, now: float, src: str, kind: str, body: dict[str, Any]) -> list[Send]:
        if kind == "beacon":
            if self.coord is not None:
                self.coord.beacon(now, src, body)
            return []
        if kind == "epoch":
            return self._join(now, body)
        if self.cons is None:
            return []
        out = self.cons.on_message(now, src, kind, body)
        self._harvest(now)
        return out

    # ---- epochs ------------------------------------------------------------------------------
    def _beacon(self, now: float) -> list[Send]:
        where = self.locate(now)
        if where is None:
            return []
        (x, y), (vx, vy) = where
        body = {"x": round(x, 1), "y": round(y, 1), "vx": round(vx, 2), "vy": round(vy, 2),
                "kind": self.kind}
        if self.coord is not None:
            self.coord.beacon(now, self.name, body)
            return []
        return [Send(self.coordinator_name, "beacon", body, BEACON_BYTES)]

    def _new_epoch(self, now: float) -> list[Send]:
        assert self.coord is not None
        rec = self.coord.next_epoch(now)
        if rec is None:
            return []
        self.log.append({"ev": "round", **{k: v for k, v in rec.items() if k != "trees"}})
        body = {"e": rec["e"], "members": {str(k): v for k, v in rec["members"].items()},
                "trees": {str(k): v for k, v in rec["trees"].items()}}
        size = 40 + sum(12 * len(v) for v in rec["members"].values()) + \
            sum(12 * len(t) for t in rec["trees"].values())
        everyone = sorted({n for v in rec["members"].values() for n in v}
                          | set(self.coord.heard))
        out = [Send(n, "epoch", body, size) for n in everyone if n != self.name]
        return out + self._join(now, body)

    def _join(self, now: float, body: dict[str, Any]) -> list[Send]:
        e = int(body["e"])
        if e <= self.epoch:
            return []
        self.epoch = e
        members = {int(k): list(v) for k, v in body["members"].items()}
        mine = [s for s, v in members.items() if self.name in v]
        self.members = members
        old = self.cons
        if not mine:
            self.cons, self.shard = None, None
            self.log.append({"ev": "epoch", "e": e, "t_ms": now, "shard": None})
            return []
        self.shard = mine[0]
        self.tree = {k: list(v) for k, v in body.get("trees", {}).get(str(self.shard),
                                                                      {}).items()}
        self.log.append({"ev": "epoch", "e": e, "t_ms": now, "shard": self.shard,
                         "size": len(members[self.shard])})
        if old is not None and type(old) is self._cons_type():
            return old.reshard(now, members, self.shard, epoch=e)
        self.cons = self._make(members)
        return self.cons.reshard(now, members, self.shard, epoch=e)

    def _cons_type(self) -> type:
        return DagNode if self.method.consensus == "dag" else PbftNode

    def _make(self, members: dict[int, list[str]]) -> DagNode | PbftNode:
        assert self.shard is not None
        common = {"tick_ms": self.cfg.tick_ms, "timeout_ms": self.cfg.tx_timeout_ms,
                  "seed": self.cfg.seed}
        if self.method.consensus == "pbft":
            return PbftNode(self.name, self.shard, members, **common)
        return DagNode(self.name, self.shard, members, peer_picker=self._pick, **common)

    def _tree_neighbours(self) -> list[str]:
        near = list(self.tree.get(self.name, []))
        return near + [p for p, kids in self.tree.items() if self.name in kids]

    def _pick(self, live: list[str]) -> str:
        """Whom the DAG syncs with next, by the method's broadcast structure."""
        if self.method.broadcast == "tree" and self.tree:
            cands = [p for p in self._tree_neighbours() if p in live]
            if cands:
                pick = min(cands, key=lambda p: (self._last_sync.get(p, -1.0), p))
                self._last_sync[pick] = float(self._rr)
                self._rr += 1
                return pick
        if self.method.broadcast == "flat":
            self._rr += 1
            return sorted(live)[self._rr % len(live)]
        return self.rng.choice(live)

    # ---- transactions ------------------------------------------------------------------------
    def _transactions(self, now: float) -> list[Send]:
        assert self.cons is not None and self.shard is not None
        lam = self.cfg.tx_rate * self.cfg.tick_ms / 1000.0
        n = _poisson(self.rng, lam)
        out: list[Send] = []
        for _ in range(n):
            self.seq += 1
            shards: tuple[int, ...] = (self.shard,)
            others = [s for s in self.members if s != self.shard]
            if others and self.rng.random() < self.cfg.cross_fraction:
                shards = (self.shard, self.rng.choice(others))
            tx = Tx(f"{self.name}-{self.seq}", shards, now, self.cfg.tx_bytes)
            self.mine[tx.id] = now
            self.log.append({"ev": "submit", "tx": tx.id, "t_ms": now, "shards": list(shards),
                             "e": self.epoch})
            out += self.cons.submit(now, tx)
        return out

    def _harvest(self, now: float) -> None:
        assert self.cons is not None
        for c in self.cons.drain_commits():
            if c.tx_id in self.mine:
                t0 = self.mine.pop(c.tx_id)
                self.log.append({"ev": "commit", "tx": c.tx_id, "t_ms": c.at_ms,
                                 "latency_ms": round(c.at_ms - t0, 2), "e": self.epoch})
        for tx_id in self.cons.failed():
            if tx_id in self.mine:
                self.mine.pop(tx_id)
                self.log.append({"ev": "failed", "tx": tx_id, "t_ms": now, "e": self.epoch})

    def drain_log(self) -> list[dict[str, Any]]:
        out, self.log = self.log, []
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: lam is small (arrivals per tick)."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
