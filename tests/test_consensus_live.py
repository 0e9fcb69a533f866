"""The consensus protocols live (issue 18): SmolLM2 nodes in namespaces agree over emulated
links, the experiment file's errors, and nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from controllers.consensus.config import ConfigError, load_experiment

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.unit
@pytest.mark.parametrize("change, words", [
    ({"protocols": ["wbft", "pbtf"]}, "protocols ['pbtf'] are unknown"),
    ({"nodes": {"a": {}, "b": {}, "c": {}, "d": {"behaviour": "colude"}}},
     "behaviour 'colude' is unknown"),
    ({"nodes": {"a": {}, "b": {}, "c": {"behaviour": "collude"},
                "d": {"behaviour": "collude"}}}, "tolerate f = 1"),
    ({"model": "/nonexistent/model.gguf"}, "the LLM is missing"),
    ({"client": "a"}, "is also an LLM node"),
])
def test_experiment_file_errors_name_the_field(tmp_path: Path, change: dict, words: str) -> None:
    exp = {"client": "gs1", "nodes": {"a": {}, "b": {}, "c": {}, "d": {}}} | change
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_experiment(path)


@pytest.mark.unit
def test_the_shipped_experiment_and_scenario_load() -> None:
    from testbed.scenario import load

    exp = load_experiment(REPO / "topologies" / "trusted-llm.consensus.yaml")
    assert len(exp.nodes) >= 7 and sum(s.behaviour != "honest" for s in exp.nodes.values()) == 2
    sc = load(REPO / "topologies" / "trusted-llm.yaml")
    assert set(exp.nodes) | {exp.client} <= set(sc.nodes)


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)")
def test_llm_nodes_reach_consensus_across_emulated_links(tmp_path: Path) -> None:
    """Four SmolLM2 nodes (one colluding) and a client on ns-3 links of 2-15 ms: WBFT and PBFT
    decide every question, majority voting answers too, messages crossed the links (the
    nodes' logs), the simulator's prediction stands beside, and nothing is left."""
    from testbed.run.cleanup import leftovers
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import parse

    exp = {"client": "gs1", "protocols": ["wbft", "pbft", "majority"], "questions": 3,
           "view_timeout_s": 4.0, "query_timeout_s": 30,
           "nodes": {"n1": {}, "n2": {"drop_layers": [20, 21, 22, 23]},
                     "n3": {"temperature": 1.0}, "n4": {"behaviour": "collude"}}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    cmd = f"python -m controllers.consensus.live {{}} --config {tmp_path / 'exp.yaml'}"
    sc = {"name": "consensus-live", "duration_s": 75,
          "nodes": {"gs1": {"kind": "ground_station"}, **{
              n: {"kind": "edge_server"} for n in ("n1", "n2", "n3", "n4")}},
          "links": [{"name": f"l{i}", "kind": "wired", "medium": "p2p",
                     "endpoints": ["gs1", n], "delay_ms": d, "rate_mbps": 100}
                    for i, (n, d) in enumerate([("n1", 2), ("n2", 5), ("n3", 15), ("n4", 2)])],
          "capture": {"enabled": False}, "probes": {"link_rtt": False},
          "timeline": [{"at_s": 0, "action": "exec", "node": n, "command": cmd.format("node")}
                       for n in ("n1", "n2", "n3", "n4")] +
                      [{"at_s": 1, "action": "exec", "node": "gs1",
                        "command": cmd.format("client")}]}
    res = Run(parse(sc, "consensus-live"), "consensus-live",
              RunOptions(results_base=tmp_path, analyze=False)).execute()
    assert res.status == "done", res.error
    d = res.run_dir / "consensus"
    log = (res.run_dir / "logs" / "gs1" / "exec-1s.log").read_text(errors="replace")
    assert (d / "summary.json").is_file(), log[-3000:]
    s = json.loads((d / "summary.json").read_text())
    for p in ("wbft", "pbft"):
        assert s["protocols"][p]["decided"] == 3, (p, log[-2000:])
        assert s["protocols"][p]["latency_ms_median"] > 2 * 2  # at least a round trip
        assert s["protocols"][p]["sim_latency_ms_median"] is not None
    assert s["protocols"]["majority"]["decided"] == 3
    sent = [json.loads(x) for x in (d / "n1.jsonl").read_text().splitlines()]
    kinds = {m["kind"] for m in sent if m["dir"] == "tx"}
    assert {"ANSWER", "PREPARE", "COMMIT", "REPLY"} <= kinds or \
        {"PREPARE", "COMMIT", "REPLY"} <= kinds, kinds
    assert len((d / "answers.csv").read_text().splitlines()) == 1 + 4 * 3
    assert not any(leftovers(res.run_dir.name.rsplit("-", 1)[-1]).values())
