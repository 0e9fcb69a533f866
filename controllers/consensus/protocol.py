"""The consensus protocols as event-driven state machines: one code base, any transport.

A node reacts to three things - its own answer becoming ready (`on_answer`), a message
(`on_message`) and a timer (`on_timer`) - and acts only through its `Context`: send, a timer,
sign and verify.  The discrete-event simulator (sim.py) and the live emulation (live.py) are
two Contexts; the protocol code is the same.

One *instance* decides one query: every node answers the query with its own LLM, and the
network agrees on one answer.  The shared shape (our reading of WBFT, arXiv 2505.05103, with
the baselines built the same way so that only the agreement differs; docs/consensus.md says
what the paper's text left open and what we assumed):

1. ANSWER   every node signs its answer and sends it to the instance's leader.
2. PROPOSE  the leader waits until it holds answers carrying more than 2/3 of the weight and
            proposes their weighted plurality with the signed set as proof; a replica checks
            signatures, weight and plurality itself (a leader cannot make up a winner).  The
            committed proposal - value, answer set, published key - is what every node
            updates its weights from, so votes name the proposal's digest, not just its value.
3. agreement, by protocol:
   * wbft / pbft - PREPARE then COMMIT, all-to-all among the committee, quorums of more than
     2/3 of the committee's weight.  wbft: adaptive weights (quality + trust, weights.py),
     leaders in weight order, the committee is the core cluster holding `committee_share` of
     the weight.  pbft: equal weights, every node, leaders round robin (2f+1 of 3f+1).
   * hotstuff - three vote phases collected by the leader (linear messages), equal weights.
   * raft - the leader replicates its proposal and commits on a majority of acks; followers
     check nothing (crash faults only: what it cannot handle is the point).
   * majority - no agreement: nodes send their answers to the client, which takes the
     plurality of all of them, or of those in `view_timeout` after the (n-f)-th (a baseline
     for answer quality, not a consensus protocol).
4. REPLY    a node that decided tells the client; the client accepts an answer once replies
            for it carry more than 1/3 of the weight (at least one honest node decided it).

View change (BFT protocols): a replica that has not decided `view_timeout` after its answer
moves to the next view and tells the committee (VIEW_CHANGE, with its prepared certificate);
a replica that sees more than 1/3 of the weight move on joins them.  The next leader in
order collects more than 2/3 of the weight of view changes and proposes again: the proposal
of the highest prepared certificate if there is one, else a fresh plurality from the answers
re-sent to it.  A replica locked on a prepared proposal accepts another only with a newer
certificate (the lock that keeps commits safe across views).  The timeout doubles each view.

Instances run one after another: a node holds the messages of instance k+1 back until it has
decided k, because k's decision changes the weights that k+1's leaders and quorums use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from controllers.consensus.weights import WeightBook, weight_of, weighted_plurality

PROTOCOLS = ("wbft", "pbft", "hotstuff", "raft", "majority")
BFT = ("wbft", "pbft", "hotstuff")
CLIENT = "client"


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def proposal_digest(value: str | None, body: dict[str, Any] | None) -> str:
    """What votes refer to: the value and the answer set it was chosen from (a carried
    proposal keeps its digest across views)."""
    body = body or {}
    return digest([value, body.get("answers"), body.get("key")])


@dataclass(frozen=True)
class Msg:
    kind: str  # ANSWER PROPOSE PREPARE COMMIT VOTE QC VIEW_CHANGE APPEND ACK DECIDE REPLY
    sender: str
    seq: int
    view: int = 0
    value: str | None = None
    phase: int = 0  # hotstuff vote phase 1..3
    ref: str = ""  # the proposal's digest, for votes and certificates
    body: Any = None  # proofs: answer sets, certificates
    sig: Any = None

    def size(self) -> int:
        """Bytes on the wire (JSON), for the message accounting and the radio's airtime."""
        return 96 + (len(json.dumps(self.body, default=str)) if self.body else 0)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("kind", "sender", "seq", "view", "value",
                                              "phase", "ref", "body", "sig")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Msg:
        return cls(**d)


class Context(Protocol):
    """What a node may do; the transports implement it."""

    name: str

    def now(self) -> float: ...
    def send(self, dst: str, msg: Msg) -> None: ...
    def set_timer(self, delay: float, tag: str) -> None: ...
    def sign(self, payload: Any) -> Any: ...
    def verify(self, node: str, payload: Any, sig: Any) -> bool: ...


