"""`make bench BENCH=consensus`: WBFT beside PBFT and HotStuff, in one run of the simulator.

1. latency     decision latency (median) and decisions/s vs n (4, 8, 16, 32) on lan, wifi and
               leo, with messages and bytes per decision; WBFT / PBFT and WBFT / HotStuff as
               ratios (issue target: WBFT >= 30 % lower than PBFT at n = 16 on lossy Wi-Fi)
2. committee   WBFT's core-cluster share (1.0 = every node, as PBFT) vs latency and messages,
               n = 16 on wifi: where the latency comes from, and what it costs in tolerance
3. safety      >= 10,000 decisions per protocol with Byzantine nodes at the bound (n = 10,
               f = 3, the six behaviours in turn) and, for WBFT, beyond it (4 colluders of
               10): conflicting decisions (two honest nodes, two answers), undecided queries
4. accuracy    30 % colluders, n = 16: WBFT vs PBFT, majority voting and single LLMs (the
               honest nodes' own accuracy: mean and best)
5. speed       simulated decisions per CPU second
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from controllers.consensus.behaviours import BEHAVIOURS
from controllers.consensus.protocol import Config
from controllers.consensus.sim import PROFILES, outcome_stats, run

SEED = 30_000
COMPARED = ("wbft", "pbft", "hotstuff")


def _nodes(n: int) -> tuple[str, ...]:
    return tuple(f"n{i:02d}" for i in range(n))


def _keys(k: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice("ABCD") for _ in range(k)]


def _acc(nodes: tuple[str, ...], seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    return {n: rng.uniform(0.4, 0.8) for n in nodes}


def _summary(out: list[Any], warmup: int = 20) -> dict[str, Any]:
    m = outcome_stats(out, warmup)
    digits = {"latency_ms": 2, "latency_p95_ms": 2, "decisions_per_s": 2, "messages": 1,
              "kbytes": 2, "accuracy": 4}
    return {k: (round(m[k], d) if m[k] == m[k] else None) for k, d in digits.items()} | {
        "undecided": int(m["undecided"]), "conflicting": int(m["conflicting"])}


def latency(console: Console) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    table = Table(title="Decision latency (median ms) and messages per decision")
    for col in ("profile", "n", *COMPARED, "wbft/pbft", "wbft/hotstuff", "msgs w/p/h"):
        table.add_column(col, justify="right")
    for prof in PROFILES:
        for n in (4, 8, 16, 32):
            nodes = _nodes(n)
            k = 80 if n <= 16 else 50
            got = {p: _summary(run(Config(p, nodes), PROFILES[prof], _keys(k, SEED),
                                   accuracy=_acc(nodes, SEED), seed=SEED)) for p in COMPARED}
            w, p, h = (got[x]["latency_ms"] for x in COMPARED)
            got["ratio_wbft_pbft"] = round(w / p, 3)
            got["ratio_wbft_hotstuff"] = round(w / h, 3)
            rows[f"{prof}/{n}"] = got
            table.add_row(prof, str(n), f"{w:.1f}", f"{p:.1f}", f"{h:.1f}",
                          f"{w / p:.2f}", f"{w / h:.2f}",
                          "/".join(f"{got[x]['messages']:.0f}" for x in COMPARED))
    console.print(table)
    return rows


def committee(console: Console) -> dict[str, Any]:
    nodes = _nodes(16)
    out = {}
    for share in (1.0, 0.9, 0.85, 0.8, 0.75, 0.7):
        s = _summary(run(Config("wbft", nodes, committee_share=share), PROFILES["wifi"],
                         _keys(120, SEED + 1), accuracy=_acc(nodes, SEED + 1), seed=SEED + 1))
        out[str(share)] = s
        console.print(f"committee share {share:.2f}: {s['latency_ms']} ms, "
                      f"{s['messages']} messages, accuracy {s['accuracy']}")
    return out


def safety(console: Console, decisions: int = 10_000) -> dict[str, Any]:
    nodes = _nodes(10)
    out: dict[str, Any] = {}
    cases = [(p, b, 3) for p in COMPARED for b in BEHAVIOURS[1:]] + [("wbft", "collude", 4)]
    per_case = {("wbft", "collude", 4): decisions // 2}
    t0 = time.process_time()
    for proto, beh, k in cases:
        n_dec = per_case.get((proto, beh, k), decisions // (len(BEHAVIOURS) - 1) + 1)
        rng = random.Random(SEED + k)
        runs, conflicts, undecided, done = 0, 0, 0, 0
        while done < n_dec:
            faulty = rng.sample(nodes, k)
            chunk = min(400, n_dec - done)
            res = run(Config(proto, nodes, view_timeout=0.5), PROFILES["wifi"],
                      _keys(chunk, SEED + runs), accuracy=_acc(nodes, SEED + runs),
                      behaviours=dict.fromkeys(faulty, beh), seed=SEED + runs)
            conflicts += sum(o.conflicting for o in res)
            undecided += sum(o.accepted is None for o in res)
            done += chunk
            runs += 1
        key = f"{proto}/{beh}/{k}of10"
        out[key] = {"decisions": done, "conflicting": conflicts, "undecided": undecided}
    total = {p: sum(v["decisions"] for k, v in out.items() if k.startswith(p + "/")
                    and k.endswith("/3of10")) for p in COMPARED}
    bad = {p: sum(v["conflicting"] for k, v in out.items() if k.startswith(p + "/"))
           for p in COMPARED}
    console.print(f"safety: decisions at f=3 of 10 {total}, conflicting {bad}; WBFT with 4 "
                  f"colluders of 10 (beyond f): {out['wbft/collude/4of10']} "
                  f"({time.process_time() - t0:.0f} s CPU)")
    return {"cases": out, "decisions_at_bound": total, "conflicting": bad}


def accuracy(console: Console) -> dict[str, Any]:
    nodes = _nodes(16)
    keys = _keys(220, SEED + 2)
    acc = _acc(nodes, SEED + 2)
    faulty = random.Random(SEED + 2).sample(nodes, 5)
    byz = dict.fromkeys(faulty, "collude")
    out = {p: _summary(run(Config(p, nodes), PROFILES["wifi"], keys, accuracy=acc,
                           behaviours=byz, seed=SEED + 2))["accuracy"]
           for p in ("wbft", "pbft", "hotstuff", "majority")}
    honest = [a for n, a in acc.items() if n not in faulty]
    out["single_llm_mean"] = round(statistics.mean(honest), 4)
    out["single_llm_best"] = round(max(honest), 4)
    console.print(f"accuracy with 5 colluders of 16: {out}")
    return out


def speed() -> dict[str, float]:
    nodes = _nodes(16)
    t = time.process_time()
    run(Config("wbft", nodes), PROFILES["wifi"], _keys(200, SEED), accuracy=_acc(nodes, SEED),
        seed=SEED)
    return {"wbft_n16_decisions_per_cpu_s": round(200 / (time.process_time() - t), 1)}


def run_bench(console: Console) -> dict[str, Any]:
    return {"latency": latency(console), "committee": committee(console),
            "safety": safety(console), "accuracy": accuracy(console), "speed": speed()}
