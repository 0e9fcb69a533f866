"""Types shared by the IoV consensus protocols (DRDST's DAG and the PBFT baseline).

Both protocols are deterministic, message-driven state machines: the caller (a discrete-event
simulator or a live node exchanging UDP/TCP datagrams) feeds them transactions, messages and
ticks and carries out the `Send`s they return.  Nothing here does I/O or reads a clock, so the
same code gives the same answers in the simulator and in real processes.

Message bodies are plain JSON (str/int/float/list/dict) because live nodes send them as JSON;
`size_bytes` on every `Send` is an honest wire-size estimate so the simulator can charge
transmission delay and count traffic without serialising anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tx:
    """A transaction.  `shards[0]` is the origin shard; more than one shard = cross-shard."""

    id: str
    shards: tuple[int, ...]
    created_ms: float
    size_bytes: int = 250

    @property
    def cross_shard(self) -> bool:
        return len(self.shards) > 1


@dataclass(frozen=True)
class Send:
    """One message to put on the wire."""

    dst: str
    kind: str
    body: dict
    size_bytes: int


@dataclass(frozen=True)
class Commit:
    """A node learned that `tx_id` is final in `shard` (position `order` in its total order)."""

    tx_id: str
    shard: int
    at_ms: float
    order: int


def tx_to_wire(tx: Tx) -> dict[str, Any]:
    return {"id": tx.id, "sh": list(tx.shards), "t": tx.created_ms, "b": tx.size_bytes}


def tx_from_wire(d: dict[str, Any]) -> Tx:
    return Tx(str(d["id"]), tuple(int(s) for s in d["sh"]), float(d["t"]), int(d["b"]))


def canonical(obj: Any) -> bytes:
    """The bytes every node hashes: key order and spacing fixed so all nodes agree."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def max_faulty(n: int) -> int:
    """f, the most members that may be gone while a BFT group of n still makes progress."""
    return max(0, (n - 1) // 3)


def supermajority(n: int) -> int:
    """More than two thirds of n (the hashgraph / PBFT quorum, 2f+1 when n = 3f+1)."""
    return 2 * n // 3 + 1


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


class Outcomes:
    """What a protocol node learned since its runtime last asked: commits and give-ups
    (both protocols report through these two lists)."""

    def __init__(self) -> None:
        self._commits: list[Commit] = []
        self._failed: list[str] = []

    def drain_commits(self) -> list[Commit]:
        out, self._commits = self._commits, []
        return out

    def failed(self) -> list[str]:
        out, self._failed = self._failed, []
        return out


class AgedSet:
    """A set whose keys are forgotten `horizon_ms` after the time given with them.

    Protocols remember transaction ids to drop duplicates; duplicates only arrive within a
    timeout or two of a transaction's creation, so forgetting old ids bounds memory on long
    runs without letting a duplicate through.
    """

    def __init__(self, horizon_ms: float) -> None:
        self.horizon_ms = horizon_ms
        self._born: dict[Any, float] = {}
        self._next_prune = 0.0

    def add(self, key: Any, born_ms: float) -> None:
        self._born.setdefault(key, born_ms)

    def __contains__(self, key: object) -> bool:
        return key in self._born

    def __len__(self) -> int:
        return len(self._born)

    def prune(self, now_ms: float) -> None:
        if now_ms < self._next_prune:
            return
        self._next_prune = now_ms + self.horizon_ms / 4
        floor = now_ms - self.horizon_ms
        self._born = {k: t for k, t in self._born.items() if t >= floor}
