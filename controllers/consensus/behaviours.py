"""Byzantine behaviours: nodes that run the protocol's code but lie, stay silent or stall.

Each is the honest `Node` with a few methods overridden, so a faulty node speaks the same
protocol and only its choices differ.  The adversary is strong on purpose: it knows the
question's key (it can always pick a wrong answer) and colluders agree on one wrong answer.

    wrong        answers a wrong option, otherwise follows the protocol (a hallucinating LLM)
    random       answers a random option
    equivocate   tells different peers different things: its proposals, its answers and its
                 votes come in two versions, one per half of its audience
    silent       sends nothing at all (crashed, or withholding)
    late         everything it sends leaves `late_s` seconds late
    collude      the group answers the same wrong option, votes for any proposal of a fellow
                 colluder without checking it, and as leader proposes the group's answer
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from controllers.consensus.protocol import CLIENT, Config, Context, Instance, Msg, Node

BEHAVIOURS = ("honest", "wrong", "random", "equivocate", "silent", "late", "collude")
CHOICES = ("A", "B", "C", "D")


def wrong_answer(seq: int, key: str | None, salt: int = 0) -> str:
    """A wrong option, the same for every colluder of an instance."""
    options = [c for c in CHOICES if c != key] or list(CHOICES)
    return options[(seq * 7 + salt) % len(options)]


class Byzantine(Node):
    def __init__(self, cfg: Config, ctx: Context, behaviour: str,
                 colluders: frozenset[str] = frozenset(), late_s: float = 3.0,
                 seed: int = 0) -> None:
        super().__init__(cfg, ctx)
        if behaviour not in BEHAVIOURS or behaviour == "honest":
            raise ValueError(f"unknown Byzantine behaviour {behaviour!r}; known: "
                             f"{', '.join(BEHAVIOURS[1:])}")
        self.behaviour = behaviour
        self.colluders = colluders
        self.late_s = late_s
        self.rng = random.Random(seed)
        self.delayed: dict[str, tuple[str, Msg]] = {}
        self.held = 0
        self.keys: dict[int, str | None] = {}  # the adversary knows each question's key

    # what it answers
    def answer_for(self, seq: int, honest: str, key: str | None) -> str:
        self.keys[seq] = key
        if self.behaviour in ("collude", "equivocate"):
            return wrong_answer(seq, key)  # one wrong answer shared by the group
        if self.behaviour == "wrong":
            return wrong_answer(seq, key, salt=zlib.crc32(self.name.encode()))
        if self.behaviour == "random":
            return self.rng.choice(CHOICES)
        return honest

    def on_answer(self, seq: int, answer: str, key: str | None = None) -> None:
        if self.behaviour == "silent":
            return
        super().on_answer(seq, answer, key)

    # what it sends
    def _send(self, dst: str, msg: Msg) -> None:
        if self.behaviour == "silent":
            return
        if self.behaviour == "late":
            self.held += 1
            tag = f"late:{self.held}"
            self.delayed[tag] = (dst, msg)
            self.ctx.set_timer(self.late_s, tag)
            return
        if self.behaviour == "equivocate" and dst != CLIENT and zlib.crc32(dst.encode()) % 2:
            msg = self._twin(msg)
        self.sent += 1
        self.ctx.send(dst, msg)

    def _twin(self, m: Msg) -> Msg:
        """The other version of a message, for the other half of the peers."""
        if m.value is None:
            return m
        alt = wrong_answer(m.seq, m.value, salt=1)
        sign = {"ANSWER": ("answer", m.seq, alt),
                "PREPARE": ("PREPARE", m.seq, m.view, alt, m.ref),
                "COMMIT": ("COMMIT", m.seq, m.view, alt, m.ref),
                "VOTE": ("VOTE", m.seq, m.view, m.phase, alt, m.ref)}.get(m.kind)
        return Msg(m.kind, m.sender, m.seq, m.view, alt, m.phase, m.ref, m.body,
                   self.ctx.sign(sign) if sign else m.sig)

    def on_timer(self, tag: str) -> None:
        if tag.startswith("late:"):
            dst, msg = self.delayed.pop(tag)
            self.sent += 1
            self.ctx.send(dst, msg)
            return
        super().on_timer(tag)

    # how it judges proposals
    def valid_proposal(self, it: Instance, m: Msg) -> bool:
        if self.behaviour == "collude" and m.sender in self.colluders:
            return True
        return super().valid_proposal(it, m)

    def _maybe_propose(self, it: Instance) -> None:
        if self.behaviour != "collude" or self.leader(it.view) != self.name \
                or it.view in it.proposed_views or it.my_answer is None:
            super()._maybe_propose(it)
            return
        answers: dict[str, Any] = {n: [a, s] for n, (a, s) in it.answers.items()}
        self._propose(it, it.my_answer, {"answers": answers, "key": it.key})