@dataclass
class Config:
    protocol: str = "wbft"
    nodes: tuple[str, ...] = ()
    committee_share: float = 0.75  # wbft: the core cluster holds this share of the weight
    alpha: float = 0.5  # wbft: quality vs trust in the weight
    decay: float = 0.8  # wbft: EMA factor of the weight updates
    view_timeout: float = 2.0  # seconds after the node's own answer

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: "
                             f"{', '.join(PROTOCOLS)}")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError("node names must be unique")
        if len(self.nodes) < 4 and self.protocol in BFT:
            raise ValueError(f"{self.protocol} needs at least 4 nodes (3f+1 with f >= 1), "
                             f"got {len(self.nodes)}")
        if not 0.5 <= self.committee_share <= 1.0:
            raise ValueError("committee_share must be in 0.5..1")

    @property
    def f(self) -> int:
        """Faulty nodes tolerated by count (what equal-weight BFT can promise)."""
        return (len(self.nodes) - 1) // 3


@dataclass
class Decision:
    seq: int
    value: str
    view: int
    at: float
    answers: dict[str, str]


@dataclass
class Instance:
    """A node's state for one query."""

    seq: int
    view: int = 0
    start_view: int = 0  # the view this instance began in (the last decision's)
    my_answer: str | None = None
    answer_sig: Any = None
    key: str | None = None  # the previous query's key, published by the client
    answers: dict[str, tuple[str, Any]] = field(default_factory=dict)  # leader: node -> signed
    proposal: Msg | None = None  # the proposal this node accepted in its current view
    bodies: dict[str, Msg] = field(default_factory=dict)  # every proposal seen, by digest
    votes: dict[tuple[str, int, int, str, str], dict[str, Any]] = field(default_factory=dict)
    prepared: tuple[int, str, str, dict[str, Any]] | None = None  # view, value, ref, sigs
    committed_views: set[int] = field(default_factory=set)
    ready: dict[str, tuple[int, str]] = field(default_factory=dict)  # ref -> commit quorum
    view_changes: dict[int, dict[str, Msg]] = field(default_factory=dict)
    proposed_views: set[int] = field(default_factory=set)
    qc_sent: set[tuple[int, int]] = field(default_factory=set)  # hotstuff (view, phase)
    cert: dict[str, Any] = field(default_factory=dict)  # the commit certificate's signatures
    decided: Decision | None = None


