"""The TorchElastic baseline: what a user would run today - `torchrun` with a c10d rendezvous,
gloo all-reduce, and a checkpoint to shared storage to resume from when the membership
changes (torchrun restarts every worker then, and they re-rendezvous).

On the store node (`live store --method torchelastic`): the rendezvous's TCPStore and the
checkpoint store (node.py's store, serving only puts and gets).  On a training node
(`live node --method torchelastic`): `torchrun --nnodes=1:N --rdzv-backend=c10d
--rdzv-endpoint=<store>:<port+2> --max-restarts=100 -m controllers.training.elastic ...` inside
a UTS namespace named after the node, so the hostname torchrun and gloo advertise is the node's
name (it resolves to the node address in every namespace).  `live leave` sends the agent
SIGTERM (its pid file is training/<node>.agent.pid).

Settings, all stated: rendezvous last-call 30 s (torchrun's default; 3 s split rendezvous
rounds here when agents under CPU quotas were slow, and the job hung), store reads 300 s; gloo
collective timeout 10 s (default 30 min: tuned in TorchElastic's favour, so a crashed peer is
noticed in seconds); a checkpoint every `checkpoint_every` steps, as the checkpoint baseline.
Each worker appends the same records as node.py to training/<node>.jsonl, so summary.py reads
both alike.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from controllers.training import wire
from controllers.training.config import TrainingExperiment, load_experiment

GLOO_TIMEOUT_S = 10
INIT_TIMEOUT_S = 300
LAST_CALL_S = 30  # torchrun's default: shorter ones split rounds when agents are slow


def rdzv_port(exp: TrainingExperiment) -> int:
    return exp.port + 2


def run_agent(exp: TrainingExperiment, me: str, out: Path, is_store: bool,
              t_process: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    if is_store:
        return _store(exp, me, out, t_process)
    pidfile = out / f"{me}.agent.pid"
    argv = [os.path.join(os.path.dirname(sys.executable), "torchrun"),
            f"--nnodes=1:{len(exp.nodes)}", "--nproc-per-node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={exp.store}:{rdzv_port(exp)}", "--rdzv-id=sagin-training",
            f"--rdzv-conf=is_host=false,last_call_timeout={LAST_CALL_S},join_timeout=600,"
            "read_timeout=300",
            "--max-restarts=100", "--monitor-interval=0.5",
            "-m", "controllers.training.elastic", "--config",
            os.environ["SAGIN_TRAIN_CONFIG"], "--name", me]
    # a UTS namespace whose hostname is the node's name: torchrun's master address and gloo's
    # device are taken from the hostname, and the node names resolve in every namespace
    full = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', me, *argv]
    # the rendezvous store outlives rounds here (it is the store node's, not an agent's), so
    # workers must not share it: their process-group keys carry no round and a later round
    # would read an earlier one's addresses.  Rank 0 then hosts a fresh store every round.
    env = {**os.environ, "SAGIN_T_REQUEST": str(time.time()),
           "SAGIN_T_PROCESS": str(t_process), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    with open(out / f"{me}.jsonl", "a") as f:
        f.write(json.dumps({"t": time.time(), "k": "start", "method": "torchelastic",
                            "target": exp.target_accuracy,
                            "admin": False, "pid": os.getpid(), "process_start": t_process})
                + "\n")
    proc = subprocess.Popen(full, env=env)
    pidfile.write_text(str(proc.pid))

    def forward(sig: int, _frame: Any) -> None:
        proc.send_signal(sig)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return proc.wait()


def _store(exp: TrainingExperiment, me: str, out: Path, t_process: float) -> int:
    import asyncio

    from torch.distributed import TCPStore

    from controllers.training.node import Node

    store = TCPStore("0.0.0.0", rdzv_port(exp), is_master=True, wait_for_workers=False,
                     timeout=timedelta(seconds=600))
    node = Node(exp, me, out, passive=True)
    try:
        asyncio.run(node.main(t_process))
    finally:
        del store
    return 0


def leave(exp: TrainingExperiment, me: str, out: Path) -> int:
    pidfile = out / f"{me}.agent.pid"
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    except (OSError, ValueError) as exc:
        print(f"{me}: no torchrun agent to stop ({exc})", file=sys.stderr)
        return 1
    with open(out / f"{me}.jsonl", "a") as f:
        f.write(json.dumps({"t": time.time(), "k": "leave_request"}) + "\n")
    return 0


# ---- the worker torchrun starts -----------------------------------------------------------------
def _call(exp: TrainingExperiment, head: dict[str, Any], payload: bytes = b""
          ) -> tuple[dict[str, Any], bytes]:
    """One request to the checkpoint store, blocking (the worker has no event loop)."""
    host, port = wire.address(exp.store or "", exp.port)
    with socket.create_connection((host, port), timeout=60) as s:
        for part in wire.pack(head, payload):
            s.sendall(part)
        f = s.makefile("rb")
        (k,) = wire.LEN.unpack(f.read(wire.LEN.size))
        reply = json.loads(f.read(k))
        return reply, f.read(int(reply.get("n", 0)))


def _last_step_time(path: Path) -> float | None:
    last = None
    if path.is_file():
        for line in path.read_text().splitlines():
            if '"k": "step"' in line:
                last = line
    return json.loads(last)["t"] if last else None


def worker(exp: TrainingExperiment, me: str, out: Path) -> int:
    import numpy as np
    import torch
    import torch.distributed as dist

    from controllers.training.model import batch_indices, digest, digits, trainer_for
    from controllers.training.node import Log

    torch.set_num_threads(1)
    log = Log(out / f"{me}.jsonl")
    t_gap = _last_step_time(out / f"{me}.jsonl")
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    # the group forms with a long timeout (restarted workers import torch at different
    # speeds); the collectives then use a group with the short one
    dist.init_process_group("gloo", timeout=timedelta(seconds=INIT_TIMEOUT_S))
    group = dist.new_group(timeout=timedelta(seconds=GLOO_TIMEOUT_S))
    rank, world = dist.get_rank(), dist.get_world_size()
    log("view", v=restarts, m=[f"rank{i}" for i in range(world)], rank=rank,
        reason="rendezvous", world=world)
    x_train = digits()[0]
    tr = trainer_for(tuple(exp.hidden), exp.lr, exp.momentum, exp.seed, exp.state_mb)
    head, blob = _call(exp, {"t": "get", "v": 0, "step": -1, "from": me, "ids": [0],
                             "shards": [[0, len(tr.blob())]]})
    if head.get("t") == "shard":
        tr.load(blob)
        log("loaded_checkpoint", step=tr.step, sha256=digest(blob)[:16])
    elif rank == 0:
        _call(exp, {"t": "put", "step": tr.step, "from": me}, tr.blob())
    dist.barrier()  # (long timeout) everyone waits for the first checkpoint, as below
    first = True
    t_req = float(os.environ.get("SAGIN_T_REQUEST", "0")) or None
    while True:
        t0 = time.monotonic()
        idx = batch_indices(exp.seed, tr.step, rank, world, exp.batch, len(x_train))
        grad, loss = tr.gradient(idx)
        t1 = time.monotonic()
        if first:
            now = time.time()
            joined = restarts == 0 and me not in exp.initial
            log("computing", step=tr.step, v=restarts, t_request=t_req if joined else None,
                joined=joined, restarted=restarts > 0)
            if joined and t_req:
                log("scale_out", v=restarts, step=tr.step, t_request=t_req, t_ready=now,
                    delay_s=round(now - t_req, 4), state_bytes=len(tr.blob()),
                    method="torchelastic")
            if t_gap is not None:
                log("idle", s=round(now - t_gap, 4), v=restarts, reason="restart")
            first = False
        t = torch.from_numpy(grad)
        dist.all_reduce(t, group=group)
        tr.apply(t.numpy() / np.float32(world))
        t2 = time.monotonic()
        log("step", step=tr.step, v=restarts, n=world, loss=round(loss, 5),
            compute_ms=round((t1 - t0) * 1000, 3), comm_ms=round((t2 - t1) * 1000, 3))
        if tr.step % exp.eval_every == 0:
            acc, tl = tr.accuracy()
            log("accuracy", step=tr.step, acc=round(acc, 5), loss=round(tl, 5))
        if tr.step % exp.checkpoint_every == 0:  # a synchronous checkpoint: rank 0 stores
            if rank == 0:  # it, the others wait at the barrier (whose timeout is the long one)
                t3 = time.time()
                b = tr.blob()
                _call(exp, {"t": "put", "step": tr.step, "from": me}, b)
                log("checkpoint", step=tr.step, bytes=len(b), s=round(time.time() - t3, 4))
            dist.barrier()


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", required=True)
    a = ap.parse_args()
    exp = load_experiment(a.config, "torchelastic")
    out = Path(os.environ.get("SAGIN_RUN_DIR", "results/training-live")) / "training"
    return worker(exp, a.name, out)


if __name__ == "__main__":
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")
    sys.exit(main())
