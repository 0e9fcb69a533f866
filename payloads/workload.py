"""The payload agent (the node-side runtime that executes offloaded tasks and hosts LLM
shards) as the testbed sees it.

Registered as the entry point ``payloads`` (pyproject.toml).  What it adds: the board agent
of the hardware-in-the-loop path (what is bundled to a board, how it is started, how its
health is checked: testbed/hil/boards.py) and `make bench BENCH=profiles` (a node's cgroup
CPU quota vs its device profile, measured with the agent's real-mode kernel).  In emulated
nodes the agent runs from a scenario's timeline (`python -m payloads.agent ...`).
"""

from __future__ import annotations

from testbed.workloads import Bench, BoardAgent, Workload

WORKLOAD = Workload(
    name="payloads",
    about="the payload agent: offloaded tasks, LLM shards, the board agent of the HIL path",
    board_agent=BoardAgent(
        package="payloads", entry="agent",
        # the agent uses isinstance(x, int | float) and zip(strict=...): Python 3.10
        args="--node {node} --cpu-hz {cpu_hz} --mode real --host {host} --port {port} "
             "--token-file {run}/token --log {run}/tasks.jsonl --report {run}/report.jsonl",
        health="payloads.client:health", logs=("tasks.jsonl", "report.jsonl"),
        min_python=(3, 10)),
    benches=(Bench("profiles", "payloads.bench:run",
                   "device profiles: a node's cgroup CPU quota vs the profile's modelled speed\n"
                   "(SHA-256 kernel, time ratio vs unlimited, median of 3; target within 10 %)"),),
)
