"""The training workload's processes, started by a scenario's timeline in the nodes'
namespaces (topologies/edge-training.yaml):

    python -m controllers.training.live node  --config FILE [--method M]   a training node
    python -m controllers.training.live store --config FILE [--method M]   the baselines' store
    python -m controllers.training.live leave --config FILE                scale-in: this node
                                                                           leaves gracefully
    python -m controllers.training.live summarize RUN_DIR                  the run's tables

A node started at 0 s and named in `initial:` forms the first ring; any other start is a
scale-out.  Results go to $SAGIN_RUN_DIR/training/ (node.py, summary.py).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from controllers.training.config import ConfigError, load_experiment  # noqa: E402


def _out() -> Path:
    return Path(os.environ.get("SAGIN_RUN_DIR", "results/training-live")) / "training"


def main(argv: list[str] | None = None) -> int:
    t_process = time.time()
    ap = argparse.ArgumentParser(prog="python -m controllers.training.live")
    ap.add_argument("what", choices=["node", "store", "leave", "summarize"])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--config")
    ap.add_argument("--method")
    ap.add_argument("--name", default=os.environ.get("SAGIN_NODE"))
    ap.add_argument("--resume", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.what == "summarize":
        from controllers.training.summary import summarize

        print(json.dumps(summarize(Path(a.run_dir or ".")), indent=1)[:4000])
        return 0
    if not a.config or not a.name:
        ap.error("--config FILE and a node name (--name or $SAGIN_NODE) are needed")
    try:
        exp = load_experiment(a.config, a.method)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if a.what == "leave" and exp.method == "torchelastic":
        from controllers.training.elastic import leave

        return leave(exp, a.name, _out())
    if a.what == "leave":
        return asyncio.run(_leave(exp.port, a.name))
    if a.what == "store" and exp.method not in ("checkpoint", "torchelastic"):
        print(f"method {exp.method} has no central store; nothing to do on {a.name}")
        return 0
    if a.what == "store" and a.name != exp.store:
        print(f"{a.config}: store is {exp.store}, not {a.name}", file=sys.stderr)
        return 2
    if a.what == "node" and a.name not in exp.nodes:
        print(f"{a.config}: nodes: {a.name} is not a training node; add it there",
              file=sys.stderr)
        return 2
    os.environ["SAGIN_TRAIN_CONFIG"] = str(a.config)  # a restarted process reads it again
    if exp.method == "torchelastic":
        from controllers.training.elastic import run_agent

        return run_agent(exp, a.name, _out(), a.what == "store", t_process)
    import torch

    torch.set_num_threads(1)
    from controllers.training.node import Node

    node = Node(exp, a.name, _out(), resume=json.loads(a.resume) if a.resume else None)
    try:
        asyncio.run(node.main(t_process))
    except KeyboardInterrupt:
        return 130
    return 0


async def _leave(port: int, me: str) -> int:
    from controllers.training import wire

    host, p = wire.address(me, port)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, p), 5)
    except (OSError, TimeoutError) as exc:
        print(f"{me} is not training (nothing listens on {host}:{p}): {exc}", file=sys.stderr)
        return 1
    await wire.send(w, {"t": "leave", "from": me, "t_detect": time.time()})
    w.close()
    print(f"{me}: asked to leave the training ring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
