"""Offloading benchmark: simulator speed, controller decision time, payload-agent overhead,
and our controllers against the baselines side by side (ratios).

1. env        steps/s of OffloadEnv (Gymnasium) and OffloadParallelEnv (PettingZoo) with
              random actions on the default preset, one core (target >= 10k single-agent).
2. decide     milliseconds per slot decision of every controller on the default preset
              (shipped policies): what the live controller spends each 1 s slot.
3. agent      payload agent on loopback: round trip of an empty task (median, p99) and
              tasks/s one agent sustains with 8 concurrent clients.
4. compare    the default preset, 3 evaluation seeds: profit and mean effective delay of
              MUECRS and CMADDPG over the best baseline's (`make eval-offload` is the full
              5-seed, 2-preset table with sweeps).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np
from rich.console import Console

ENV_STEPS = 20_000
AGENT_TASKS = 2_000


def env_speed() -> dict[str, float]:
    from controllers.offload.envs import OffloadEnv, OffloadParallelEnv

    env = OffloadEnv()
    env.reset(seed=0)
    acts = np.random.default_rng(0).uniform(-1, 1, (1000, env.action_space.shape[0])
                                            ).astype(np.float32)
    t0 = time.perf_counter()
    for i in range(ENV_STEPS):
        _, _, _, trunc, _ = env.step(acts[i % 1000])
        if trunc:
            env.reset()
    single = ENV_STEPS / (time.perf_counter() - t0)
    penv = OffloadParallelEnv()
    penv.reset(seed=0)
    space = penv.action_space(penv.possible_agents[0])
    rng = np.random.default_rng(1)
    joint = [{a: rng.uniform(-1, 1, space.shape[0]).astype(np.float32)
              for a in penv.possible_agents} for _ in range(100)]
    t0 = time.perf_counter()
    for i in range(ENV_STEPS // 2):
        penv.step(joint[i % 100])
        if not penv.agents:
            penv.reset()
    parallel = (ENV_STEPS // 2) / (time.perf_counter() - t0)
    return {"single_agent_steps_per_s": round(single), "parallel_steps_per_s": round(parallel)}


def decide_time() -> dict[str, Any]:
    import torch

    from controllers.offload.config import OffloadConfig
    from controllers.offload.evaluate import ORDER, policy_for
    from controllers.offload.model import OffloadModel
    from controllers.offload.train import SHIPPED

    torch.set_num_threads(1)
    config = OffloadConfig.default()
    out: dict[str, Any] = {}
    for algo in ORDER:
        policy, source = policy_for(algo, config, "default", SHIPPED)
        if policy is None:
            out[algo] = source
            continue
        model = OffloadModel(config, 1)
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            decision = policy(model)
            times.append((time.perf_counter() - t0) * 1e3)
            model.step(decision)
        out[algo] = {"median_ms": round(statistics.median(times), 3),
                     "p99_ms": round(float(np.percentile(times, 99)), 3)}
    return out


async def _agent_overhead() -> dict[str, float]:
    from payloads.agent import PayloadAgent
    from payloads.client import AgentConnection

    agent = PayloadAgent("bench", 1e12, "t", mode="emulated")
    await agent.start("127.0.0.1", 0)
    try:
        rtts = []
        async with AgentConnection("127.0.0.1", agent.port, "t") as conn:
            for i in range(500):
                t0 = time.perf_counter()
                await conn.submit(f"e{i}", b"", 1.0)
                rtts.append((time.perf_counter() - t0) * 1e3)

        async def client(n: int, k: int) -> None:
            async with AgentConnection("127.0.0.1", agent.port, "t") as conn:
                for i in range(n):
                    await conn.submit(f"c{k}-{i}", b"x" * 1024, 1e3)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(AGENT_TASKS // 8, k) for k in range(8)))
        rate = AGENT_TASKS / (time.perf_counter() - t0)
    finally:
        await agent.close()
    return {"empty_task_rtt_ms_median": round(statistics.median(rtts), 3),
            "empty_task_rtt_ms_p99": round(float(np.percentile(rtts, 99)), 3),
            "tasks_per_s_8_clients": round(rate)}


def compare() -> dict[str, Any]:
    from controllers.offload.config import OffloadConfig
    from controllers.offload.evaluate import ORDER, claims, run_grid
    from controllers.offload.train import SHIPPED

    table = run_grid({"default": (OffloadConfig.default(), "default")}, ORDER, 3, SHIPPED, 2,
                     lambda _: None)["default"]
    compact = {a: {m: round(row[m]["mean"], 4) for m in ("profit", "mean_effective_delay_s",
                                                           "deadline_ratio")}
               for a, row in table.items() if "profit" in row}
    verdict = claims(table)
    ratios = {}
    for algo, c in verdict.items():
        if "ours" in c:
            ratios[algo] = {"metric": c["metric"], "best_baseline": c["best_baseline"],
                            "ours_over_best": round(c["ours"] / c["baseline"], 4),
                            "improvement": round(c["improvement"], 4)}
    return {"seeds": 3, "means": compact, "ratios": ratios}


def run(console: Console) -> dict[str, Any]:
    result: dict[str, Any] = {"env": env_speed()}
    console.print(f"env: {result['env']}")
    result["decide"] = decide_time()
    console.print(f"decision time per slot: {result['decide']}")
    result["agent"] = asyncio.run(_agent_overhead())
    console.print(f"payload agent: {result['agent']}")
    result["compare"] = compare()
    console.print(f"compare (3 seeds, default): {result['compare']['ratios']}")
    return result
