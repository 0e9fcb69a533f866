"""Edge-LLM orchestrator of the edge-llm scenario: runs on the users' node (gs1).

1. waits for the shard nodes' agents, asks each to profile itself (decode ms per layer and of
   the head, at its emulated device speed) and to measure RTT and goodput to every other node;
2. computes a single-device reference answer for every prompt on its own CPU;
3. for each method (single device, even split, proportional split, Halda ILP, tensor
   parallel) loads the plan on the nodes, sends every prompt to the plan's master and records
   time to first token, ms/token, bytes between nodes per token, and whether the tokens equal
   the reference;
4. failover (optional): serves prompts with the failover method (even split by default: every
   node in use) until one fails (the scenario crashes a node), finds the dead node by health
   checks, re-plans with Halda on the nodes still alive and serves again.

Writes $SAGIN_RUN_DIR/llm/: summary.json (everything, with predictions next to measurements),
table.md (one row per method, ratios to even split) and generations.csv (with each
generation's wall-clock finish time `t_done`, for the live view), rewritten after each method.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from controllers.llm.config import ConfigError, LlmConfig, load_config
from controllers.llm.experiment import (
    devices_from_profiles,
    links_from_probe,
    model_shape,
    plan_for,
    serve,
)
from payloads.llm.cluster import ClusterError, NodeAddr, ShardCluster


def _log(msg: str) -> None:
    print(f"[llm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def alive(cluster: ShardCluster, timeout_s: float = 3.0) -> list[str]:
    """The nodes whose agent answers a health request within `timeout_s` (asked together)."""
    async def one(name: str) -> str | None:
        probe = ShardCluster([cluster.nodes[name]], cluster.token, timeout=timeout_s)
        try:
            await probe.wait_ready(timeout_s)
            return name
        except ClusterError:
            return None
        finally:
            await probe.close()

    return [n for n in await asyncio.gather(*(one(n) for n in cluster.nodes)) if n]


def numeric(host: str, port: int) -> tuple[str, int]:
    """Node names resolved here, once: the nodes are sent each other's addresses, and a
    hardware board (testbed.hil) has no copy of the emulated network's hosts file."""
    try:
        return socket.gethostbyname(host), port
    except OSError:
        return host, port


async def run(cfg: LlmConfig, out_dir: Path, token: str, step_timeout_s: float = 10.0
              ) -> dict[str, Any]:
    from payloads.llm import runtime as rt
    from payloads.llm.model import load_config as model_config
    from payloads.llm.tokenizer import load_tokenizer

    t_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster = ShardCluster([NodeAddr(n, *numeric(*cfg.address(n))) for n in cfg.nodes], token,
                           step_timeout_s=step_timeout_s)
    summary: dict[str, Any] = {"config": cfg.model_dump(), "methods": []}
    try:
        await cluster.wait_ready(60.0)
        _log(f"{len(cfg.nodes)} shard nodes up; profiling")
        profiles = await cluster.profile(cfg.model)
        probe = await cluster.probe()
        summary |= {"profiles": profiles, "probe": probe}
        devices = devices_from_profiles(profiles)
        links = links_from_probe(probe)
        shape = model_shape(cfg.model)
        tok = load_tokenizer(cfg.model)
        eos = model_config(cfg.model).eos_id
        prompts = [tok.encode_chat([{"role": "user", "content": p}]) for p in cfg.prompts]
        t0 = time.perf_counter()
        reference = [rt.generate_local(cfg.model, ids, cfg.max_new_tokens) for ids in prompts]
        summary["reference"] = {"where": "orchestrator, one window", "wall_s":
                                round(time.perf_counter() - t0, 3),
                                "answers": [tok.decode(r, skip_special=True) for r in reference]}
        for method in cfg.methods:
            plan = plan_for(method, devices, shape, links, cfg.master, cfg.max_rounds)
            _log(f"{method}: {plan.stages or plan.ranks} "
                 f"{'' if plan.feasible else 'infeasible: ' + plan.reason}")
            row = await serve(cluster, plan, prompts, cfg.max_new_tokens, eos, reference,
                              cfg.model)
            for g in row.get("generations", []):
                g["text"] = tok.decode(g["tokens"], skip_special=True)
            summary["methods"].append(row)
            write_outputs(summary, out_dir)  # a run cut short keeps what it measured
            _log(f"{method}: ms/token {row.get('ms_per_token')} (predicted "
                 f"{plan.predicted_ms_per_token}), tokens equal: {row.get('tokens_equal')}")
        if cfg.failover is not None:
            summary["failover"] = {}
            await failover(cluster, cfg, devices, shape, links, prompts, eos, reference,
                           t_start + cfg.failover.until_s, summary["failover"])
    finally:
        await cluster.close()
        summary["wall_s"] = round(time.monotonic() - t_start, 3)
        write_outputs(summary, out_dir)
    return summary