class Node:
    """An honest replica of any of the five protocols."""

    def __init__(self, cfg: Config, ctx: Context,
                 on_decide: Callable[[str, Decision], None] | None = None) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, ctx.name
        self.book = WeightBook(cfg.nodes, alpha=cfg.alpha, decay=cfg.decay,
                               adaptive=cfg.protocol == "wbft")
        self.instances: dict[int, Instance] = {}
        self.decisions: dict[int, Decision] = {}
        self.on_decide = on_decide
        self.sent = 0
        self.certs: dict[int, dict[str, Any]] = {}  # seq -> how it was decided (for laggards)
        self.helped: set[tuple[int, str]] = set()
        self.height = 0  # decided instances; instance height+1 is the one in progress
        self.base_view = 0  # views persist: the next instance starts where the last decided
        self.waiting: list[Callable[[], None]] = []  # events of later instances, in order

    # ---- membership, weights, leaders ------------------------------------------------------
    def weights(self) -> dict[str, float]:
        return self.book.weights()

    def committee(self, view: int | None = None) -> list[str]:
        """Who votes in `view`.  wbft: the core cluster in an instance's first view; once a
        view failed, every node (a core cluster that cannot decide - too much Byzantine weight
        inside it - must not stall the network, and weights change only by decisions)."""
        if self.cfg.protocol != "wbft":
            return list(self.cfg.nodes)
        first = view is None or view <= self.base_view
        return self.book.committee(self.cfg.committee_share if first else 1.0)

    def leader(self, view: int) -> str:
        order = self.book.ranking() if self.cfg.protocol == "wbft" else list(self.cfg.nodes)
        return order[view % len(order)]

    def quorum(self, voters: Iterable[str], members: list[str]) -> bool:
        """More than 2/3 of the members' weight (a count, for equal weights)."""
        w = self.weights()
        held = sum(w[v] for v in set(voters) if v in w and v in members)
        return held > 2 / 3 * weight_of(members, w) + 1e-12

    def inst(self, seq: int) -> Instance:
        if seq not in self.instances:
            self.instances[seq] = Instance(seq, self.base_view, self.base_view)
        return self.instances[seq]

    def _send(self, dst: str, msg: Msg) -> None:
        self.sent += 1
        self.ctx.send(dst, msg)

    def _multicast(self, members: Iterable[str], msg: Msg) -> None:
        for m in members:
            if m != self.name:
                self._send(m, msg)

    # ---- events ----------------------------------------------------------------------------
    def on_answer(self, seq: int, answer: str, key: str | None = None) -> None:
        """This node's LLM answered query `seq`; `key` is the previous query's correct answer
        if the client published it (it becomes part of the committed record)."""
        if self.cfg.protocol == "majority":
            self._send(CLIENT, Msg("REPLY", self.name, seq, value=answer))
            return
        if seq > self.height + 1:
            self.waiting.append(lambda: self.on_answer(seq, answer, key))
            return
        if seq in self.decisions:
            return
        it = self.inst(seq)
        it.my_answer, it.key = answer, key
        it.answer_sig = self.ctx.sign(("answer", seq, answer))
        self._send_answer(it)
        self.ctx.set_timer(self.cfg.view_timeout, f"view:{seq}:{it.view}")

    def _send_answer(self, it: Instance) -> None:
        if it.my_answer is None:
            return
        msg = Msg("ANSWER", self.name, it.seq, it.view, it.my_answer, sig=it.answer_sig)
        leader = self.leader(it.view)
        if leader == self.name:
            self.on_message(msg)
        else:
            self._send(leader, msg)

    def on_timer(self, tag: str) -> None:
        kind, seq_s, view_s = tag.split(":")
        seq, view = int(seq_s), int(view_s)
        it = self.instances.get(seq)
        if kind != "view" or it is None or it.decided is not None or it.view != view:
            return
        if self.cfg.protocol in BFT:
            self._view_change(it, view + 1)
        elif self.cfg.protocol == "raft":  # election timeout: the next node takes over
            it.view = view + 1
            self._send_answer(it)
            self.ctx.set_timer(self.cfg.view_timeout, f"view:{seq}:{it.view}")

    def on_message(self, m: Msg) -> None:
        if m.seq in self.decisions:
            self._help(m)
            return
        if m.seq > self.height + 1:
            self.waiting.append(lambda: self.on_message(m))
            return
        handler = getattr(self, f"_on_{m.kind.lower()}", None)
        if handler is not None:
            handler(self.inst(m.seq), m)

    # ---- laggards: a node that missed a decision gets its certificate ---------------------
    def _help(self, m: Msg) -> None:
        """Someone still working on an instance we decided (its answer, a view change): send
        it the commit certificate and the proposal, once, so it can decide too."""
        cert = self.certs.get(m.seq)
        if cert is None or m.kind not in ("ANSWER", "VIEW_CHANGE") or m.sender == self.name \
                or (m.seq, m.sender) in self.helped:
            return
        self.helped.add((m.seq, m.sender))
        self._send(m.sender, Msg("CATCHUP", self.name, m.seq, cert["view"], cert["value"],
                                 ref=cert["ref"], body=cert))

    def _on_catchup(self, it: Instance, m: Msg) -> None:
        body = m.body or {}
        proposal = body.get("proposal") or {}
        if proposal_digest(m.value, proposal) != m.ref:
            return
        if self.cfg.protocol == "hotstuff":
            payload = ("VOTE", m.seq, m.view, 3, m.value, m.ref)
        else:
            payload = ("COMMIT", m.seq, m.view, m.value, m.ref)
        if self.cfg.protocol != "raft":
            voters = {n for n, sig in (body.get("sigs") or {}).items()
                      if self.ctx.verify(n, payload, sig)}
            if not self.quorum(voters, self.committee(m.view)):
                return
        elif m.sender != self.leader(m.view):
            return
        self._decide(it, m.value or "", m.view, Msg("PROPOSE", m.sender, m.seq, m.view,
                                                     m.value, ref=m.ref, body=proposal))

    # ---- 1-2: answers and the proposal -----------------------------------------------------
    def _on_answer(self, it: Instance, m: Msg) -> None:
        if m.value is None or not self.ctx.verify(m.sender, ("answer", m.seq, m.value), m.sig):
            return
        it.answers[m.sender] = (m.value, m.sig)
        self._maybe_propose(it)

    def _maybe_propose(self, it: Instance) -> None:
        view = it.view
        if self.leader(view) != self.name or view in it.proposed_views or it.my_answer is None:
            return
        proof: dict[str, Any] = {}
        if view > it.start_view and self.cfg.protocol in BFT:
            vcs = {n: vc for n, vc in it.view_changes.get(view, {}).items()
                   if self._backed(it.seq, vc)}
            if not self.quorum(vcs, self.committee(view)):
                return
            # the new-view proof: every view change's signed claim of what it had prepared
            proof = {"vcs": {n: [(vc.body or {}).get("pv"), (vc.body or {}).get("pref"),
                                 vc.sig] for n, vc in vcs.items()}}
            carried = _highest_prepared(vcs.values())
            if carried is not None:
                pview, value, _ref, sigs, body = carried
                self._propose(it, value, {"answers": body.get("answers"), "key": body.get("key"),
                                          "prepared": sigs, "pview": pview, **proof})
                return
        if not self.quorum(it.answers, list(self.cfg.nodes)):
            return
        answers = {n: a for n, (a, _) in it.answers.items()}
        value = weighted_plurality(answers, self.weights())
        self._propose(it, value or "", {"answers": {n: [a, s] for n, (a, s) in
                                                    it.answers.items()}, "key": it.key,
                                        **proof})

    def _backed(self, seq: int, vc: Msg) -> bool:
        """A view change whose claim of a prepared value comes with its certificate."""
        body = vc.body or {}
        p = body.get("prepared")
        if body.get("pv") is None:
            return p is None
        if not p or p["view"] != body["pv"] or p["ref"] != body.get("pref"):
            return False
        voters = {n for n, sig in (p.get("sigs") or {}).items()
                  if self.ctx.verify(n, self._cert_payload(seq, p["view"], p["value"], p["ref"]),
                                     sig)}
        return self.quorum(voters, self.committee(p["view"]))

    def _propose(self, it: Instance, value: str, body: dict[str, Any]) -> None:
        it.proposed_views.add(it.view)
        kind = "APPEND" if self.cfg.protocol == "raft" else "PROPOSE"
        msg = Msg(kind, self.name, it.seq, it.view, value,
                  ref=proposal_digest(value, body), body=body)
        self._multicast(self.cfg.nodes, msg)
        self.on_message(msg)

    def _cert_payload(self, seq: int, view: int, value: str | None, ref: str) -> Any:
        """What a prepared certificate's signatures sign: PREPAREs (wbft, pbft) or the first
        phase's votes (hotstuff's lock)."""
        if self.cfg.protocol == "hotstuff":
            return ("VOTE", seq, view, 1, value, ref)
        return ("PREPARE", seq, view, value, ref)

    def valid_proposal(self, it: Instance, m: Msg) -> bool:
        """A replica's own check of the leader's proposal (never taken on trust)."""
        if m.sender != self.leader(m.view) or m.value is None:
            return False
        body = m.body or {}
        if m.ref != proposal_digest(m.value, body):
            return False
        if m.view > it.start_view and self.cfg.protocol in BFT:
            claims = {n: (pv, pref) for n, (pv, pref, sig) in (body.get("vcs") or {}).items()
                      if self.ctx.verify(n, ("VC", m.seq, m.view, pv, pref), sig)}
            if not self.quorum(claims, self.committee(m.view)):
                return False
            highest = max((pv for pv, _ in claims.values() if pv is not None), default=None)
            if highest is not None and ("prepared" not in body or body["pview"] != highest):
                return False  # a prepared value may have committed: it must be carried
        if "prepared" in body:  # a proposal carried across a view change: its certificate
            voters = {n for n, s in (body["prepared"] or {}).items() if self.ctx.verify(
                n, self._cert_payload(m.seq, body["pview"], m.value, m.ref), s)}
            return self.quorum(voters, self.committee(body["pview"]))
        answers: dict[str, str] = {}
        for node, (ans, sig) in (body.get("answers") or {}).items():
            if node in self.cfg.nodes and self.ctx.verify(node, ("answer", m.seq, ans), sig):
                answers[node] = ans
        if not self.quorum(answers, list(self.cfg.nodes)):
            return False
        return weighted_plurality(answers, self.weights()) == m.value

    # ---- 3a: wbft / pbft (and hotstuff's entry) --------------------------------------------
    def _on_propose(self, it: Instance, m: Msg) -> None:
        if m.sender == self.leader(m.view):
            it.bodies.setdefault(m.ref, m)
        if m.ref in it.ready:  # a commit quorum was waiting for this proposal's contents
            view, value = it.ready[m.ref]
            self._decide(it, value, view, m)
            return
        if m.view < it.view or not self.valid_proposal(it, m):
            return
        if it.proposal is not None and it.proposal.view == m.view:
            return  # one proposal per view: a second one is equivocation
        if it.prepared is not None and m.ref != it.prepared[2] and m.view <= it.start_view:
            return  # locked in this view (later views are checked against their VC proof)
        it.view = m.view
        it.proposal = m
        if self.name not in self.committee(m.view):
            return  # not in the core cluster: it learns the decision from the commits
        if self.cfg.protocol == "hotstuff":
            self._hs_vote(it, m, 1)
            return
        sig = self.ctx.sign(("PREPARE", m.seq, m.view, m.value, m.ref))
        vote = Msg("PREPARE", self.name, m.seq, m.view, m.value, ref=m.ref, sig=sig)
        self._multicast(self.committee(m.view), vote)
        self._on_prepare(it, vote)

    def _tally(self, it: Instance, m: Msg) -> dict[str, Any]:
        return it.votes.setdefault((m.kind, m.view, m.phase, m.value or "", m.ref), {})

    def _on_prepare(self, it: Instance, m: Msg) -> None:
        if m.sender not in self.committee(m.view) or not self.ctx.verify(
                m.sender, ("PREPARE", m.seq, m.view, m.value, m.ref), m.sig):
            return
        tally = self._tally(it, m)
        tally[m.sender] = m.sig
        p = it.proposal
        if p is None or (p.view, p.ref) != (m.view, m.ref) or m.view in it.committed_views:
            return
        if self.quorum(tally, self.committee(m.view)):
            it.prepared = (m.view, m.value or "", m.ref, dict(tally))
            it.committed_views.add(m.view)
            sig = self.ctx.sign(("COMMIT", m.seq, m.view, m.value, m.ref))
            c = Msg("COMMIT", self.name, m.seq, m.view, m.value, ref=m.ref, sig=sig)
            self._multicast(self.cfg.nodes, c)
            self._on_commit(it, c)

    def _on_commit(self, it: Instance, m: Msg) -> None:
        if m.sender not in self.committee(m.view) or not self.ctx.verify(
                m.sender, ("COMMIT", m.seq, m.view, m.value, m.ref), m.sig):
            return
        tally = self._tally(it, m)
        tally[m.sender] = m.sig
        if self.quorum(tally, self.committee(m.view)):
            it.cert = dict(tally)
            self._committed(it, m.view, m.value or "", m.ref)

    def _committed(self, it: Instance, view: int, value: str, ref: str) -> None:
        """A commit certificate exists: decide, with the proposal's contents once held."""
        if ref in it.bodies:
            self._decide(it, value, view, it.bodies[ref])
        else:
            it.ready[ref] = (view, value)

    # ---- 3b: hotstuff (votes to the leader, the leader broadcasts each certificate) ---------
    def _hs_vote(self, it: Instance, m: Msg, phase: int) -> None:
        sig = self.ctx.sign(("VOTE", it.seq, m.view, phase, m.value, m.ref))
        vote = Msg("VOTE", self.name, it.seq, m.view, m.value, phase, m.ref, sig=sig)
        leader = self.leader(m.view)
        if leader == self.name:
            self._on_vote(it, vote)
        else:
            self._send(leader, vote)

    def _on_vote(self, it: Instance, m: Msg) -> None:
        if self.leader(m.view) != self.name or not self.ctx.verify(
                m.sender, ("VOTE", m.seq, m.view, m.phase, m.value, m.ref), m.sig):
            return
        tally = self._tally(it, m)
        tally[m.sender] = m.sig
        if self.quorum(tally, self.committee(m.view)) and (m.view, m.phase) not in it.qc_sent:
            it.qc_sent.add((m.view, m.phase))
            qc = Msg("QC", self.name, m.seq, m.view, m.value, m.phase, m.ref, body=dict(tally))
            self._multicast(self.cfg.nodes, qc)
            self._on_qc(it, qc)

    def _on_qc(self, it: Instance, m: Msg) -> None:
        voters = {n for n, s in (m.body or {}).items()
                  if self.ctx.verify(n, ("VOTE", m.seq, m.view, m.phase, m.value, m.ref), s)}
        if not self.quorum(voters, self.committee(m.view)) or it.decided is not None:
            return
        if m.phase == 1 and (it.prepared is None or it.prepared[0] < m.view):
            it.prepared = (m.view, m.value or "", m.ref, {n: m.body[n] for n in voters})
        if m.phase >= 3:
            it.cert = {n: m.body[n] for n in voters}
            self._committed(it, m.view, m.value or "", m.ref)
        elif self.name in self.committee(m.view) and it.proposal is not None and \
                it.proposal.ref == m.ref:
            self._hs_vote(it, it.proposal, m.phase + 1)

    # ---- 3c: raft (no validation: crash faults only) ----------------------------------------
    def _on_append(self, it: Instance, m: Msg) -> None:
        if m.sender != self.leader(m.view):
            return
        it.bodies.setdefault(m.ref, m)
        it.proposal = m  # a follower takes what its leader sends
        it.view = max(it.view, m.view)
        if m.ref in it.ready:
            view, value = it.ready[m.ref]
            self._decide(it, value, view, m)
            return
        ack = Msg("ACK", self.name, m.seq, m.view, m.value, ref=m.ref)
        if m.sender == self.name:
            self._on_ack(it, ack)
        else:
            self._send(m.sender, ack)

    def _on_ack(self, it: Instance, m: Msg) -> None:
        if self.leader(m.view) != self.name:
            return
        tally = self._tally(it, m)
        tally[m.sender] = True
        if len(tally) > len(self.cfg.nodes) / 2 and m.view not in it.committed_views:
            it.committed_views.add(m.view)
            self._multicast(self.cfg.nodes, Msg("DECIDE", self.name, m.seq, m.view, m.value,
                                                ref=m.ref))
            self._committed(it, m.view, m.value or "", m.ref)

    def _on_decide(self, it: Instance, m: Msg) -> None:
        if m.sender == self.leader(m.view):
            self._committed(it, m.view, m.value or "", m.ref)

    # ---- view change -------------------------------------------------------------------------
    def _view_change(self, it: Instance, view: int) -> None:
        if view <= it.view:
            return
        it.view = view
        it.proposal = None
        prepared = None
        if it.prepared is not None:
            pv, pval, ref, sigs = it.prepared
            body = it.bodies[ref].body if ref in it.bodies else {}
            prepared = {"view": pv, "value": pval, "ref": ref, "sigs": sigs,
                        "answers": body.get("answers"), "key": body.get("key")}
        pv = it.prepared[0] if it.prepared is not None else None
        pref = it.prepared[2] if it.prepared is not None else None
        vc = Msg("VIEW_CHANGE", self.name, it.seq, view, body={"prepared": prepared, "pv": pv,
                                                                 "pref": pref},
                 sig=self.ctx.sign(("VC", it.seq, view, pv, pref)))
        self._multicast(self.committee(view), vc)
        self._on_view_change(it, vc)
        self._send_answer(it)
        backoff = 2 ** min(view - it.start_view, 6)
        self.ctx.set_timer(self.cfg.view_timeout * backoff, f"view:{it.seq}:{view}")

    def _on_view_change(self, it: Instance, m: Msg) -> None:
        body = m.body or {}
        if m.sender not in self.committee(m.view) or not self.ctx.verify(
                m.sender, ("VC", m.seq, m.view, body.get("pv"), body.get("pref")), m.sig):
            return
        it.view_changes.setdefault(m.view, {})[m.sender] = m
        w = self.weights()
        members = self.committee(m.view)
        moved = set(it.view_changes[m.view]) & set(members)
        if m.view > it.view and weight_of(moved, w) > weight_of(members, w) / 3:
            self._view_change(it, m.view)  # more than 1/3 moved on: an honest node did, join
        elif it.view == m.view:
            self._maybe_propose(it)

    # ---- decision -------------------------------------------------------------------------------
    def _decide(self, it: Instance, value: str, view: int, proposal: Msg) -> None:
        if it.decided is not None:
            return
        body = proposal.body or {}
        answers = {n: a for n, (a, _) in (body.get("answers") or {}).items()}
        d = Decision(it.seq, value, view, self.ctx.now(), answers)
        it.decided = d
        self.decisions[it.seq] = d
        self.height = max(self.height, it.seq)
        self.base_view = max(self.base_view, view)
        self.certs[it.seq] = {"view": view, "value": value, "ref": proposal.ref,
                              "sigs": it.cert, "proposal": {"answers": body.get("answers"),
                                                            "key": body.get("key")}}
        self.book.update(answers, value, body.get("key"))
        reply_body = {"answers": body.get("answers"), "key": body.get("key")}
        self._send(CLIENT, Msg("REPLY", self.name, it.seq, view, value, ref=proposal.ref,
                               body=reply_body))
        if self.on_decide is not None:
            self.on_decide(self.name, d)
        waiting, self.waiting = self.waiting, []
        for event in waiting:
            event()


