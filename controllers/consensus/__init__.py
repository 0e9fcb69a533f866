"""Trusted multi-LLM consensus: WBFT (weighted Byzantine fault tolerance, arXiv 2505.05103)
among LLM nodes, beside PBFT, HotStuff, Raft and plain majority voting.

Modules, one job each:

* protocol - the state machines (one per protocol, one code base), messages, the `Context`
  a transport implements, and the client's acceptance rule.
* weights - WBFT's voting weights: response quality and trust, adapted from the committed
  history, identical on every honest node.
* behaviours - Byzantine nodes: wrong, random, equivocate, silent, late, collude.
* sim - the discrete-event transport (lan / wifi / leo link profiles) for sweeps.
* evaluate - `make eval-consensus`; bench - `make bench BENCH=consensus`.
* live, node - the same protocol over TCP between LLM nodes in the emulated network.

Use::

    from controllers.consensus.protocol import Config
    from controllers.consensus.sim import PROFILES, run

    nodes = tuple(f"n{i}" for i in range(16))
    out = run(Config("wbft", nodes), PROFILES["wifi"], keys=["A", "C", "B"],
              behaviours={"n1": "collude", "n2": "collude"}, seed=0)
    [(o.accepted, o.latency_s, o.conflicting) for o in out]
"""