async def failover(cluster: ShardCluster, cfg: LlmConfig, devices: list[Any], shape: Any,
                   links: Any, prompts: list[list[int]], eos: int, reference: list[list[int]],
                   deadline: float, out: dict[str, Any]) -> dict[str, Any]:
    """Serve with the failover method until a prompt (or a load) fails; then re-plan with
    Halda on the nodes still alive and serve every prompt again.  Works whenever the node
    dies: before this phase (the load fails), or in the middle of a generation (the master's
    step timeout).  Fills `out` as it goes, so a run that ends meanwhile keeps what happened."""
    assert cfg.failover is not None
    method = cfg.failover.method
    up = await alive(cluster)
    plan = plan_for(method, [d for d in devices if d.name in up], shape, links, cfg.master,
                    cfg.max_rounds)
    out |= {"method": method, "plan": plan.stages or plan.ranks, "served_before_failure": 0,
            "failure": None}
    if not plan.feasible:
        return out | {"error": f"{method} infeasible: {plan.reason}"}
    failure: str | None = None
    tokens_done = 0
    try:
        if plan.mode == "tensor":
            await cluster.load_tensor("failover", plan.ranks, cfg.model)
        else:
            await cluster.load_pipeline("failover", plan.stages, cfg.model)
    except ClusterError as exc:
        failure = f"load failed: {exc}"
    while failure is None and time.monotonic() < deadline:
        g = await cluster.generate("failover", plan.master, plan.members, prompts[0],
                                   cfg.max_new_tokens, eos)
        if not g.ok:
            failure, tokens_done = g.error, len(g.tokens)
            break
        out["served_before_failure"] += 1
    await cluster.release("failover")
    if failure is None:
        return out | {"note": "no prompt failed before the deadline"}
    t_fail = time.monotonic()
    _log(f"failover: {failure}")
    up = await alive(cluster)
    dead = [n for n in cluster.nodes if n not in up]
    out |= {"failure": failure, "tokens_before_failure": tokens_done, "dead": dead}
    if cfg.master in dead:
        return out | {"replanned": None, "note": "the master died: nothing left to re-plan on"}
    again = plan_for("halda", [d for d in devices if d.name in up], shape, links, cfg.master,
                     cfg.max_rounds)
    row = await serve(cluster, again, prompts, cfg.max_new_tokens, eos, reference, cfg.model,
                      tag="-replanned")
    out |= {"replanned": row, "failure_to_served_s": round(time.monotonic() - t_fail, 3)}
    _log(f"failover: re-planned on {again.members}: ok {row.get('ok')}, tokens equal "
         f"{row.get('tokens_equal')}, ms/token {row.get('ms_per_token')}")
    return out


def write_outputs(summary: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    rows = summary.get("methods", [])
    with (out_dir / "generations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "prompt", "ok", "tokens", "ttft_ms", "ms_per_token",
                    "bytes_sent", "equal_to_reference", "error", "text", "t_done"])
        for r in rows:
            for i, g in enumerate(r.get("generations", [])):
                w.writerow([r["method"], i, g["ok"], len(g["tokens"]),
                            round(1e3 * g["ttft_s"], 2) if g["ttft_s"] else "",
                            round(g["ms_per_token"], 2) if g["ms_per_token"] else "",
                            g["bytes_sent"], g.get("equal_to_reference"), g["error"] or "",
                            g.get("text", ""), _wall(g.get("t_done"))])
    (out_dir / "table.md").write_text(table(rows))


def _wall(t: Any) -> str:
    """A generation's wall-clock finish time for generations.csv ("" when unknown)."""
    return f"{t:.4f}" if isinstance(t, int | float) else ""


def table(rows: list[dict[str, Any]]) -> str:
    even = next((r.get("ms_per_token") for r in rows if r["method"] == "even"), None)
    lines = ["| method | nodes | TTFT ms | ms/token | predicted ms/token | vs even | "
             "bytes/token | tokens = reference |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.get("feasible", True):
            lines.append(f"| {r['method']} | - | infeasible: {r['reason']} | | | | | |")
            continue
        mpt = r.get("ms_per_token")
        ratio = f"{mpt / even:.2f}x" if mpt and even else ""
        pred = r.get("predicted_ms_per_token")
        lines.append(
            f"| {r['method']} | {len(r['members'])} | {_f(r.get('ttft_ms'))} | {_f(mpt)} | "
            f"{_f(pred)} | {ratio} | {_f(r.get('bytes_per_token'), 0)} | "
            f"{r.get('tokens_equal')} |")
    return "\n".join(lines) + "\n"


def _f(v: Any, nd: int = 1) -> str:
    return f"{v:.{nd}f}" if isinstance(v, int | float) else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controllers.llm.live", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="experiment file (controllers/llm/config.py)")
    ap.add_argument("--run-dir", default=os.environ.get("SAGIN_RUN_DIR"))
    ap.add_argument("--step-timeout", type=float, default=10.0,
                    help="seconds a shard may take before a prompt fails")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    token = os.environ.get("SAGIN_RUN_TOKEN")
    if not args.run_dir or not token:
        ap.error("--run-dir (or SAGIN_RUN_DIR) and SAGIN_RUN_TOKEN are needed")
    # the scenario's end sends SIGTERM: leave through `finally`, which writes the outputs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    summary = asyncio.run(run(cfg, Path(args.run_dir) / "llm", token, args.step_timeout))
    _log("done: " + json.dumps({r["method"]: r.get("ms_per_token")
                                for r in summary["methods"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
