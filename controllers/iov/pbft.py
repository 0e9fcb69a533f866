"""The PBFT baseline for the IoV testbed: classic PBFT inside each shard, 2PC across shards.

DRDST (arXiv 2412.04742) is compared against leader-based sharded BFT; this module is that
baseline, written to the same message-driven interface as `dag.DagNode` so the simulator and
the live nodes can swap one for the other.

Inside a shard (Castro and Liskov, OSDI 1999), n replicas in the shard's member order, f =
(n-1)//3, quorum 2f+1:

* The leader of view v is `replicas[v % n]`.  A transaction submitted at a replica goes to
  the leader (and stays in the replica's pool); every tick the leader cuts a batch of the
  pending entries (at most `max_batch`) and sends PRE-PREPARE(v, seq, digest, batch).
* A backup accepts one pre-prepare per (v, seq) and broadcasts PREPARE; a replica is prepared
  with the pre-prepare and 2f matching prepares, then broadcasts COMMIT; it is committed with
  2f+1 matching commits and executes batches strictly in sequence order.
  `Commit.order` is the position of the tx in the shard's executed order.
* View change (simplified but real): a replica that has known a pending entry for
  `view_timeout_ms` without any execution broadcasts VIEW-CHANGE(v+1, last executed seq, its
  prepared batches).  f+1 view-changes for a higher view make a replica join it; the new
  leader, with 2f+1 of them, sends NEW-VIEW re-proposing for every sequence number above the
  lowest reported one the prepared batch of the highest view (or an empty batch), and then
  continues.  An unanswered view change moves on to the next view after twice the timeout.
  A submitting replica that sees its request unexecuted after `req_retry_ms` broadcasts it to
  all replicas (the PBFT client's retransmission), which is what starts their timers.

Across shards, two-phase commit between the involved shards' leaders, every step ordered by
PBFT in the shard that takes it:

1. The origin shard (`tx.shards[0]`) orders the tx like any other: that is its prepare and
   lock.  Its leader (the coordinator) sends XPREP to the leaders of the other shards.
2. A participant leader orders a LOCK entry; once executed its leader answers XVOTE(yes).
3. With all votes, the coordinator orders DEC(commit); without them after `xs_abort_ms`, it
   orders DEC(abort).  Executing DEC commits (or fails) the tx at every origin replica, and
   the leader sends XDEC to the participants, which order their own DEC entry and commit (or
   release the lock) and answer XDACK.  Retries go to every member of the other shard, which
   forward them to their leader; replies carry the sender's view so leaders can be guessed.

Assumed:
* Crash faults only (no equivocating leader): messages are not signed, digests are SHA-256.
* No checkpoints or state transfer: each replica keeps the last `log_keep` executed batches,
  which view changes use to bring lagging replicas up; the view change's sequence window is
  the lowest reported executed seq to the highest prepared one.
* Participants always vote yes (the testbed's transactions do not conflict); a participant
  shard that is gone makes the coordinator abort after `xs_abort_ms`.  2PC blocks a
  participant whose coordinator shard vanishes; its replicas report the tx by `failed()`.
* A tx submitted at a node outside its origin shard is forwarded to the origin shard's
  (guessed) leader once, without client retransmission.
* `failed()` reports, per node, the txs it knows (submitted there, or ordered there as a
  cross-shard entry) that did not commit by `created_ms + timeout_ms`, or that were aborted;
  it is a local verdict and a node reports no later commit for such a tx.
* Resharding starts view 0 of a fresh log in the new epoch; the node's own submitted but
  unexecuted txs are resubmitted; cross-shard 2PC in flight is left to time out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controllers.iov.messages import (
    AgedSet,
    Commit,
    Outcomes,
    Send,
    Tx,
    digest,
    max_faulty,
    tx_from_wire,
    tx_to_wire,
)

HEADER_BYTES = 100  # view, seq, digest, sender, epoch, framing


def entry_key(entry: dict[str, Any]) -> str:
    tx_id = entry["tx"]["id"] if "tx" in entry else entry["id"]
    return f"{entry['k']}:{tx_id}"


def entry_size(entry: dict[str, Any]) -> int:
    return int(entry["tx"]["b"]) if "tx" in entry else 24


def batch_size(batch: list[dict[str, Any]]) -> int:
    return HEADER_BYTES + sum(entry_size(e) for e in batch)


@dataclass(slots=True)
class Slot:
    """A sequence number's accepted pre-prepare."""

    view: int
    d: str
    batch: list[dict[str, Any]]
    sent_commit: bool = False
    committed: bool = False


