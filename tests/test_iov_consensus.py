"""The IoV consensus state machines (DRDST's DAG and the PBFT baseline) on a tiny in-test bus.

The bus is a deterministic discrete-event loop: a heap of (deliver_at_ms, seq, dst, src, kind,
body) with a fixed delay per ordered node pair, ticks for every node, and nodes that can vanish
(everything sent to them afterwards is lost, and they stop ticking).  Bodies go through JSON
on the way, as they would between live nodes.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from typing import Any

import pytest

from controllers.iov.dag import DagNode
from controllers.iov.messages import Commit, Send, Tx, stable_seed
from controllers.iov.pbft import PbftNode

pytestmark = pytest.mark.unit

Node = DagNode | PbftNode


class Bus:
    """Drives protocol nodes: message delivery, ticks, submissions and departures."""

    def __init__(self, nodes: dict[str, Node], *, tick_ms: float = 50.0,
                 delay: Callable[[str, str], float] | None = None, wire_json: bool = True,
                 ) -> None:
        self.nodes = nodes
        self.tick_ms = tick_ms
        self.delay = delay or (lambda a, b: 3.0 + stable_seed(a, b) % 18)
        self.wire_json = wire_json
        self.heap: list[tuple[float, int, str, str, str, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.gone: set[str] = set()
        self.commits: dict[str, list[Commit]] = {n: [] for n in nodes}
        self.failed: dict[str, list[str]] = {n: [] for n in nodes}
        self.bytes_sent = 0
        self.messages = 0
        for i, name in enumerate(sorted(nodes)):  # staggered ticks, as real nodes would be
            self._push((i * 7.0) % tick_ms, name, "", "__tick__", None)

    def _push(self, at: float, dst: str, src: str, kind: str, body: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, dst, src, kind, body))

    def submit(self, at_ms: float, name: str, tx: Tx) -> None:
        self._push(at_ms, name, "", "__submit__", tx)

    def vanish(self, at_ms: float, name: str) -> None:
        self._push(at_ms, name, "", "__vanish__", None)

    def deliver(self, src: str, sends: list[Send]) -> None:
        for s in sends:
            assert s.size_bytes > 0
            self.bytes_sent += s.size_bytes
            self.messages += 1
            body = json.loads(json.dumps(s.body)) if self.wire_json else s.body
            self._push(self.now + self.delay(src, s.dst), s.dst, src, s.kind, body)

    def run(self, until_ms: float) -> None:
        while self.heap and self.heap[0][0] <= until_ms:
            at, _, dst, src, kind, body = heapq.heappop(self.heap)
            self.now = at
            if kind == "__vanish__":
                self.gone.add(dst)
                continue
            if dst in self.gone or dst not in self.nodes:
                continue
            node = self.nodes[dst]
            if kind == "__tick__":
                out = node.on_tick(at)
                self._push(at + self.tick_ms, dst, "", "__tick__", None)
            elif kind == "__submit__":
                out = node.submit(at, body)
            else:
                out = node.on_message(at, src, kind, body)
            self.deliver(dst, out)
            self.commits[dst] += node.drain_commits()
            self.failed[dst] += node.failed()
        self.now = until_ms

    def order(self, name: str, shard: int | None = None) -> list[str]:
        got = [c for c in self.commits[name] if shard is None or c.shard == shard]
        return [c.tx_id for c in sorted(got, key=lambda c: c.order)]


def shard_members(sizes: list[int]) -> dict[int, list[str]]:
    return {s: [f"s{s}n{i}" for i in range(k)] for s, k in enumerate(sizes)}


def make_nodes(cls: type, members: dict[int, list[str]], **kw: Any) -> dict[str, Node]:
    return {name: cls(name, s, members, **kw) for s, names in members.items() for name in names}


def load(bus: Bus, members: dict[int, list[str]], *, shard: int, count: int, start_ms: float,
         every_ms: float, cross_to: int | None = None, cross_every: int = 0,
         prefix: str = "t", avoid: frozenset[str] = frozenset()) -> list[Tx]:
    """Submit `count` txs at members of `shard` (round robin), every cross_every-th one
    cross-shard to `cross_to`."""
    entry = [m for m in members[shard] if m not in avoid]
    txs = []
    for i in range(count):
        at = start_ms + i * every_ms
        cross = cross_to is not None and cross_every and i % cross_every == 0
        tx = Tx(f"{prefix}{shard}-{i}", (shard, cross_to) if cross else (shard,), at)
        bus.submit(at, entry[i % len(entry)], tx)
        txs.append(tx)
    return txs


# ---- DAG (DRDST) -----------------------------------------------------------------------------
def test_dag_all_members_commit_same_order() -> None:
    members = shard_members([5])
    bus = Bus(make_nodes(DagNode, members))
    txs = load(bus, members, shard=0, count=60, start_ms=100, every_ms=20)
    bus.run(5000)
    ref = bus.order("s0n0")
    assert sorted(ref) == sorted(t.id for t in txs)
    for name in members[0]:
        assert bus.order(name) == ref
        assert [c.order for c in sorted(bus.commits[name], key=lambda c: c.order)] == \
            list(range(1, len(ref) + 1))
    # fairness: a tx submitted a second after another (more than gossip needs) is ordered later
    pos = {t: i for i, t in enumerate(ref)}
    late = [(a, b) for a in txs for b in txs if b.created_ms - a.created_ms > 1000]
    assert late and all(pos[a.id] < pos[b.id] for a, b in late)
    assert not any(bus.failed.values())


def test_dag_cross_shard_commits_in_both_shards() -> None:
    members = shard_members([4, 4])
    bus = Bus(make_nodes(DagNode, members))
    txs0 = load(bus, members, shard=0, count=30, start_ms=100, every_ms=30, cross_to=1,
                cross_every=3)
    txs1 = load(bus, members, shard=1, count=20, start_ms=120, every_ms=40)
    bus.run(8000)
    cross = [t for t in txs0 if t.cross_shard]
    for name in members[0]:
        assert set(bus.order(name)) == {t.id for t in txs0}
    for name in members[1]:
        got = set(bus.order(name))
        assert got == {t.id for t in txs1} | {t.id for t in cross}
        assert bus.order(name) == bus.order("s1n0")
    for name in members[0]:
        assert bus.order(name) == bus.order("s0n0")
    for t in cross:  # same tx id committed on both sides, once per node
        shards = {c.shard for n in bus.commits for c in bus.commits[n] if c.tx_id == t.id}
        assert shards == {0, 1}
    assert not any(bus.failed.values())


@pytest.mark.parametrize(("size", "leaving"), [(4, 1), (7, 2)])
def test_dag_survives_members_leaving(size: int, leaving: int) -> None:
    members = shard_members([size])
    bus = Bus(make_nodes(DagNode, members))
    gone = members[0][1:1 + leaving]
    for i, name in enumerate(gone):
        bus.vanish(1500 + 700 * i, name)
    txs = load(bus, members, shard=0, count=60, start_ms=100, every_ms=50,
               avoid=frozenset(gone))
    bus.run(9000)
    alive = [m for m in members[0] if m not in gone]
    ref = bus.order(alive[0])
    assert sorted(ref) == sorted(t.id for t in txs)
    for name in alive:
        assert bus.order(name) == ref
        assert set(gone) <= bus.nodes[name].suspects  # skipped in peer choice after misses
    assert not any(bus.failed[n] for n in alive)


def test_dag_cross_shard_three_shards() -> None:
    members = shard_members([4, 4, 4])
    bus = Bus(make_nodes(DagNode, members))
    tx = Tx("tri", (2, 0, 1), 300)
    bus.submit(300, "s2n3", tx)
    bus.run(5000)
    for name in bus.nodes:
        got = [c for c in bus.commits[name] if c.tx_id == "tri"]
        assert len(got) == 1 and got[0].shard == int(name[1])


def test_dag_failed_when_other_shard_is_gone() -> None:
    members = shard_members([4, 4])
    bus = Bus(make_nodes(DagNode, members, timeout_ms=3000))
    for name in members[1]:
        bus.vanish(0, name)
    ok = Tx("ok", (0,), 200)
    doomed = Tx("doomed", (0, 1), 200)
    bus.submit(200, "s0n0", ok)
    bus.submit(200, "s0n1", doomed)
    bus.run(5000)
    assert "ok" in bus.order("s0n0")
    assert "doomed" not in bus.order("s0n0")
    assert "doomed" in bus.failed["s0n1"]
    assert all("ok" not in f for f in bus.failed.values())


def test_dag_failed_when_own_shard_is_gone() -> None:
    members = shard_members([4])
    bus = Bus(make_nodes(DagNode, members, timeout_ms=2000))
    for name in members[0][:2]:
        bus.vanish(500, name)  # 2 of 4 gone: no supermajority left
    bus.submit(1000, "s0n3", Tx("stuck", (0,), 1000))
    bus.run(4000)
    assert bus.failed["s0n3"] == ["stuck"]
    assert "stuck" not in bus.order("s0n3")


def test_dag_reshard_keeps_going() -> None:
    members = shard_members([4, 4])
    bus = Bus(make_nodes(DagNode, members))
    load(bus, members, shard=0, count=10, start_ms=100, every_ms=50)
    bus.run(3000)
    new = {0: members[0][:3] + members[1][:1], 1: members[1][1:] + members[0][3:]}
    for s, names in new.items():
        for name in names:
            bus.deliver(name, bus.nodes[name].reshard(3000, new, s))
    txs = load(bus, new, shard=1, count=10, start_ms=3100, every_ms=50, prefix="e1-")
    bus.run(7000)
    for name in new[1]:
        assert {t.id for t in txs} <= set(bus.order(name))


# ---- PBFT baseline ---------------------------------------------------------------------------
def test_pbft_same_order_at_all_replicas() -> None:
    members = shard_members([7])
    bus = Bus(make_nodes(PbftNode, members))
    txs = load(bus, members, shard=0, count=80, start_ms=100, every_ms=15)
    bus.run(4000)
    ref = bus.order("s0n0")
    assert sorted(ref) == sorted(t.id for t in txs)
    for name in members[0]:
        assert bus.order(name) == ref
    assert not any(bus.failed.values())


def test_pbft_view_change_when_leader_leaves() -> None:
    members = shard_members([4])
    bus = Bus(make_nodes(PbftNode, members))
    leader = members[0][0]
    bus.vanish(1000, leader)
    txs = load(bus, members, shard=0, count=40, start_ms=100, every_ms=50,
               avoid=frozenset({leader}))
    bus.run(9000)
    alive = members[0][1:]
    ref = bus.order(alive[0])
    assert sorted(ref) == sorted(t.id for t in txs)
    for name in alive:
        assert bus.order(name) == ref
        assert bus.nodes[name].view >= 1
    assert not any(bus.failed[n] for n in alive)


def test_pbft_two_leaders_in_a_row_leave() -> None:
    members = shard_members([7])
    bus = Bus(make_nodes(PbftNode, members))
    gone = members[0][:2]  # leaders of views 0 and 1
    for name in gone:
        bus.vanish(600, name)
    txs = load(bus, members, shard=0, count=30, start_ms=100, every_ms=50,
               avoid=frozenset(gone))
    bus.run(12000)
    alive = members[0][2:]
    ref = bus.order(alive[0])
    assert sorted(ref) == sorted(t.id for t in txs)
    for name in alive:
        assert bus.order(name) == ref
        assert bus.nodes[name].view == 2


def test_pbft_two_phase_commit_three_shards() -> None:
    members = shard_members([4, 4, 4])
    bus = Bus(make_nodes(PbftNode, members))
    bus.submit(300, "s2n3", Tx("tri", (2, 0, 1), 300))
    bus.run(4000)
    for name in bus.nodes:
        got = [c for c in bus.commits[name] if c.tx_id == "tri"]
        assert len(got) == 1 and got[0].shard == int(name[1])


def test_pbft_two_phase_commit_across_shards() -> None:
    members = shard_members([4, 4])
    bus = Bus(make_nodes(PbftNode, members))
    txs0 = load(bus, members, shard=0, count=30, start_ms=100, every_ms=30, cross_to=1,
                cross_every=3)
    txs1 = load(bus, members, shard=1, count=10, start_ms=120, every_ms=40)
    bus.run(6000)
    cross = {t.id for t in txs0 if t.cross_shard}
    for name in members[0]:
        assert set(bus.order(name)) == {t.id for t in txs0}
        assert bus.order(name) == bus.order("s0n0")
    for name in members[1]:
        assert set(bus.order(name)) == {t.id for t in txs1} | cross
        assert bus.order(name) == bus.order("s1n0")
    assert not any(bus.failed.values())


def test_pbft_aborts_when_other_shard_is_gone() -> None:
    members = shard_members([4, 4])
    bus = Bus(make_nodes(PbftNode, members, timeout_ms=3000))
    for name in members[1]:
        bus.vanish(0, name)
    bus.submit(200, "s0n1", Tx("ok", (0,), 200))
    bus.submit(200, "s0n1", Tx("doomed", (0, 1), 200))
    bus.run(5000)
    assert "ok" in bus.order("s0n0")
    assert "doomed" not in bus.order("s0n0")
    assert "doomed" in bus.failed["s0n1"]


def test_pbft_failed_when_whole_shard_gone() -> None:
    members = shard_members([4])
    bus = Bus(make_nodes(PbftNode, members, timeout_ms=2000))
    for name in members[0][:2]:
        bus.vanish(0, name)  # 2 of 4 gone: no quorum
    bus.submit(100, "s0n3", Tx("stuck", (0,), 100))
    bus.run(4000)
    assert bus.failed["s0n3"] == ["stuck"]
    assert not bus.commits["s0n3"]
