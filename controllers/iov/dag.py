"""DRDST's DAG consensus: an improved hashgraph inside each shard, certificates across shards.

The paper (Chen et al., "DRDST: Low-latency DAG Consensus through Robust Dynamic Sharding and
Tree-broadcasting for IoV", arXiv 2412.04742) shards the roadside units / vehicles (its GSA
sharding, elsewhere in this package), spreads data inside a shard over a minimum-latency
broadcast tree (S-MLBT, `broadcast.py`) and reaches agreement with "a DAG consensus scheme
based on an improved hashgraph protocol, which can efficiently handle cross-shard
transactions" (abstract and its DAG-consensus section).  Only the abstract and a secondary
summary of the paper could be read while writing this, so the protocol below is the Swirlds
hashgraph (Baird, SWIRLDS-TR-2016-01) wherever the paper's text is not available, and every
such choice is listed under "Assumed:".

Inside a shard (class `Hashgraph`, class `DagNode`):

* Gossip about gossip.  Every tick a node pulls from one peer of its shard (a random peer, or
  the one the node layer's `peer_picker` names, e.g. its S-MLBT neighbour): the sync request
  carries only its known-event count per creator, the peer answers with exactly the events
  it lacks, and the puller records the sync as a new event (self-parent: its last event,
  other-parent: the peer's last event, payload: its pending transactions and certificates).
* Events are hashed with SHA-256 over a canonical JSON form; parents are referenced by hash.
* Rounds, witnesses, strongly-seeing, fame by virtual voting (with a coin round every
  `coin_every` rounds), round received and the consensus timestamp (median of the times the
  famous witnesses' creators first learned of the event) follow Swirlds.  The total order is
  (round received, consensus timestamp, event hash); transactions are ordered as they sit in
  their events.
* Cost is kept incremental: each event stores the highest sequence number it has seen of
  every creator (`la`, a numpy row), so "x sees y" is one comparison and "x strongly sees y"
  is a vectorised count over x's latest ancestor per creator; votes are computed once per
  (voter, candidate) pair when either is inserted; rounds older than `keep_rounds` behind the
  last decided one are pruned (each creator's newest event is always kept).

Across shards (one shard's DAG certifies, the others order):

1. The origin shard (`tx.shards[0]`) orders the transaction in its DAG.
2. Each node that orders it builds a certificate: the tx, the hash of the event that carried
   it, and as signers the members whose famous witness of the receiving round, or whose
   witness of the next round, descends from that event ("signed by quorum": a real system
   would put signatures here; the list of names stands for them).  The first f+1 members of
   the shard send it to f+1 members of every other involved shard, so one live sender and
   one live receiver always exist while at most f of each shard are gone.
3. A receiving node checks the certificate (at least a supermajority of that shard's members
   sign it) and puts it into its own next event; when the certificate is ordered there, that
   shard has ordered the transaction: it takes its position in that shard's order and the
   shard certifies it in turn, back to the origin and to the other involved shards.
4. A node commits a cross-shard tx once its own shard has ordered it and certificates of all
   other involved shards have been ordered in its own DAG, so every member of a shard learns
   of completion at the same point of the shard's order.  `Commit.order` is the position at
   which its shard ordered the tx (step 1 or 3).  Unanswered certificates are re-sent every
   `xs_retry_ms`; a node that receives a certificate for a tx it has already certified
   answers with its own (the sender evidently lacks it).

Failure: a node reports through `failed()` every transaction it knows (submitted to it, or a
cross-shard one its shard ordered) that has not committed by `created_ms + timeout_ms`.

Assumed:
* Crash faults only (vehicles leave, messages to them are lost): no forks, no Byzantine
  creators, so "sees" needs no fork check and certificates carry names, not signatures.
  Fame and strongly-seeing use the shard's member count of the epoch, so a shard progresses
  while fewer than a third of its members are gone.
* The paper's tree broadcasting is the node layer's business: it can steer gossip along the
  S-MLBT tree through `peer_picker`; without one, peers are drawn at random (Swirlds).
* Unresponsive peers: a sync unanswered after `miss_ticks` ticks is a miss; after
  `max_misses` consecutive misses the peer is skipped, and probed again every
  `probe_every_ticks` ticks in case it comes back.
* A round is decided when all of its known witnesses have their fame decided (as common
  hashgraph implementations do); a witness that arrives for an already ordered round is not
  famous.  A node that falls more than `keep_rounds` rounds behind may find the parents of
  old events pruned and stop accepting them: it is treated as gone until the next epoch.
* Cross-shard: the certificate scheme above (origin orders, certificate by quorum, the other
  shards order the certificate, commit when all have ordered) is this module's design, as
  the paper's cross-shard procedure could not be read.  A certificate's signers must number
  at least a supermajority of the certifying shard's members.  There is no abort: a tx whose
  other shard never orders it stays pending and is reported by `failed()`.
* `failed()` is a local verdict (a client-side timeout); a node that has reported a tx as
  failed reports no later commit for it.  The node layer de-duplicates reports across nodes.
* Resharding starts a fresh DAG per epoch (messages carry the epoch and are dropped across
  epochs); transactions a node had submitted but whose origin shard had not ordered them yet
  are resubmitted in the new epoch; cross-shard transactions in flight are left to time out.
* A transaction submitted at a node outside its origin shard is forwarded to one member of
  the origin shard.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.iov.messages import (
    AgedSet,
    Commit,
    Outcomes,
    Send,
    Tx,
    max_faulty,
    stable_seed,
    supermajority,
    tx_from_wire,
    tx_to_wire,
)

EVENT_HEADER_BYTES = 120  # creator, seq, two parent hashes, timestamp, own hash, framing
SYNC_HEADER_BYTES = 48
COUNT_BYTES = 4
CERT_HEADER_BYTES = 96  # shard, epoch, event hash, framing
NAME_BYTES = 12  # one signer in a certificate


def item_size(item: dict[str, Any]) -> int:
    """Wire bytes of one event payload item (a transaction or a cross-shard certificate)."""
    size = int(item["tx"]["b"])
    if item["k"] == "cert":
        size += CERT_HEADER_BYTES + NAME_BYTES * len(item["signers"])
    return size


def item_key(item: dict[str, Any]) -> tuple[str, str, int]:
    """What makes two payload items duplicates (the same tx, or the same shard's certificate)."""
    return (item["k"], item["tx"]["id"], int(item.get("from", -1)))


@dataclass(slots=True, eq=False)
class Event:
    """One hashgraph event plus the consensus data this node derives from it."""

    creator: int
    seq: int
    sp: str  # self-parent hash ("" for a creator's first event)
    op: str  # other-parent hash ("" if none)
    ts: float
    items: list[dict[str, Any]]
    hash: str
    la: np.ndarray  # la[c]: highest seq of creator c among this event's ancestors (-1 none)
    eid: int
    lal: list[int] = field(default_factory=list)  # la as a list: scalar reads are cheaper
    round: int = 0
    witness: bool = False
    famous: bool | None = None
    ss_prev: list[Event] = field(default_factory=list)  # witnesses of round-1 strongly seen
    votes: dict[int, bool] = field(default_factory=dict)  # voter eid -> vote on my fame
    received: int = -1  # round received, -1 while not in consensus order
    cts: float = 0.0  # consensus timestamp

    def sees(self, other: Event) -> bool:
        return self.lal[other.creator] >= other.seq

    def wire(self) -> dict[str, Any]:
        return {"c": self.creator, "s": self.seq, "p": self.sp, "o": self.op, "t": self.ts,
                "x": self.items, "h": self.hash}

    def size(self) -> int:
        return EVENT_HEADER_BYTES + sum(item_size(i) for i in self.items)


def event_hash(tag: list[int], c: int, s: int, sp: str, op: str, ts: float,
               items: list[dict[str, Any]]) -> str:
    blob = json.dumps([tag, c, s, sp, op, ts, items], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class Hashgraph:
    """The Swirlds consensus over one shard's events; knows creators only by index."""

    def __init__(self, n: int, tag: list[int], *, coin_every: int = 10,
                 keep_rounds: int = 20) -> None:
        self.n = n
        self.tag = tag  # [shard, epoch]: keeps hashes of different DAGs apart
        self.smaj = supermajority(n)
        self.coin_every = coin_every
        self.keep_rounds = keep_rounds
        self.by_hash: dict[str, Event] = {}
        self.chain: list[dict[int, Event]] = [{} for _ in range(n)]
        self.head: list[Event | None] = [None] * n
        self.witnesses: dict[int, list[Event]] = {}
        self._wcache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.by_round: dict[int, list[Event]] = {}
        self.unordered: dict[int, Event] = {}
        self.next_round = 0  # lowest round not yet turned into consensus order
        self.max_round = 0
        self._eid = 0
        self._ordered: list[Event] = []

    # ---- queries -------------------------------------------------------------------------
    def counts(self) -> list[int]:
        return [h.seq + 1 if h is not None else 0 for h in self.head]

    def missing_for(self, counts: list[int], limit: int) -> list[Event]:
        """Events a peer with these per-creator counts lacks, parents first."""
        out: list[Event] = []
        for c in range(self.n):
            head = self.head[c]
            if head is None:
                continue
            have = counts[c] if c < len(counts) else 0
            for k in range(max(have, 0), head.seq + 1):
                ev = self.chain[c].get(k)
                if ev is not None:
                    out.append(ev)
        out.sort(key=lambda e: e.eid)  # insertion order is a topological order
        return out[:limit]

    def attesters(self, ev: Event) -> list[int]:
        """Creators vouching for an ordered event: famous witnesses of its round received and
        witnesses of the next round that descend from it."""
        who = {w.creator for w in self.witnesses.get(ev.received, []) if w.famous}
        who |= {w.creator for w in self.witnesses.get(ev.received + 1, []) if w.sees(ev)}
        return sorted(who)

    def pop_ordered(self) -> list[Event]:
        out, self._ordered = self._ordered, []
        return out

    # ---- insertion -----------------------------------------------------------------------
    def insert(self, c: int, s: int, sp: str, op: str, ts: float,
               items: list[dict[str, Any]], h: str | None = None) -> Event | None:
        """Add an event whose parents are known; None if it is a duplicate, out of sequence,
        has an unknown parent or a wrong hash (it will come again in a later sync)."""
        if not 0 <= c < self.n or (h is not None and h in self.by_hash):
            return None
        head = self.head[c]
        if s != (head.seq + 1 if head is not None else 0):
            return None
        if (head.hash if head is not None else "") != sp:
            return None
        opev = self.by_hash.get(op) if op else None
        if op and opev is None:
            return None
        real = event_hash(self.tag, c, s, sp, op, ts, items)
        if h is not None and h != real:
            return None
        la = head.la.copy() if head is not None else np.full(self.n, -1, dtype=np.int32)
        if opev is not None:
            np.maximum(la, opev.la, out=la)
        la[c] = s
        ev = Event(c, s, sp, op, ts, items, real, la, self._eid, la.tolist())
        self._eid += 1
        self._assign_round(ev, head, opev)
        self.by_hash[real] = ev
        self.chain[c][s] = ev
        self.head[c] = ev
        self.by_round.setdefault(ev.round, []).append(ev)
        self.unordered[ev.eid] = ev
        if ev.witness:
            self._add_witness(ev)
        return ev

    def _strongly_seen(self, ev: Event, r: int) -> list[Event]:
        """Witnesses of round r that ev strongly sees: reached through the latest ancestors of
        ev by a supermajority of creators."""
        wits = self.witnesses.get(r)
        if not wits:
            return []
        rows = []
        for c, k in enumerate(ev.lal):
            if k < 0:
                continue
            anc = ev if c == ev.creator else self.chain[c].get(k)
            if anc is not None:
                rows.append(anc.la)
        if len(rows) < self.smaj:
            return []
        cw, sw = self._witness_arrays(r)
        seen_by = (np.stack(rows)[:, cw] >= sw).sum(axis=0)
        return [wits[i] for i in np.nonzero(seen_by >= self.smaj)[0]]

    def _witness_arrays(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._wcache.get(r)
        if got is None:
            wits = self.witnesses[r]
            got = (np.array([w.creator for w in wits], dtype=np.int64),
                   np.array([w.seq for w in wits], dtype=np.int32))
            self._wcache[r] = got
        return got

    def _assign_round(self, ev: Event, sp: Event | None, op: Event | None) -> None:
        r = max(sp.round if sp is not None else 0, op.round if op is not None else 0)
        ss: list[Event] = []
        if (sp is not None or op is not None) and len(self.witnesses.get(r, ())) >= self.smaj:
            ss = self._strongly_seen(ev, r)
        if len(ss) >= self.smaj:
            ev.round, ev.ss_prev = r + 1, ss
        else:
            ev.round = r
        ev.witness = sp is None or ev.round > sp.round
        if ev.witness and ev.round == r and r > 0:  # a witness by its other-parent's round
            ev.ss_prev = self._strongly_seen(ev, r - 1)
        self.max_round = max(self.max_round, ev.round)

    def _add_witness(self, y: Event) -> None:
        if y.round < self.next_round:  # late witness of a round already in consensus order
            y.famous = False
        self.witnesses.setdefault(y.round, []).append(y)
        self._wcache.pop(y.round, None)
        for r in range(self.next_round, y.round):  # y votes on older undecided witnesses
            for x in self.witnesses.get(r, []):
                if x.famous is None:
                    self._vote(y, x)
        if y.famous is None:  # a late y: the later witnesses already known vote on it
            for r in range(y.round + 1, self.max_round + 1):
                for w in self.witnesses.get(r, []):
                    if y.famous is None:
                        self._vote(w, y)
        self._advance()

    def _vote(self, y: Event, x: Event) -> None:
        """Witness y's virtual vote on witness x's fame (Swirlds, with coin rounds)."""
        d = y.round - x.round
        if d == 1:
            x.votes[y.eid] = y.sees(x)
            return
        yes = sum(1 for w in y.ss_prev if x.votes.get(w.eid, False))
        no = len(y.ss_prev) - yes
        v, t = yes >= no, max(yes, no)
        if d % self.coin_every:
            if t >= self.smaj:
                x.famous = v
                return
        elif t < self.smaj:
            v = bool(int(y.hash[32], 16) & 1)  # a bit from the middle of y's hash
        x.votes[y.eid] = v

    # ---- consensus order -----------------------------------------------------------------
    def _advance(self) -> None:
        while True:
            r = self.next_round
            wits = self.witnesses.get(r)
            if not wits or any(w.famous is None for w in wits):
                return
            famous = [w for w in wits if w.famous]
            if famous:
                self._receive(r, famous)
            self.next_round += 1
            self._prune()

    def _receive(self, r: int, famous: list[Event]) -> None:
        got: list[tuple[float, str, Event]] = []
        seers = [(w.lal, w.creator) for w in famous]
        for x in list(self.unordered.values()):
            c, s = x.creator, x.seq
            if x.round <= r and all(lal[c] >= s for lal, _ in seers):
                times = sorted(self._first_seen_ts(w, x) for w in famous)
                x.received, x.cts = r, times[len(times) // 2]
                got.append((x.cts, x.hash, x))
        got.sort(key=lambda t: (t[0], t[1]))
        for _, _, x in got:
            del self.unordered[x.eid]
            self._ordered.append(x)

    def _first_seen_ts(self, w: Event, x: Event) -> float:
        """Timestamp of the earliest self-ancestor of w that sees x (binary search on w's
        creator chain: once a creator has seen x all its later events see x)."""
        if w.creator == x.creator:
            return x.ts
        # x's own ancestor by w's creator cannot see x: the search starts after it
        chain, lo, hi = self.chain[w.creator], x.lal[w.creator] + 1, w.seq
        while lo < hi:
            mid = (lo + hi) // 2
            e = chain.get(mid)
            if e is not None and e.sees(x):
                hi = mid
            else:
                lo = mid + 1
        e = chain.get(lo)
        return e.ts if e is not None else w.ts

    def _prune(self) -> None:
        floor = self.next_round - self.keep_rounds
        for r in [r for r in self.by_round if r < floor]:
            keep = []
            for ev in self.by_round.pop(r):
                if ev.received < 0 or self.head[ev.creator] is ev:
                    keep.append(ev)
                    continue
                del self.by_hash[ev.hash]
                self.chain[ev.creator].pop(ev.seq, None)
            if keep:
                self.by_round[floor] = self.by_round.get(floor, []) + keep
            self.witnesses.pop(r, None)
            self._wcache.pop(r, None)


@dataclass(slots=True)
class CrossState:
    """What this node knows of one cross-shard tx."""

    tx: Tx
    order: int = -1  # position in this shard's order, -1 until this shard ordered it
    certified_by: set[int] = field(default_factory=set)  # other shards whose cert we ordered
    cert: dict[str, Any] | None = None  # this shard's certificate, once ordered here
    sender: bool = False  # one of the f+1 members that send this shard's certificate
    next_retry: float = 0.0
    tries: int = 0
    answered: dict[int, float] = field(default_factory=dict)  # shard -> no answer before


class DagNode(Outcomes):
    """One shard member running DRDST's DAG consensus (see the module docstring)."""

    def __init__(self, name: str, shard: int, members: dict[int, list[str]], *,
                 tick_ms: float = 50.0, timeout_ms: float = 10_000.0, seed: int = 0,
                 peer_picker: Callable[[list[str]], str] | None = None,
                 miss_ticks: int = 6, max_misses: int = 3, probe_every_ticks: int = 20,
                 keep_rounds: int = 20, coin_every: int = 10,
                 max_events_per_sync: int = 400, max_items_per_event: int = 400,
                 xs_retry_ms: float = 2000.0) -> None:
        self.name = name
        self.tick_ms, self.timeout_ms = tick_ms, timeout_ms
        self.peer_picker = peer_picker
        self.miss_ticks, self.max_misses = miss_ticks, max_misses
        self.probe_every_ticks = probe_every_ticks
        self.keep_rounds, self.coin_every = keep_rounds, coin_every
        self.max_events_per_sync = max_events_per_sync
        self.max_items_per_event = max_items_per_event
        self.xs_retry_ms = xs_retry_ms
        self.rng = random.Random(stable_seed("dag", name, seed))
        self.epoch = 0
        self._watch: dict[str, float] = {}  # tx id -> deadline
        self.horizon_ms = 3 * timeout_ms  # ids are remembered this long, to drop duplicates
        self._done = AgedSet(self.horizon_ms)  # committed or reported failed here
        self.now = 0.0
        Outcomes.__init__(self)
        self._start_epoch(members, shard)

    # ---- epoch state ---------------------------------------------------------------------
    def _start_epoch(self, members: dict[int, list[str]], shard: int) -> None:
        self.shard = shard
        self.members = {int(k): list(v) for k, v in members.items()}
        self.peers = self.members[shard]
        self.me = self.peers.index(self.name)
        self.hg = Hashgraph(len(self.peers), [shard, self.epoch], coin_every=self.coin_every,
                            keep_rounds=self.keep_rounds)
        self.awaiting: dict[str, float] = {}  # peer -> when our unanswered sync left
        self.misses: dict[str, int] = {}
        self.suspects: set[str] = set()
        self.pending: list[dict[str, Any]] = []  # payload for our next event
        self.seen_items = AgedSet(self.horizon_ms)  # item keys queued or in the DAG
        self.ordered_items = AgedSet(self.horizon_ms)
        self.cross: dict[str, CrossState] = {}
        self.order_no = 0
        self.ticks = 0

    def reshard(self, now_ms: float, members: dict[int, list[str]], shard: int,
                epoch: int | None = None) -> list[Send]:
        """New epoch (the next one, or `epoch` when the node layer numbers them globally, so
        a node that missed an epoch agrees with its shard): fresh DAG; our own
        not-yet-ordered transactions go in again."""
        again = [tx_from_wire(i["tx"]) for i in self.pending if i["k"] == "tx"]
        for ev in self.hg.unordered.values():
            if ev.creator == self.me:
                again += [tx_from_wire(i["tx"]) for i in ev.items if i["k"] == "tx"]
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self._start_epoch(members, shard)
        out: list[Send] = []
        for tx in again:
            out += self._accept(tx)
        return out

    # ---- public interface ----------------------------------------------------------------
    def submit(self, now_ms: float, tx: Tx) -> list[Send]:
        self.now = now_ms
        if tx.id in self._done:
            return []
        self._watch.setdefault(tx.id, tx.created_ms + self.timeout_ms)
        return self._accept(tx)

    def on_tick(self, now_ms: float) -> list[Send]:
        self.ticks += 1
        self.now = now_ms
        self._forget(now_ms)
        out: list[Send] = []
        if self.hg.head[self.me] is None:
            self._create(now_ms, "")
        self._expire(now_ms)
        self._note_misses(now_ms)
        peer = self._pick_peer()
        if peer is not None:
            self.awaiting[peer] = now_ms
            body = {"ep": self.epoch, "n": self.hg.counts()}
            out.append(Send(peer, "dag_sync", body, SYNC_HEADER_BYTES + COUNT_BYTES * self.hg.n))
        out += self._retry_certs(now_ms)
        return out

    def on_message(self, now_ms: float, src: str, kind: str, body: dict) -> list[Send]:
        self.now = now_ms
        if kind == "dag_tx":
            return self.submit(now_ms, tx_from_wire(body["tx"]))
        if body.get("ep") != self.epoch:
            return []
        if kind == "dag_xcert":
            return self._on_cert(now_ms, src, body)
        if kind not in ("dag_sync", "dag_reply"):
            return []
        self.misses[src] = 0
        self.suspects.discard(src)
        if kind == "dag_sync":  # a pull: answer with what the puller lacks
            return [self._reply(src, [int(x) for x in body["n"]])]
        self.awaiting.pop(src, None)
        self._insert_all(body.get("ev", []))
        src_idx = self.peers.index(src) if src in self.peers else -1
        head = self.hg.head[src_idx] if src_idx >= 0 else None
        mine = self.hg.head[self.me]
        if head is not None and (mine is None or mine.op != head.hash or self.pending):
            self._create(now_ms, head.hash)  # the sync itself becomes an event
        return self._process_order(now_ms)

    # ---- gossip --------------------------------------------------------------------------
    def _pick_peer(self) -> str | None:
        others = [p for p in self.peers if p != self.name and p not in self.awaiting]
        live = [p for p in others if p not in self.suspects]
        if self.ticks % self.probe_every_ticks == 0:
            probes = [p for p in others if p in self.suspects]
            if probes:
                return self.rng.choice(probes)
        if not live:
            return None
        if self.peer_picker is not None:
            return self.peer_picker(live)
        return self.rng.choice(live)

    def _note_misses(self, now_ms: float) -> None:
        limit = self.miss_ticks * self.tick_ms
        for peer, since in list(self.awaiting.items()):
            if now_ms - since > limit:
                del self.awaiting[peer]
                self.misses[peer] = self.misses.get(peer, 0) + 1
                if self.misses[peer] >= self.max_misses:
                    self.suspects.add(peer)

    def _reply(self, peer: str, counts: list[int]) -> Send:
        evs = self.hg.missing_for(counts, self.max_events_per_sync)
        body = {"ep": self.epoch, "ev": [e.wire() for e in evs]}
        return Send(peer, "dag_reply", body, SYNC_HEADER_BYTES + sum(e.size() for e in evs))

    def _insert_all(self, wires: list[dict[str, Any]]) -> None:
        for w in wires:
            ev = self.hg.insert(int(w["c"]), int(w["s"]), w["p"], w["o"], float(w["t"]),
                                w["x"], w["h"])
            if ev is not None:
                for i in ev.items:
                    self.seen_items.add(item_key(i), self.now)

    def _create(self, now_ms: float, other_parent: str) -> None:
        items = self.pending[:self.max_items_per_event]
        self.pending = self.pending[self.max_items_per_event:]
        head = self.hg.head[self.me]
        self.hg.insert(self.me, head.seq + 1 if head is not None else 0,
                       head.hash if head is not None else "", other_parent, now_ms, items)

    # ---- transactions and order ----------------------------------------------------------
    def _accept(self, tx: Tx) -> list[Send]:
        if tx.shards[0] != self.shard:
            dst = self.rng.choice(self.members.get(tx.shards[0]) or [self.name])
            if dst == self.name:
                return []
            return [Send(dst, "dag_tx", {"tx": tx_to_wire(tx)}, 40 + tx.size_bytes)]
        self._queue({"k": "tx", "tx": tx_to_wire(tx)})
        return []

    def _queue(self, item: dict[str, Any]) -> None:
        key = item_key(item)
        if key not in self.seen_items:
            self.seen_items.add(key, self.now)
            self.pending.append(item)

    def _process_order(self, now_ms: float) -> list[Send]:
        out: list[Send] = []
        for ev in self.hg.pop_ordered():
            for item in ev.items:
                key = item_key(item)
                if key in self.ordered_items:
                    continue
                self.ordered_items.add(key, now_ms)
                if item["k"] == "tx":
                    out += self._ordered_tx(now_ms, tx_from_wire(item["tx"]), ev)
                else:
                    out += self._ordered_cert(now_ms, item, ev)
        return out

    def _ordered_tx(self, now_ms: float, tx: Tx, ev: Event) -> list[Send]:
        if tx.shards[0] != self.shard:
            return []
        self.order_no += 1
        if not tx.cross_shard:
            self._commit(now_ms, tx.id, self.order_no)
            return []
        st = self.cross.setdefault(tx.id, CrossState(tx))
        return self._shard_ordered(now_ms, st, ev)

    def _ordered_cert(self, now_ms: float, item: dict[str, Any], ev: Event) -> list[Send]:
        tx, src_shard = tx_from_wire(item["tx"]), int(item["from"])
        if self.shard not in tx.shards or not self._valid_cert(item):
            return []
        st = self.cross.setdefault(tx.id, CrossState(tx))
        st.certified_by.add(src_shard)
        out: list[Send] = []
        if st.order < 0 and tx.shards[0] != self.shard:
            self.order_no += 1
            out += self._shard_ordered(now_ms, st, ev)
        self._maybe_complete(now_ms, st)
        return out

    def _shard_ordered(self, now_ms: float, st: CrossState, ev: Event) -> list[Send]:
        """Our shard has just ordered cross-shard tx st.tx: certify it to the others."""
        st.order = self.order_no
        self._watch.setdefault(st.tx.id, st.tx.created_ms + self.timeout_ms)
        signers = [self.peers[c] for c in self.hg.attesters(ev)]
        st.cert = {"k": "cert", "tx": tx_to_wire(st.tx), "from": self.shard,
                   "signers": signers, "ev": ev.hash}
        st.sender = self.me <= max_faulty(len(self.peers))
        st.next_retry = now_ms + self.xs_retry_ms
        self._maybe_complete(now_ms, st)
        return self._send_cert(st, [s for s in st.tx.shards if s != self.shard]) \
            if st.sender else []

    def _send_cert(self, st: CrossState, shards: list[int]) -> list[Send]:
        assert st.cert is not None
        out = []
        body = self._cert_body(st)
        size = 64 + item_size(st.cert)
        for s in shards:
            dst_members = self.members.get(s, [])
            if not dst_members:
                continue
            k = max_faulty(len(dst_members)) + 1
            # every sender picks the same receivers (so at most k copies enter that DAG);
            # retries move on to the next k members
            base = stable_seed(st.tx.id) + st.tries * k
            for j in range(min(k, len(dst_members))):
                out.append(Send(dst_members[(base + j) % len(dst_members)], "dag_xcert",
                                body, size))
        return out

    def _cert_body(self, st: CrossState) -> dict[str, Any]:
        lack = [s for s in st.tx.shards if s != self.shard and s not in st.certified_by]
        return {"ep": self.epoch, "cert": st.cert, "lack": lack}

    def _valid_cert(self, cert: dict[str, Any]) -> bool:
        members = self.members.get(int(cert["from"]), [])
        return len(set(cert["signers"]) & set(members)) >= supermajority(len(members))

    def _on_cert(self, now_ms: float, src: str, body: dict) -> list[Send]:
        cert = body["cert"]
        tx = tx_from_wire(cert["tx"])
        if self.shard not in tx.shards or int(cert["from"]) == self.shard \
                or not self._valid_cert(cert):
            return []
        st = self.cross.get(tx.id)
        self._queue(cert)
        if st is not None and st.cert is not None and self.shard in body.get("lack", []) \
                and now_ms >= st.answered.get(int(cert["from"]), -1e18):
            # we certified it already and the sender's shard lacks ours: answer it directly,
            # at most once per retry period so two shards cannot ping-pong
            st.answered[int(cert["from"])] = now_ms + self.xs_retry_ms
            return [Send(src, "dag_xcert", self._cert_body(st), 64 + item_size(st.cert))]
        self._watch.setdefault(tx.id, tx.created_ms + self.timeout_ms)
        return []

    def _retry_certs(self, now_ms: float) -> list[Send]:
        out: list[Send] = []
        for st in self.cross.values():
            if st.cert is None or not st.sender or st.tx.id in self._done \
                    or now_ms < st.next_retry:
                continue
            st.tries += 1
            st.next_retry = now_ms + self.xs_retry_ms
            lacking = [s for s in st.tx.shards if s != self.shard and s not in st.certified_by]
            out += self._send_cert(st, lacking)
        return out

    def _maybe_complete(self, now_ms: float, st: CrossState) -> None:
        others = {s for s in st.tx.shards if s != self.shard}
        if st.order >= 0 and others <= st.certified_by:
            self._commit(now_ms, st.tx.id, st.order)

    def _commit(self, now_ms: float, tx_id: str, order: int) -> None:
        if tx_id in self._done:
            return
        self._done.add(tx_id, now_ms)
        self._watch.pop(tx_id, None)
        self._commits.append(Commit(tx_id, self.shard, now_ms, order))

    def _forget(self, now_ms: float) -> None:
        """Bound memory on long runs: drop ids and cross-shard state older than the horizon."""
        for aged in (self._done, self.seen_items, self.ordered_items):
            aged.prune(now_ms)
        if self.ticks % 200 == 0:
            floor = now_ms - self.horizon_ms
            self.cross = {k: v for k, v in self.cross.items() if v.tx.created_ms >= floor}

    def _expire(self, now_ms: float) -> None:
        for tx_id, deadline in list(self._watch.items()):
            if now_ms >= deadline:
                del self._watch[tx_id]
                if tx_id not in self._done:
                    self._done.add(tx_id, now_ms)
                    self._failed.append(tx_id)