@dataclass(slots=True)
class Coord:
    """Coordinator (origin shard) state of one cross-shard tx, the same at every replica."""

    tx: Tx
    order: int
    started: float
    votes: set[int] = field(default_factory=set)
    acks: set[int] = field(default_factory=set)
    decided: bool | None = None
    next_retry: float = 0.0


@dataclass(slots=True)
class Part:
    """Participant state of one cross-shard tx."""

    tx: Tx
    order: int
    requester: str = ""
    decided: bool | None = None


class PbftNode(Outcomes):
    """One replica of a shard running PBFT, with 2PC for cross-shard txs."""

    def __init__(self, name: str, shard: int, members: dict[int, list[str]], *,
                 tick_ms: float = 50.0, timeout_ms: float = 10_000.0, max_batch: int = 200,
                 view_timeout_ms: float = 1500.0, req_retry_ms: float = 600.0,
                 xs_retry_ms: float = 1000.0, xs_abort_ms: float | None = None,
                 log_keep: int = 256, seed: int = 0) -> None:
        self.name = name
        self.tick_ms, self.timeout_ms, self.max_batch = tick_ms, timeout_ms, max_batch
        self.view_timeout_ms, self.req_retry_ms = view_timeout_ms, req_retry_ms
        self.xs_retry_ms = xs_retry_ms
        self.xs_abort_ms = xs_abort_ms if xs_abort_ms is not None else 0.6 * timeout_ms
        self.log_keep = log_keep
        self.epoch = 0
        self._watch: dict[str, float] = {}
        self.horizon_ms = 3 * timeout_ms  # ids are remembered this long, to drop duplicates
        self._done = AgedSet(self.horizon_ms)
        self._next_forget = 0.0
        Outcomes.__init__(self)
        self._start_epoch(0.0, members, shard)

    # ---- epoch state ---------------------------------------------------------------------
    def _start_epoch(self, now_ms: float, members: dict[int, list[str]], shard: int) -> None:
        self.shard = shard
        self.members = {int(k): list(v) for k, v in members.items()}
        self.replicas = self.members[shard]
        self.n = len(self.replicas)
        self.f = max_faulty(self.n)
        self.view = 0
        self.in_vc = False
        self.vc_target = 0
        self.vc_started = 0.0
        self.vc_msgs: dict[int, dict[str, dict[str, Any]]] = {}
        self.new_view_sent: set[int] = set()
        self.future: list[tuple[str, str, dict[str, Any]]] = []
        self.pool: dict[str, dict[str, Any]] = {}  # entry key -> entry, not yet executed
        self.assigned: set[str] = set()
        self.executed = AgedSet(self.horizon_ms)
        self.log: dict[int, Slot] = {}
        self.prepares: dict[tuple[int, int, str], set[str]] = {}
        self.commit_votes: dict[tuple[int, int, str], set[str]] = {}
        self.last_exec = 0
        self.next_seq = 1
        self.progress_ms = now_ms
        self.order_no = 0
        self.coord: dict[str, Coord] = {}
        self.part: dict[str, Part] = {}
        self.votes_seen: dict[str, set[int]] = {}
        self.requesters: dict[str, str] = {}  # tx id -> coordinator that asked for a vote
        self.guess_view: dict[int, int] = {}
        self.waiting: dict[str, tuple[Tx, float]] = {}  # submitted here: tx, next retry

    def reshard(self, now_ms: float, members: dict[int, list[str]], shard: int,
                epoch: int | None = None) -> list[Send]:
        """New epoch (see DagNode.reshard): a fresh view 0; our waiting requests go in again."""
        again = [tx for tx, _ in self.waiting.values()]
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self._start_epoch(now_ms, members, shard)
        out: list[Send] = []
        for tx in again:
            out += self._accept(now_ms, tx)
        return out

    # ---- public interface ----------------------------------------------------------------
    def submit(self, now_ms: float, tx: Tx) -> list[Send]:
        if tx.id in self._done:
            return []
        self._watch.setdefault(tx.id, tx.created_ms + self.timeout_ms)
        return self._accept(now_ms, tx)

    def on_tick(self, now_ms: float) -> list[Send]:
        self._forget(now_ms)
        self._expire(now_ms)
        out = self._client_retries(now_ms)
        out += self._view_timers(now_ms)
        if not self.in_vc and self.leader() == self.name:
            out += self._coordinate(now_ms)
            out += self._propose(now_ms)
        return out

    def on_message(self, now_ms: float, src: str, kind: str, body: dict) -> list[Send]:
        if kind == "pbft_fwd":
            return self.submit(now_ms, tx_from_wire(body["tx"]))
        if body.get("ep") != self.epoch:
            return []
        handler = {
            "pbft_req": self._on_req, "pbft_pp": self._on_preprepare,
            "pbft_prep": self._on_prepare, "pbft_com": self._on_commit,
            "pbft_vc": self._on_view_change, "pbft_nv": self._on_new_view,
            "pbft_xprep": self._on_xprep, "pbft_xvote": self._on_xvote,
            "pbft_xdec": self._on_xdec, "pbft_xdack": self._on_xdack,
        }.get(kind)
        return handler(now_ms, src, body) if handler is not None else []

    # ---- helpers -------------------------------------------------------------------------
    def leader(self, view: int | None = None) -> str:
        return self.replicas[(self.view if view is None else view) % self.n]

    def _others(self) -> list[str]:
        return [r for r in self.replicas if r != self.name]

    def _bcast(self, kind: str, body: dict[str, Any], size: int) -> list[Send]:
        body = {"ep": self.epoch, **body}
        return [Send(r, kind, body, size) for r in self._others()]

    def _to_shard(self, shard: int, kind: str, body: dict[str, Any], everyone: bool
                  ) -> list[Send]:
        """To another shard's guessed leader, or (on a retry) to all its members."""
        names = self.members.get(shard, [])
        if not names:
            return []
        body = {"ep": self.epoch, "v": self.view, "from": self.shard, **body}
        size = HEADER_BYTES + (int(body["tx"]["b"]) if "tx" in body else 0)
        dsts = names if everyone else [names[self.guess_view.get(shard, 0) % len(names)]]
        return [Send(d, kind, body, size) for d in dsts]

    def _accept(self, now_ms: float, tx: Tx) -> list[Send]:
        entry = {"k": "tx", "tx": tx_to_wire(tx)}
        if tx.shards[0] != self.shard:
            return self._to_shard(tx.shards[0], "pbft_fwd", {"tx": entry["tx"]}, False)
        self.waiting[tx.id] = (tx, now_ms + self.req_retry_ms)
        return self._add_entry(now_ms, entry, forward=True)

    def _add_entry(self, now_ms: float, entry: dict[str, Any], forward: bool) -> list[Send]:
        key = entry_key(entry)
        if key in self.executed or key in self.pool:
            return []
        if not self.pool:
            self.progress_ms = max(self.progress_ms, now_ms)  # the view timer starts now
        self.pool[key] = entry
        if forward and self.leader() != self.name:
            return [Send(self.leader(), "pbft_req", {"ep": self.epoch, "e": entry},
                         HEADER_BYTES + entry_size(entry))]
        return []

    def _on_req(self, now_ms: float, src: str, body: dict) -> list[Send]:
        return self._add_entry(now_ms, body["e"], forward=False)

    # ---- normal case ---------------------------------------------------------------------
    def _propose(self, now_ms: float) -> list[Send]:
        batch = [e for k, e in self.pool.items() if k not in self.assigned][:self.max_batch]
        if not batch:
            return []
        seq = self.next_seq
        self.next_seq += 1
        return self._preprepare(seq, batch)

    def _preprepare(self, seq: int, batch: list[dict[str, Any]]) -> list[Send]:
        d = digest(batch)
        self.log[seq] = Slot(self.view, d, batch)
        self.assigned.update(entry_key(e) for e in batch)
        return self._bcast("pbft_pp", {"v": self.view, "n": seq, "d": d, "b": batch},
                           batch_size(batch))

    def _on_preprepare(self, now_ms: float, src: str, body: dict) -> list[Send]:
        v, seq, d, batch = int(body["v"]), int(body["n"]), body["d"], body["b"]
        if v > self.view or (self.in_vc and v >= self.vc_target):
            self.future.append(("pbft_pp", src, body))
            return []
        if v != self.view or self.in_vc or src != self.leader(v) or digest(batch) != d:
            return []
        return self._accept_slot(now_ms, v, seq, d, batch)

    def _accept_slot(self, now_ms: float, v: int, seq: int, d: str,
                     batch: list[dict[str, Any]]) -> list[Send]:
        slot = self.log.get(seq)
        if slot is not None and slot.view == v:
            return []  # one pre-prepare per (view, seq)
        self.log[seq] = Slot(v, d, batch)
        for e in batch:
            self.pool.setdefault(entry_key(e), e)
            self.assigned.add(entry_key(e))
        self.prepares.setdefault((v, seq, d), set()).add(self.name)
        out = self._bcast("pbft_prep", {"v": v, "n": seq, "d": d}, HEADER_BYTES)
        return out + self._check(now_ms, seq)

    def _on_prepare(self, now_ms: float, src: str, body: dict) -> list[Send]:
        key = (int(body["v"]), int(body["n"]), body["d"])
        self.prepares.setdefault(key, set()).add(src)
        return self._check(now_ms, key[1])

    def _on_commit(self, now_ms: float, src: str, body: dict) -> list[Send]:
        key = (int(body["v"]), int(body["n"]), body["d"])
        self.commit_votes.setdefault(key, set()).add(src)
        return self._check(now_ms, key[1])

    def _check(self, now_ms: float, seq: int) -> list[Send]:
        slot = self.log.get(seq)
        if slot is None or slot.view != self.view:
            return []
        key = (slot.view, seq, slot.d)
        out: list[Send] = []
        backups = self.prepares.get(key, set()) - {self.leader(slot.view)}
        if not slot.sent_commit and len(backups) >= 2 * self.f:
            slot.sent_commit = True
            self.commit_votes.setdefault(key, set()).add(self.name)
            out += self._bcast("pbft_com", {"v": slot.view, "n": seq, "d": slot.d},
                               HEADER_BYTES)
        if slot.sent_commit and not slot.committed \
                and len(self.commit_votes.get(key, ())) >= 2 * self.f + 1:
            slot.committed = True
            out += self._execute_ready(now_ms)
        return out

    def _execute_ready(self, now_ms: float) -> list[Send]:
        out: list[Send] = []
        while (slot := self.log.get(self.last_exec + 1)) is not None and slot.committed:
            self.last_exec += 1
            self.progress_ms = now_ms
            for entry in slot.batch:
                out += self._execute(now_ms, entry)
        self._garbage_collect()
        return out

    def _garbage_collect(self) -> None:
        floor = self.last_exec - self.log_keep
        if floor <= 0 or self.last_exec % 32:
            return
        for seq in [s for s in self.log if s <= floor]:
            del self.log[seq]
        for votes in (self.prepares, self.commit_votes):
            for key in [k for k in votes if k[1] <= floor]:
                del votes[key]

    # ---- execution -----------------------------------------------------------------------
    def _execute(self, now_ms: float, entry: dict[str, Any]) -> list[Send]:
        key = entry_key(entry)
        self.pool.pop(key, None)
        self.assigned.discard(key)
        if key in self.executed:
            return []
        self.executed.add(key, now_ms)
        kind = entry["k"]
        if kind == "tx":
            return self._execute_tx(now_ms, tx_from_wire(entry["tx"]))
        if kind == "lock":
            return self._execute_lock(now_ms, tx_from_wire(entry["tx"]))
        return self._execute_decision(now_ms, str(entry["id"]), bool(entry["ok"]))

    def _execute_tx(self, now_ms: float, tx: Tx) -> list[Send]:
        self.waiting.pop(tx.id, None)
        if tx.shards[0] != self.shard:
            return []
        self.order_no += 1
        if not tx.cross_shard:
            self._commit(now_ms, tx.id, self.order_no)
            return []
        self._watch.setdefault(tx.id, tx.created_ms + self.timeout_ms)
        c = Coord(tx, self.order_no, now_ms, next_retry=now_ms + self.xs_retry_ms)
        c.votes |= self.votes_seen.pop(tx.id, set())
        self.coord[tx.id] = c
        if self.leader() == self.name:
            return self._send_prepares(c, everyone=False)
        return []

    def _execute_lock(self, now_ms: float, tx: Tx) -> list[Send]:
        self.order_no += 1
        self._watch.setdefault(tx.id, tx.created_ms + self.timeout_ms)
        p = self.part.setdefault(tx.id, Part(tx, self.order_no))
        p.order = self.order_no
        p.requester = self.requesters.pop(tx.id, p.requester)
        if self.leader() == self.name:
            return self._vote_to(p)
        return []

    def _execute_decision(self, now_ms: float, tx_id: str, ok: bool) -> list[Send]:
        c, p = self.coord.get(tx_id), self.part.get(tx_id)
        out: list[Send] = []
        if c is not None and c.decided is None:
            c.decided = ok
            self._finish(now_ms, tx_id, ok, c.order)
            if self.leader() == self.name:
                out += self._send_decisions(c, everyone=False)
        elif p is not None and p.decided is None:
            p.decided = ok
            self._finish(now_ms, tx_id, ok, p.order)
            if self.leader() == self.name:
                out += self._to_shard(p.tx.shards[0], "pbft_xdack", {"id": tx_id}, False)
        return out

    def _finish(self, now_ms: float, tx_id: str, ok: bool, order: int) -> None:
        if ok:
            self._commit(now_ms, tx_id, order)
        elif tx_id not in self._done:
            self._done.add(tx_id, now_ms)
            self._watch.pop(tx_id, None)
            self._failed.append(tx_id)

    # ---- two-phase commit ----------------------------------------------------------------
    def _send_prepares(self, c: Coord, everyone: bool) -> list[Send]:
        out: list[Send] = []
        for s in c.tx.shards[1:]:
            if s not in c.votes:
                out += self._to_shard(s, "pbft_xprep", {"tx": tx_to_wire(c.tx)}, everyone)
        return out

    def _send_decisions(self, c: Coord, everyone: bool) -> list[Send]:
        out: list[Send] = []
        for s in c.tx.shards[1:]:
            if s not in c.acks:
                out += self._to_shard(s, "pbft_xdec", {"id": c.tx.id, "ok": c.decided},
                                      everyone)
        return out

    def _vote_to(self, p: Part) -> list[Send]:
        if p.requester:
            body = {"ep": self.epoch, "v": self.view, "from": self.shard, "id": p.tx.id}
            return [Send(p.requester, "pbft_xvote", body, HEADER_BYTES)]
        return self._to_shard(p.tx.shards[0], "pbft_xvote", {"id": p.tx.id}, False)

    def _coordinate(self, now_ms: float) -> list[Send]:
        """Leader duties on a tick: decide, retry, or abort the 2PCs this shard coordinates."""
        out: list[Send] = []
        for c in self.coord.values():
            others = set(c.tx.shards[1:])
            if c.decided is None:
                dec_key = f"dec:{c.tx.id}"
                if others <= c.votes:
                    out += self._add_entry(now_ms, {"k": "dec", "id": c.tx.id, "ok": True},
                                           forward=False)
                elif now_ms - c.started > self.xs_abort_ms and dec_key not in self.pool:
                    out += self._add_entry(now_ms, {"k": "dec", "id": c.tx.id, "ok": False},
                                           forward=False)
                elif now_ms >= c.next_retry:
                    c.next_retry = now_ms + self.xs_retry_ms
                    out += self._send_prepares(c, everyone=True)
            elif not others <= c.acks and now_ms >= c.next_retry:
                c.next_retry = now_ms + self.xs_retry_ms
                out += self._send_decisions(c, everyone=True)
        return out

    def _learn_view(self, body: dict) -> None:
        shard = int(body.get("from", -1))
        if shard >= 0 and shard != self.shard:
            self.guess_view[shard] = max(self.guess_view.get(shard, 0), int(body.get("v", 0)))

    def _on_xprep(self, now_ms: float, src: str, body: dict) -> list[Send]:
        self._learn_view(body)
        tx = tx_from_wire(body["tx"])
        if self.shard not in tx.shards[1:]:
            return []
        p = self.part.get(tx.id)
        if p is not None:
            p.requester = src
            return self._vote_to(p) if p.decided is None else []
        if self.leader() != self.name:
            return [Send(self.leader(), "pbft_xprep", body, HEADER_BYTES + tx.size_bytes)]
        self.requesters[tx.id] = src
        return self._add_entry(now_ms, {"k": "lock", "tx": body["tx"]}, forward=False)

    def _on_xvote(self, now_ms: float, src: str, body: dict) -> list[Send]:
        self._learn_view(body)
        tx_id, shard = str(body["id"]), int(body["from"])
        c = self.coord.get(tx_id)
        if c is None:
            self.votes_seen.setdefault(tx_id, set()).add(shard)
        else:
            c.votes.add(shard)
        return []

    def _on_xdec(self, now_ms: float, src: str, body: dict) -> list[Send]:
        self._learn_view(body)
        tx_id = str(body["id"])
        p = self.part.get(tx_id)
        if p is not None and p.decided is not None:
            return self._to_shard(int(body["from"]), "pbft_xdack", {"id": tx_id}, False)
        if self.leader() != self.name:
            return [Send(self.leader(), "pbft_xdec", body, HEADER_BYTES)]
        return self._add_entry(now_ms, {"k": "dec", "id": tx_id, "ok": bool(body["ok"])},
                               forward=False)

    def _on_xdack(self, now_ms: float, src: str, body: dict) -> list[Send]:
        self._learn_view(body)
        c = self.coord.get(str(body["id"]))
        if c is not None:
            c.acks.add(int(body["from"]))
        return []

    # ---- client retransmission, timers and view change ------------------------------------
    def _client_retries(self, now_ms: float) -> list[Send]:
        out: list[Send] = []
        for tx_id, (tx, due) in list(self.waiting.items()):
            if now_ms >= due:
                self.waiting[tx_id] = (tx, now_ms + 2 * self.req_retry_ms)
                entry = {"k": "tx", "tx": tx_to_wire(tx)}
                out += self._bcast("pbft_req", {"e": entry}, HEADER_BYTES + tx.size_bytes)
        return out

    def _view_timers(self, now_ms: float) -> list[Send]:
        if self.in_vc:
            if now_ms - self.vc_started > 2 * self.view_timeout_ms:
                return self._start_view_change(now_ms, self.vc_target + 1)
            return []
        if self.pool and now_ms - self.progress_ms > self.view_timeout_ms:
            return self._start_view_change(now_ms, self.view + 1)
        return []

    def _start_view_change(self, now_ms: float, target: int) -> list[Send]:
        self.in_vc, self.vc_target, self.vc_started = True, target, now_ms
        prepared = []
        for seq, slot in sorted(self.log.items()):
            key = (slot.view, seq, slot.d)
            backups = self.prepares.get(key, set()) - {self.leader(slot.view)}
            if slot.committed or len(backups) >= 2 * self.f:
                prepared.append({"n": seq, "v": slot.view, "d": slot.d, "b": slot.batch})
        body = {"v": target, "last": self.last_exec, "P": prepared}
        self.vc_msgs.setdefault(target, {})[self.name] = body
        size = HEADER_BYTES + sum(batch_size(p["b"]) for p in prepared)
        return self._bcast("pbft_vc", body, size) + self._maybe_new_view(now_ms, target)

    def _on_view_change(self, now_ms: float, src: str, body: dict) -> list[Send]:
        target = int(body["v"])
        if target <= self.view:
            return []
        self.vc_msgs.setdefault(target, {})[src] = body
        out: list[Send] = []
        if len(self.vc_msgs[target]) >= self.f + 1 and (not self.in_vc
                                                        or self.vc_target < target):
            out += self._start_view_change(now_ms, target)
        return out + self._maybe_new_view(now_ms, target)

    def _maybe_new_view(self, now_ms: float, target: int) -> list[Send]:
        msgs = self.vc_msgs.get(target, {})
        if self.leader(target) != self.name or target in self.new_view_sent \
                or len(msgs) < 2 * self.f + 1:
            return []
        self.new_view_sent.add(target)
        low = min(int(m["last"]) for m in msgs.values())
        best: dict[int, dict[str, Any]] = {}
        for m in msgs.values():
            for p in m["P"]:
                seq = int(p["n"])
                if seq > low and (seq not in best or int(p["v"]) > int(best[seq]["v"])):
                    best[seq] = p
        high = max([low, *best, *(int(m["last"]) for m in msgs.values())])
        plan = [{"n": s, "b": best[s]["b"] if s in best else []} for s in range(low + 1, high + 1)]
        body = {"v": target, "O": plan}
        size = HEADER_BYTES + sum(batch_size(p["b"]) for p in plan)
        out = self._bcast("pbft_nv", body, size)
        return out + self._enter_view(now_ms, target, plan)

    def _on_new_view(self, now_ms: float, src: str, body: dict) -> list[Send]:
        target = int(body["v"])
        if target <= self.view or src != self.leader(target):
            return []
        return self._enter_view(now_ms, target, body["O"])

    def _enter_view(self, now_ms: float, target: int, plan: list[dict[str, Any]]
                    ) -> list[Send]:
        self.view, self.in_vc, self.progress_ms = target, False, now_ms
        self.vc_msgs = {v: m for v, m in self.vc_msgs.items() if v > target}
        self.assigned = set()
        out: list[Send] = []
        high = self.last_exec
        for p in plan:
            seq, batch = int(p["n"]), p["b"]
            high = max(high, seq)
            if self.leader() == self.name:
                d = digest(batch)
                self.log[seq] = Slot(target, d, batch)
                self.assigned.update(entry_key(e) for e in batch)
                self.prepares.setdefault((target, seq, d), set())
            else:
                out += self._accept_slot(now_ms, target, seq, digest(batch), batch)
        self.next_seq = high + 1
        if self.leader() != self.name:  # our own requests go to the new leader
            for tx, _ in self.waiting.values():
                entry = {"k": "tx", "tx": tx_to_wire(tx)}
                out.append(Send(self.leader(), "pbft_req", {"ep": self.epoch, "e": entry},
                                HEADER_BYTES + tx.size_bytes))
        future, self.future = self.future, []
        for kind, src, body in future:
            out += self.on_message(now_ms, src, kind, body)
        return out

    # ---- outcomes ------------------------------------------------------------------------
    def _commit(self, now_ms: float, tx_id: str, order: int) -> None:
        self.waiting.pop(tx_id, None)
        if tx_id in self._done:
            return
        self._done.add(tx_id, now_ms)
        self._watch.pop(tx_id, None)
        self._commits.append(Commit(tx_id, self.shard, now_ms, order))

    def _forget(self, now_ms: float) -> None:
        """Bound memory on long runs: drop ids and 2PC state older than the horizon."""
        self._done.prune(now_ms)
        self.executed.prune(now_ms)
        if now_ms >= self._next_forget:
            self._next_forget = now_ms + self.horizon_ms / 4
            floor = now_ms - self.horizon_ms
            self.coord = {k: c for k, c in self.coord.items() if c.tx.created_ms >= floor}
            self.part = {k: p for k, p in self.part.items() if p.tx.created_ms >= floor}

    def _expire(self, now_ms: float) -> None:
        for tx_id, deadline in list(self._watch.items()):
            if now_ms >= deadline:
                del self._watch[tx_id]
                self.waiting.pop(tx_id, None)
                if tx_id not in self._done:
                    self._done.add(tx_id, now_ms)
                    self._failed.append(tx_id)
