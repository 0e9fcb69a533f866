"""Consensus among LLM nodes (issue 18): the protocol state machines on the simulated clock.

Every protocol runs through the same discrete-event transport; the tests assert agreement,
liveness, safety under each Byzantine behaviour, WBFT's weights and view changes, and that
Raft (crash faults only) fails where it should.
"""

from __future__ import annotations

import random

import pytest

from controllers.consensus.behaviours import Byzantine
from controllers.consensus.protocol import Client, Config, Msg
from controllers.consensus.sim import PROFILES, run, verify
from controllers.consensus.weights import WeightBook, weighted_plurality

pytestmark = pytest.mark.unit

NODES = tuple(f"n{i:02d}" for i in range(16))
ACC = {n: 0.45 + 0.45 * i / 15 for i, n in enumerate(NODES)}


def keys(k: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice("ABCD") for _ in range(k)]


@pytest.mark.parametrize("protocol", ["wbft", "pbft", "hotstuff", "raft", "majority"])
def test_every_protocol_decides_every_query_and_honest_nodes_agree(protocol: str) -> None:
    out = run(Config(protocol, NODES), PROFILES["wifi"], keys(40), accuracy=ACC, seed=3)
    assert all(o.accepted is not None for o in out)
    assert not any(o.conflicting for o in out)
    if protocol != "majority":  # the client takes what the nodes committed
        assert all(o.honest_values == {o.accepted} for o in out)
    assert sum(o.accepted == o.key for o in out) >= 34  # 16 nodes right 45-90 % of the time


def test_same_seed_same_run() -> None:
    a = run(Config("wbft", NODES), PROFILES["wifi"], keys(20), accuracy=ACC, seed=5)
    b = run(Config("wbft", NODES), PROFILES["wifi"], keys(20), accuracy=ACC, seed=5)
    assert [(o.accepted, o.latency_s, o.messages) for o in a] == \
        [(o.accepted, o.latency_s, o.messages) for o in b]


@pytest.mark.parametrize("behaviour", ["wrong", "random", "equivocate", "silent", "late",
                                       "collude"])
@pytest.mark.parametrize("protocol", ["wbft", "pbft", "hotstuff"])
def test_bft_stays_safe_and_live_with_f_byzantine_nodes(protocol: str, behaviour: str) -> None:
    """f = 5 of 16 faulty, among them the first leaders: never two honest decisions for one
    query, every query decided (view changes where a faulty leader stalls)."""
    byz = {n: behaviour for n in NODES[:5]}
    out = run(Config(protocol, NODES, view_timeout=0.25), PROFILES["lan"], keys(25),
              accuracy=ACC, behaviours=byz, seed=11)
    assert not any(o.conflicting for o in out)
    assert all(o.accepted is not None for o in out), [o.seq for o in out if not o.accepted]
    if behaviour in ("silent", "late", "equivocate") and protocol != "wbft":
        assert any(o.views > 0 for o in out)  # the first leaders are faulty: views changed


def test_wbft_weights_push_colluders_out_and_keep_answers_right() -> None:
    """6 colluders of 16 (beyond f = 5 by count) answer the same wrong option: WBFT's quality
    weights make them light; equal-weight PBFT and plain majority keep being misled."""
    byz = {n: "collude" for n in NODES[10:16]}  # the most accurate slots, so it hurts
    ks = keys(120, seed=4)
    acc = {n: 0.55 for n in NODES}
    res = {p: run(Config(p, NODES), PROFILES["lan"], ks, accuracy=acc, behaviours=byz, seed=7)
           for p in ("wbft", "pbft", "majority")}
    right = {p: sum(o.accepted == o.key for o in out[20:]) for p, out in res.items()}
    assert not any(o.conflicting for out in res.values() for o in out)
    assert right["wbft"] > right["pbft"] + 15 and right["wbft"] > right["majority"] + 15, right
    from controllers.consensus.sim import Simulation

    sim = Simulation(Config("wbft", NODES), PROFILES["lan"], byz, acc, seed=7)
    prev = None
    for i, k in enumerate(ks[:40], 1):
        sim.query(i, k, prev)
        prev = k
    w = sim.nodes["n00"].weights()
    assert sum(w[n] for n in byz) < 1 / 3 * 0.75  # below a third of the core cluster's weight
    committee = sim.nodes["n00"].committee()
    assert not set(committee) & set(byz) or sum(w[n] for n in set(committee) & set(byz)) < \
        sum(w[n] for n in committee) / 3