def _highest_prepared(vcs: Iterable[Msg]) -> tuple[int, str, str, dict[str, Any],
                                                   dict[str, Any]] | None:
    best = None
    for vc in vcs:
        p = (vc.body or {}).get("prepared")
        if p and (best is None or p["view"] > best[0]):
            best = (p["view"], p["value"], p["ref"], p["sigs"],
                    {"answers": p.get("answers"), "key": p.get("key")})
    return best


class Client:
    """The query's submitter: accepts an answer once replies for the same committed proposal
    carry more than 1/3 of the weight (so at least one honest node decided it), or, for raft,
    the first reply (crash faults only), or, for majority, the plurality of all answers (or of
    those in by the deadline, `close`).  For wbft it keeps its own weight book, updated from
    the committed answer set the accepting replies carry (signed answers, checked), so its
    weights are the nodes'."""

    def __init__(self, cfg: Config, verify: Callable[[str, Any, Any], bool]) -> None:
        self.cfg, self.verify = cfg, verify
        self.book = WeightBook(cfg.nodes, alpha=cfg.alpha, decay=cfg.decay,
                               adaptive=cfg.protocol == "wbft")
        self.replies: dict[int, dict[str, Msg]] = {}
        self.accepted: dict[int, str] = {}

    def on_reply(self, m: Msg) -> str | None:
        """The accepted answer of m.seq once there is one (returned once), else None."""
        if m.seq in self.accepted or m.sender not in self.cfg.nodes or m.value is None:
            return None
        got = self.replies.setdefault(m.seq, {})
        got[m.sender] = m
        if self.cfg.protocol == "raft":
            return self._accept(m.seq, m.value, m.body)
        if self.cfg.protocol == "majority":
            return self.close(m.seq) if len(got) == len(self.cfg.nodes) else None
        w = self.book.weights()
        tally: dict[tuple[str, str], set[str]] = {}
        for r in got.values():
            tally.setdefault((r.value or "", r.ref), set()).add(r.sender)
        for (value, ref), who in tally.items():
            if weight_of(who, w) > weight_of(self.cfg.nodes, w) / 3 + 1e-12:
                body = next(r.body for r in got.values() if r.sender in who and r.ref == ref)
                return self._accept(m.seq, value, body)
        return None

    def close(self, seq: int) -> str | None:
        """majority: decide with what has arrived (the deadline passed)."""
        if seq in self.accepted:
            return None
        got = {n: r.value or "" for n, r in self.replies.get(seq, {}).items()}
        value = weighted_plurality(got, self.book.weights())
        return self._accept(seq, value, None) if value is not None else None

    def _accept(self, seq: int, value: str, body: Any) -> str:
        self.accepted[seq] = value
        if body:
            answers = {n: a for n, (a, sig) in (body.get("answers") or {}).items()
                       if self.verify(n, ("answer", seq, a), sig)}
            self.book.update(answers, value, body.get("key"))
        return value