def test_nodes_that_missed_a_decision_catch_up_from_its_certificate() -> None:
    """Equivocating committee members can leave some honest nodes one commit short; those
    ask again (view change) and the decided nodes send the commit certificate."""
    from controllers.consensus.evaluate import point

    m = point("wbft", "wifi", 16, 5 / 16, "equivocate", 20000, 40)
    assert m["undecided"] == 0 and m["conflicting"] == 0


def test_a_silent_first_leader_forces_a_view_change() -> None:
    out = run(Config("wbft", NODES, view_timeout=0.5), PROFILES["lan"], ["A", "B"],
              accuracy={n: 1.0 for n in NODES}, behaviours={"n00": "silent"}, seed=1)
    assert out[0].views >= 1 and out[0].accepted == "A"
    assert out[0].latency_s is not None and 0.5 <= out[0].latency_s < 1.5


def test_raft_trusts_a_byzantine_leader() -> None:
    """Crash-fault tolerance only: a lying leader's answer is committed as it is."""
    out = run(Config("raft", NODES), PROFILES["lan"], keys(20),
              accuracy={n: 1.0 for n in NODES}, behaviours={"n00": "collude"}, seed=1)
    assert sum(o.accepted == o.key for o in out) == 0  # every answer the leader's wrong one
    bft = run(Config("pbft", NODES), PROFILES["lan"], keys(20),
              accuracy={n: 1.0 for n in NODES}, behaviours={"n00": "collude"}, seed=1)
    assert all(o.accepted == o.key for o in bft)


def test_weight_book_rules() -> None:
    book = WeightBook(("a", "b", "c", "d"), alpha=0.5, decay=0.5)
    assert book.weights() == pytest.approx({n: 0.25 for n in "abcd"})
    book.update({"a": "X", "b": "X", "c": "Y"}, "X")  # d silent; quality waits for the key
    w1 = book.weights()
    assert w1["d"] < w1["a"] == pytest.approx(w1["b"]) == pytest.approx(w1["c"])
    book.update({"a": "Z", "b": "Z", "c": "Z", "d": "Z"}, "Z", previous_key="Y")
    assert book.quality["c"] > book.quality["a"]  # c was right about the previous query
    assert sum(book.weights().values()) == pytest.approx(1.0)
    for _ in range(50):
        book.update({"a": "X"}, "X", previous_key="Q")
    assert min(book.quality.values()) >= book.floor and min(book.trust.values()) >= book.floor
    assert book.committee(0.5)[0] == book.ranking()[0]
    assert weighted_plurality({"a": "X", "b": "Y", "c": "Y"}, {"a": .5, "b": .2, "c": .2}) == "X"
    assert weighted_plurality({"a": "X", "b": "Y"}, {"a": .3, "b": .3}) == "X"  # tie: smallest


def test_client_needs_more_than_a_third_of_the_weight() -> None:
    cfg = Config("pbft", NODES)
    client = Client(cfg, verify)
    for n in NODES[:5]:  # f lying replies cannot make it accept
        assert client.on_reply(Msg("REPLY", n, 1, 0, "B", ref="r1")) is None
    for n in NODES[5:10]:
        assert client.on_reply(Msg("REPLY", n, 1, 0, "C", ref="r2")) is None
    assert client.on_reply(Msg("REPLY", NODES[10], 1, 0, "C", ref="r2")) == "C"  # f+1 = 6


def test_bad_configuration_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'pbtf'"):
        Config("pbtf", NODES)
    with pytest.raises(ValueError, match="at least 4 nodes"):
        Config("wbft", NODES[:3])
    from controllers.consensus.sim import SimContext, Simulation

    sim = Simulation(Config("wbft", NODES), PROFILES["lan"])
    with pytest.raises(ValueError, match="unknown Byzantine behaviour 'equivocat'"):
        Byzantine(Config("wbft", NODES), SimContext(sim, "n00"), "equivocat")
