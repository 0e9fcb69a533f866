"""One training node: data-parallel SGD over a ring all-reduce, elastic membership, state
replication - Chaos (arXiv 2505.12815) and the baselines it is compared with, in one runtime.

Why our own ring and not torch.distributed's gloo: a gloo process group has a fixed world;
any membership change means tearing it down and a new rendezvous through a store that one
node hosts - a central admin, and seconds of restart, which is exactly the TorchElastic
baseline (elastic.py).  Chaos changes the ring in place, so the ring is ours: numpy chunks
over the same TCP connections as the control messages.

Membership is a numbered *view* (version, ring order).  Every change - a join, a graceful
leave, a crash, a link change that makes a better ring - goes through one negotiation:

    coordinator -> members   PROPOSE v           members stop the step in flight and park
    members -> coordinator   ACK v, step         the step each has completed
    coordinator -> members   COMMIT v, ring, s   members one step ahead undo it; all at s

With method chaos or single the coordinator of an event is a peer - the lowest-named member
the monitor hears (if it dies, the next one takes over); nobody is an admin.  A joiner then
pulls the state at step s from its neighbours in parallel (schedule.greedy, or the single
best neighbour for `single`), checks its hash against each neighbour's, and tells the members
READY; they resume with it.  A sender that dies mid-pull is dropped and its shards re-planned.
With method checkpoint the coordinator is the store node (the EDL/Pollux-style central
admin): a rescale checkpoints the state to the store, every member restarts its process and
reloads the checkpoint; a crash restarts everyone from the last periodic checkpoint.

Every node appends what it does to training/<node>.jsonl (summary.py turns the files into
the run's tables, numbers and plot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from controllers.training import schedule, wire
from controllers.training.config import TrainingExperiment
from controllers.training.model import Trainer, batch_indices, digest, digits, trainer_for
from controllers.training.monitor import Monitor

PROBE_BYTES = 256 * 1024
STALL_S = 5.0  # a sender silent this long during a pull is taken as gone
# a better ring is adopted when it saves >= 30 % and >= 5 ms of round trips per ring cycle,
# at most every 5 s: the monitor's smoothed round trips still jitter on a radio link
RELINK_MIN_MS = 5.0
RELINK_HOLD_S = 5.0
RESTART_GRACE_S = 300.0  # checkpoint baseline: a restarting process may be silent this long
CHECKPOINT_WAIT_S = 300.0  # and waits this long for the checkpoint to be stored
LIVE = "controllers.training.live"


class Log:
    """training/<node>.jsonl: one JSON object per line, wall clock `t`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the node

    def __call__(self, kind: str, **kw: Any) -> None:
        self.f.write(json.dumps({"t": round(time.time(), 6), "k": kind, **kw}) + "\n")


class Aborted(Exception):
    pass


class Node:
    def __init__(self, exp: TrainingExperiment, me: str, out: Path, *,
                 resume: dict[str, Any] | None = None, passive: bool = False) -> None:
        self.exp, self.me, self.out = exp, me, out
        self.passive = passive  # a store that only keeps checkpoints (TorchElastic's)
        self.admin = me == exp.store  # the baselines' central store and admin
        self.peer_led = exp.method in ("chaos", "single")
        self.log = Log(out / f"{me}.jsonl")
        self.trainer: Trainer | None = None
        self.version, self.members = 0, list[str]()
        self.acked_v = 0
        self.peers = wire.Peers(exp.port)
        everyone = [*exp.nodes, *([exp.store] if exp.store else [])]
        self.monitor = Monitor(me, everyone, exp.port, exp.heartbeat_ms / 1000, self.status)
        self.gate = asyncio.Event()
        self.abort = asyncio.Event()
        self.parked = asyncio.Event()
        self.inbox: dict[tuple[int, int, int, str], asyncio.Future[bytes]] = {}
        self.undo: tuple[int, list[Any]] | None = None
        self.paused_since: float | None = resume.get("paused_since") if resume else None
        self.waiting_for: set[str] = set()
        self.change_lock = asyncio.Lock()
        self.acks: dict[int, dict[str, dict[str, Any]]] = {}
        self.ack_events: dict[int, asyncio.Event] = {}
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.join_commit: asyncio.Future[dict[str, Any]] | None = None
        self.blob_cache: tuple[int, bytes, str] | None = None
        self.ckpts: dict[int, tuple[bytes, str]] = {}  # admin: the latest checkpoints by step
        self.ready: dict[int, set[str]] = {}
        self.resume_info = resume
        self.stopping = asyncio.Event()
        self.leaving = False
        self.bw: dict[str, float] = {}  # the joiner's probe: bytes/s and
        self.latency: dict[str, float] = {}  # seconds to first byte, per neighbour
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_change = time.monotonic()
        self.uploading = False  # (checkpoint) a periodic checkpoint is on its way
        self.last_commit: dict[str, Any] | None = None  # the coordinator's latest commit
        self.restarting: dict[str, float] = {}  # admin: node -> until when it may be silent
        self.first_step: dict[str, Any] | None = None  # logged when a (re)joined node computes

    def spawn(self, coro: Any) -> None:
        """A background task, kept referenced until it ends (asyncio holds weak ones)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def connect(self, node: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A fresh connection (a probe, a pull, an upload: not the shared control one)."""
        return await asyncio.wait_for(
            asyncio.open_connection(*wire.address(node, self.exp.port)), wire.CONNECT_TIMEOUT_S)

    # ---- what the monitor's pings say about us -------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"v": self.version, "m": self.members,
                "role": "admin" if self.admin else "member",
                "step": self.trainer.step if self.trainer else -1}

    def suspected(self, peer: str) -> bool:
        if peer == self.me or self.restarting.get(peer, 0.0) > time.monotonic():
            return False  # (checkpoint baseline) its process is restarting: silent by design
        return self.monitor.silent_for(peer) > self.exp.suspect_after_ms / 1000

    def coordinator(self) -> str:
        if not self.peer_led:
            assert self.exp.store is not None
            return self.exp.store
        live = [m for m in self.members if not self.suspected(m)]
        return min(live) if live else self.me

    # ---- start ---------------------------------------------------------------------------------
    async def main(self, t_process: float) -> None:
        host, port = wire.address(self.me, self.exp.port)
        bind = host if os.environ.get("SAGIN_TRAIN_ADDRS") else "0.0.0.0"
        server = await asyncio.start_server(self.serve, bind, port)
        await self.monitor.start()
        tasks = [asyncio.create_task(self.monitor.run())]
        self.log("start", method=self.exp.method, target=self.exp.target_accuracy,
                 admin=self.admin, pid=os.getpid(),
                 process_start=t_process)
        try:
            if self.passive:
                await self.stopping.wait()
                return
            if self.admin:
                tasks.append(asyncio.create_task(self.admin_main()))
            else:
                digits()
                e = self.exp
                self.trainer = trainer_for(tuple(e.hidden), e.lr, e.momentum, e.seed, e.state_mb)
                self.log("ready_to_train", state_bytes=self.trainer.blob_size,
                         n_params=self.trainer.n_params)
                tasks.append(asyncio.create_task(self.member_main(t_process)))
            tasks.append(asyncio.create_task(self.watch()))
            if not os.environ.get("SAGIN_TRAIN_ADDRS"):  # (tests on one host: no topology)
                tasks.append(asyncio.create_task(self.monitor.watch_routes(self.on_routes)))
            tasks.append(asyncio.create_task(self.handle_requests()))
            await self.stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            server.close()
            self.monitor.close()
            self.peers.close()
            self.log("exit", step=self.trainer.step if self.trainer else None)

    async def member_main(self, t_process: float) -> None:
        assert self.trainer is not None
        if self.resume_info:  # checkpoint baseline: this process is a restart
            await self.restart_load(self.resume_info)
        elif self.me in self.exp.initial and not await self.cluster_moved_on(2.0):
            await self.bootstrap()
        else:
            await self.join(t_process)
        await self.train()

    async def cluster_moved_on(self, wait_s: float) -> bool:
        """Has the ring changed since it was formed (a view after the first)?  Then an initial
        node starting now is a restarted one, and joins like any late node."""
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            if any(v.get("v", 0) > 1 for v in self.monitor.view.values()):
                return True
            await asyncio.sleep(self.exp.heartbeat_ms / 1000)
        return False

    async def bootstrap(self) -> None:
        """The first ring: the experiment's initial nodes, once all are heard (or the timeout
        passes: a missing one is then suspected and removed like a crash)."""
        t0 = time.monotonic()
        others = [n for n in self.exp.initial if n != self.me]
        while time.monotonic() - t0 < self.exp.bootstrap_timeout_s:
            if all(self.monitor.alive(n) and self.monitor.view.get(n, {}).get("step", -1) >= 0
                   for n in others):
                break
            await asyncio.sleep(0.1)
        self.version = 1
        self.members = sorted(self.exp.initial)  # the same on every node; relink tunes it
        self.log("view", v=1, m=self.members, step=0, reason="bootstrap",
                 waited_s=round(time.monotonic() - t0, 3))
        if not self.peer_led and self.members[0] == self.me:
            await self.upload_checkpoint()
        self.gate.set()

    # ---- the training loop ---------------------------------------------------------------------
    async def train(self) -> None:
        tr = self.trainer
        assert tr is not None
        x_train = digits()[0]
        while not self.stopping.is_set():
            self.parked.set()
            await self.gate.wait()
            self.parked.clear()
            if self.abort.is_set() or self.me not in self.members:
                await asyncio.sleep(0.01)
                continue
            v, members, step = self.version, list(self.members), tr.step
            t0 = time.monotonic()
            if self.first_step is not None:
                self.log("computing", step=step, v=v, **self.first_step)
                self.first_step = None
            idx = batch_indices(self.exp.seed, step, members.index(self.me), len(members),
                                self.exp.batch, len(x_train))
            grad, loss = tr.gradient(idx)
            t1 = time.monotonic()
            try:
                mean = await self.allreduce(grad, v, step, members)
            except Aborted:
                self.log("step_aborted", step=step, v=v)
                continue
            self.undo = (step, tr.snapshot())
            tr.apply(mean)
            t2 = time.monotonic()
            self.log("step", step=tr.step, v=v, n=len(members), loss=round(loss, 5),
                     compute_ms=round((t1 - t0) * 1000, 3), comm_ms=round((t2 - t1) * 1000, 3))
            if tr.step % self.exp.eval_every == 0:
                acc, tl = tr.accuracy()
                self.log("accuracy", step=tr.step, acc=round(acc, 5), loss=round(tl, 5))
            if (not self.peer_led and tr.step % self.exp.checkpoint_every == 0
                    and members[0] == self.me and not self.uploading):
                # (one at a time: a checkpoint still uploading skips the next)
                # the bytes are taken here, at the step boundary, off the event loop (100 MB
                # would stall the heartbeats); the upload then runs beside the training
                blob = await asyncio.to_thread(tr.blob)
                self.spawn(self.upload_checkpoint(blob))
            await asyncio.sleep(0)  # let control messages in between steps

    async def allreduce(self, grad: np.ndarray, v: int, step: int, ring: list[str]
                        ) -> np.ndarray:
        """Ring all-reduce (reduce-scatter, then all-gather): every member ends with the same
        bytes, whatever order the partial sums were made in.  Sends are not awaited (they
        leave in order on the one connection), so only the receives wait - and a proposal's
        abort stops them at once, never a send stuck behind a full link."""
        n = len(ring)
        if n == 1:
            return grad
        r = ring.index(self.me)
        succ, pred = ring[(r + 1) % n], ring[(r - 1) % n]
        chunks = [c.copy() for c in np.array_split(grad, n)]
        for p in range(n - 1):
            si, ri = (r - p) % n, (r - p - 1) % n
            self.spawn(self.peers.send(succ, {"t": "ring", "v": v, "s": step, "p": p,
                                              "from": self.me}, chunks[si].tobytes()))
            chunks[ri] += np.frombuffer(await self.take(v, step, p, pred), np.float32)
        for p in range(n - 1):
            si, ri = (r + 1 - p) % n, (r - p) % n
            self.spawn(self.peers.send(succ, {"t": "ring", "v": v, "s": step, "p": n - 1 + p,
                                              "from": self.me}, chunks[si].tobytes()))
            chunks[ri] = np.frombuffer(await self.take(v, step, n - 1 + p, pred),
                                       np.float32).copy()
        return np.concatenate(chunks) / np.float32(n)

    async def take(self, v: int, step: int, phase: int, pred: str) -> bytes:
        key = (v, step, phase, pred)
        fut = self.inbox.setdefault(key, asyncio.get_running_loop().create_future())
        stop = asyncio.create_task(self.abort.wait())
        try:
            await asyncio.wait({fut, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not fut.done():
            raise Aborted
        self.inbox.pop(key, None)
        return fut.result()

    # ---- incoming connections ------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head, payload = await wire.recv(reader)
                t = head.get("t")
                if t == "ring":
                    key = (head["v"], head["s"], head["p"], head["from"])
                    fut = self.inbox.setdefault(key, asyncio.get_running_loop().create_future())
                    if not fut.done():
                        fut.set_result(payload)
                elif t == "get":
                    await self.send_shards(head, writer)
                elif t == "probe":
                    await wire.send(writer, {"t": "probe"}, bytes(int(head["bytes"])))
                elif t == "put":
                    h = await asyncio.to_thread(digest, payload)
                    self.ckpts[int(head["step"])] = (payload, h)
                    for old in sorted(self.ckpts)[:-3]:
                        del self.ckpts[old]
                    self.log("checkpoint_stored", step=head["step"], bytes=len(payload),
                             sender=head.get("from"))
                    await wire.send(writer, {"t": "stored", "step": head["step"]})
                else:
                    await self.requests.put(head)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle_requests(self) -> None:
        while True:
            m = await self.requests.get()
            t = m.get("t")
            try:
                if t == "propose":
                    self.spawn(self.on_propose(m))
                elif t == "ack":
                    self.acks.setdefault(m["v"], {})[m["from"]] = m
                    self.ack_events.setdefault(m["v"], asyncio.Event()).set()
                elif t == "commit":
                    await self.on_commit(m)
                elif t == "ready":
                    (self.admin_ready if self.admin else self.on_ready)(m)
                elif t == "link":
                    if self.coordinator() == self.me and self.members:
                        self.spawn(self.handle_link(m))
                elif t in ("join", "leave", "suspect"):
                    await self.on_event_request(m)
                elif t == "go":
                    self.resume(m)
                elif t == "restart":
                    self.restart_process(m)
            except Exception as exc:  # noqa: BLE001 - logged; a bad message never kills the node
                self.log("error", where=t, error=f"{type(exc).__name__}: {exc}")

    # ---- membership: the members' side ---------------------------------------------------------
    async def on_propose(self, m: dict[str, Any]) -> None:
        if m["v"] <= max(self.version, self.acked_v):
            return
        self.acked_v = m["v"]
        if self.paused_since is None:
            self.paused_since = time.time()
        self.gate.clear()
        self.abort.set()
        await self.parked.wait()
        step = self.trainer.step if self.trainer else -1
        self.log("propose", v=m["v"], reason=m["reason"], by=m["from"], step=step)
        ack = {"t": "ack", "v": m["v"], "from": self.me, "step": step}
        if m["from"] == self.me:
            self.acks.setdefault(m["v"], {})[self.me] = ack
            self.ack_events.setdefault(m["v"], asyncio.Event()).set()
        else:
            await self.peers.send(m["from"], ack)

    async def on_commit(self, m: dict[str, Any]) -> None:
        if m["v"] < self.version:
            return
        if self.join_commit is not None and not self.join_commit.done() and self.me in m["m"]:
            self.join_commit.set_result(m)
            return
        if self.me not in m["m"]:
            self.log("removed", v=m["v"], reason=m["reason"])
            if self.leaving:
                self.stopping.set()
            return
        tr = self.trainer
        assert tr is not None
        if tr.step == m["step"] + 1 and self.undo is not None and self.undo[0] == m["step"]:
            tr.restore(self.undo[1])
            self.log("undo", to_step=m["step"])
        elif tr.step != m["step"] and m.get("restart") is None:
            self.log("error", where="commit", error=f"at step {tr.step}, commit at {m['step']}")
        self.version, self.members, self.acked_v = m["v"], list(m["m"]), max(self.acked_v, m["v"])
        self.blob_cache = None
        for k in [k for k in self.inbox if k[0] < self.version]:
            self.inbox.pop(k).cancel()
        self.log("view", v=m["v"], m=self.members, step=m["step"], reason=m["reason"])
        if m.get("restart") is not None:
            await self.checkpoint_commit(m)
            return
        self.waiting_for = {j for j in m.get("joiners", []) if j in self.members}
        self.waiting_for -= self.ready.get(m["v"], set())
        if not self.waiting_for:
            self.resume(m)

    def on_ready(self, m: dict[str, Any]) -> None:
        self.ready.setdefault(m["v"], set()).add(m["from"])
        if m["v"] == self.version and m["from"] in self.waiting_for:
            self.waiting_for.discard(m["from"])
            if not self.waiting_for:
                self.resume(m)

    def resume(self, m: dict[str, Any]) -> None:
        if self.paused_since is not None:
            self.log("idle", s=round(time.time() - self.paused_since, 4), v=self.version,
                     reason=m.get("reason") or m.get("t"))
        self.paused_since = None
        self.abort.clear()
        self.gate.set()

    # ---- membership: the coordinator's side ----------------------------------------------------
    async def on_event_request(self, m: dict[str, Any]) -> None:
        """A join, leave or suspicion reached us: run it if we coordinate, else pass it on."""
        if not self.members:  # we are not in a ring ourselves (yet): nothing to coordinate
            return
        if m["t"] == "leave" and m["from"] == self.me:
            self.leaving = True
            self.log("leave_request")
        coord = self.coordinator()
        if coord != self.me:
            await self.peers.send(coord, m)
            return
        t_detect = m.get("t_detect", time.time())
        if m["t"] == "join" and m["from"] in self.members and self.last_commit is not None:
            # it is in the view already: our commit to it was lost (it had restarted and the
            # old connection took the bytes) - send it again on a fresh connection
            self.peers.drop(m["from"])
            self.spawn(self.peers.send(m["from"], self.last_commit))
        elif m["t"] == "join":
            self.spawn(self.change("join", add=[m["from"]], t_detect=t_detect))
        elif m["t"] == "leave":
            self.spawn(self.change("leave", remove=[m["from"]], graceful=True,
                                            t_detect=t_detect))
        elif m["t"] == "suspect" and m["node"] in self.members:
            self.spawn(self.change("crash", remove=[m["node"]], t_detect=t_detect))

    async def watch(self) -> None:
        """The coordinator's eye on the monitor: a silent member is removed; a ring that the
        measured round trips say is much worse than another is replaced (link changes)."""
        period = self.exp.heartbeat_ms / 1000
        while True:
            await asyncio.sleep(period / 2)
            if self.me in self.members and self.rejoin_needed():
                continue
            if self.change_lock.locked() or self.coordinator() != self.me:
                continue
            if not self.members:
                continue
            lost = [m for m in self.members if self.suspected(m)]
            if lost:
                self.spawn(self.change("crash", remove=lost, t_detect=time.time()))
                continue
            if (self.exp.method == "chaos" and len(self.members) > 3 and self.gate.is_set()
                    and time.monotonic() - self.last_change > RELINK_HOLD_S):
                mat = self.monitor.matrix(self.members)
                best = schedule.ring_order(self.members, mat)
                now, new = schedule.ring_cost(self.members, mat), schedule.ring_cost(best, mat)
                if best != self.members and new < 0.7 * now and now - new > RELINK_MIN_MS:
                    self.spawn(self.change("relink", order=best, t_detect=time.time(),
                                                    detail={"ring_ms_before": round(now, 2),
                                                            "ring_ms_after": round(new, 2)}))

    def on_routes(self, t: float, diff: dict[str, tuple[str, str]]) -> None:
        """A route to a member changed (a link went down or came back, the testbed re-routed):
        a link event.  The coordinator re-plans; anyone else tells it."""
        ips: dict[str, str] = {}
        for m in self.members:
            a = self.monitor.resolve(m) if m != self.me else None
            if a is not None:
                ips[a[0]] = m
        hit = sorted({ips[d.split("/")[0]] for d in diff if d.split("/")[0] in ips})
        if not hit:
            return
        self.log("link_event", t_detect=t, peers=hit,
                 routes={ips[d.split("/")[0]]: list(r) for d, r in diff.items()
                         if d.split("/")[0] in ips})
        msg = {"t": "link", "from": self.me, "t_detect": t, "peers": hit}
        coord = self.coordinator()
        if coord == self.me:
            self.spawn(self.handle_link(msg))
        else:
            self.spawn(self.peers.send(coord, msg))

    async def handle_link(self, m: dict[str, Any]) -> None:
        """The control path of a link event: the ring re-planned over the monitor's current
        round trips; a better ring is committed (a relink), else the ring stays."""
        t0 = time.perf_counter()
        mat = self.monitor.matrix(self.members)
        best = schedule.ring_order(self.members, mat)
        now, new = schedule.ring_cost(self.members, mat), schedule.ring_cost(best, mat)
        relink = best != self.members and new < 0.7 * now and now - new > RELINK_MIN_MS
        decide_ms = (time.perf_counter() - t0) * 1000
        self.log("link_handled", t_detect=m["t_detect"], reporter=m["from"], peers=m["peers"],
                 decide_ms=round(decide_ms, 4), relink=relink,
                 handled_ms=round((time.time() - m["t_detect"]) * 1000, 3),
                 ring_ms=round(now, 2), best_ring_ms=round(new, 2))
        if relink and self.gate.is_set() and not self.change_lock.locked():
            await self.change("relink", order=best, t_detect=m["t_detect"],
                              detail={"link_event": True, "ring_ms_before": round(now, 2),
                                      "ring_ms_after": round(new, 2)})

    def rejoin_needed(self) -> bool:
        """We were dropped (cut off, taken for crashed) while alive: a peer holds a later view
        without us.  Our state is stale; we join again like a new node."""
        for v in self.monitor.view.values():
            if v.get("v", 0) > self.version and self.me not in v.get("m", [self.me]):
                if self.trainer is not None and not self.leaving and self.join_commit is None:
                    self.log("dropped", v=v.get("v"))
                    self.version, self.members = 0, []
                    self.gate.clear()
                    self.abort.set()
                    self.spawn(self.rejoin())
                return True
        return False

    async def rejoin(self) -> None:
        await self.parked.wait()
        await self.join(time.time())
        self.abort.clear()
        self.gate.set()

    async def change(self, reason: str, *, add: list[str] | None = None,
                     remove: list[str] | None = None, order: list[str] | None = None,
                     graceful: bool = False, t_detect: float | None = None,
                     detail: dict[str, Any] | None = None) -> None:
        add, remove = list(add or []), list(remove or [])
        async with self.change_lock:
            while self.admin and any(d > time.monotonic() for d in self.restarting.values()):
                await asyncio.sleep(0.05)  # (checkpoint) a restart is under way: this event
                # waits for it to finish, as a central admin serialises them
            t_lock = time.time()
            t_detect = t_detect or t_lock
            add = [a for a in add if a not in self.members]
            remove = [r for r in remove if r in self.members]
            if not add and not remove and order is None:
                return
            rounds = 0
            while True:
                rounds += 1
                t_decide0 = time.perf_counter()
                base = order or self.members
                members = [m for m in base if m not in remove] + add
                if self.peer_led and order is None:
                    members = schedule.ring_order(members, self.monitor.matrix(members))
                elif not self.peer_led:
                    members = sorted(members)
                decide_ms = (time.perf_counter() - t_decide0) * 1000
                v = max(self.version, self.acked_v) + 1
                voters = [m for m in self.members if m not in remove or graceful]
                voters = [m for m in voters if not self.suspected(m)]
                self.acks[v] = {}
                ev = self.ack_events.setdefault(v, asyncio.Event())
                prop = {"t": "propose", "v": v, "from": self.me, "reason": reason}
                for m in voters:
                    if m == self.me:
                        self.spawn(self.on_propose(prop))
                    else:
                        self.spawn(self.peers.send(m, prop))
                deadline = time.monotonic() + 2 * self.exp.suspect_after_ms / 1000 + 1.0
                while set(self.acks[v]) < set(voters) and time.monotonic() < deadline:
                    ev.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ev.wait(), 0.05)
                missing = [m for m in voters if m not in self.acks[v]]
                self.acked_v = max(self.acked_v, v)  # a new round is a new version
                if missing and rounds < 5:
                    remove += [m for m in missing if m not in remove]
                    self.log("ack_missing", v=v, missing=missing)
                    continue
                break
            acks = self.acks.pop(v, {})
            steps = [a["step"] for a in acks.values() if a["step"] >= 0]
            step = min(steps) if steps else 0
            commit: dict[str, Any] = {"t": "commit", "v": v, "m": members, "step": step,
                                      "reason": reason, "from": self.me, "joiners": add,
                                      "removed": remove}
            if not self.peer_led:
                commit.update(await self.admin_plan(reason, acks, step, graceful))
            targets = set(voters) | set(add) | (set(remove) if graceful else set())
            for m in [*add, *(r for r in remove if not graceful)]:
                self.peers.drop(m)  # a joiner may be a restarted node: never reuse a
                # connection to its previous process (a crash sends no FIN through a dead link)
            self.last_commit = commit
            for m in targets - {self.me}:
                self.spawn(self.peers.send(m, commit))
            if self.me in targets:
                await self.on_commit(commit)
            t_commit = time.time()
            self.last_change = time.monotonic()
            if self.admin:
                self.version, self.members = v, members
                self.spawn(self.checkpoint_commit(commit))
            self.log("change", reason=reason, v=v, m=members, step=commit["step"], add=add,
                     remove=remove, t_detect=t_detect, t_lock=t_lock, t_commit=t_commit,
                     handling_ms=round((t_commit - t_detect) * 1000, 3),
                     decide_ms=round(decide_ms, 4), rounds=rounds, **(detail or {}))

    # ---- scale-out: the joiner's side ----------------------------------------------------------
    async def join(self, t_process: float) -> None:
        assert self.trainer is not None
        t_wait = time.monotonic()
        while not any(v.get("v", 0) > 0 for v in self.monitor.view.values()):
            if time.monotonic() - t_wait > self.exp.join_timeout_s:
                raise RuntimeError("no training cluster answered; nothing to join")
            await asyncio.sleep(0.05)
        views = [v for v in self.monitor.view.values() if v.get("v", 0) > 0]
        view = max(views, key=lambda v: v["v"])
        t_heard = time.monotonic()  # give every member of that view a few pings to answer
        while (not all(self.monitor.alive(m) for m in view["m"] if m != self.me)
               and time.monotonic() - t_heard < 5 * self.exp.heartbeat_ms / 1000):
            await asyncio.sleep(self.exp.heartbeat_ms / 1000 / 2)
        candidates = [m for m in view["m"] if m != self.me and self.monitor.alive(m)]
        if self.peer_led:
            self.bw = await self.probe(candidates)
        self.join_commit = asyncio.get_running_loop().create_future()
        t_req = time.time()
        self.log("join_request", candidates=candidates, bandwidth_mbps={
            k: round(b * 8 / 1e6, 2) for k, b in self.bw.items()}, process_start=t_process)
        coord = self.exp.store if not self.peer_led else min(candidates or view["m"])
        msg = {"t": "join", "from": self.me, "t_detect": t_req}
        commit = None
        for _ in range(int(self.exp.join_timeout_s / 2)):
            await self.peers.send(coord, msg)
            with contextlib.suppress(TimeoutError):
                commit = await asyncio.wait_for(asyncio.shield(self.join_commit), 2.0)
                break
            if self.peer_led:  # the coordinator may have changed: ask the lowest live member
                live = [m for m in view["m"] if self.monitor.alive(m)]
                coord = min(live) if live else coord
        if commit is None:
            raise RuntimeError("no coordinator committed our join")
        self.join_commit = None
        self.version, self.members, self.acked_v = commit["v"], list(commit["m"]), commit["v"]
        self.log("view", v=commit["v"], m=self.members, step=commit["step"], reason="joined")
        if commit.get("restart") is not None:  # checkpoint baseline: load from the store
            await self.checkpoint_load(commit, t_req)
            return
        sources = [m for m in self.members if m != self.me and m in self.bw]
        if not sources:
            sources = [m for m in self.members if m != self.me]
        srcs = [schedule.Source(m, self.bw.get(m, 1e6), self.latency.get(m, 0.0))
                for m in sources]
        if self.exp.method == "single":
            plan = schedule.single(self.trainer.blob_size, srcs)
        else:
            srcs = sorted(srcs, key=lambda s: -s.bandwidth)[:self.exp.neighbours]
            plan = schedule.greedy(self.trainer.blob_size, srcs)
        blob = await self.pull(plan, srcs, commit, t_req)
        await asyncio.to_thread(self.trainer.load, blob)
        t_ready = time.time()
        for m in self.members:
            if m != self.me:
                self.spawn(self.peers.send(m, {"t": "ready", "v": commit["v"],
                                                        "from": self.me}))
        self.first_step = {"t_request": t_req, "joined": True}
        self.log("scale_out", v=commit["v"], step=commit["step"], t_request=t_req,
                 t_ready=t_ready,
                 delay_s=round(t_ready - t_req, 4), from_process_s=round(t_ready - t_process, 4),
                 state_bytes=len(blob), method=self.exp.method)
        self.gate.set()

    async def probe(self, peers: list[str]) -> dict[str, float]:
        """Bytes/s from each peer, measured in parallel (as the pull will run)."""
        async def one(p: str) -> tuple[str, float]:
            try:
                r, w = await self.connect(p)
                t_ask = time.monotonic()
                await wire.send(w, {"t": "probe", "bytes": PROBE_BYTES})
                # the rate is timed from the reply's first bytes (its header) to its last:
                # without the request's round trip, which is measured apart (the latency)
                (k,) = wire.LEN.unpack(await asyncio.wait_for(r.readexactly(wire.LEN.size), 10))
                await r.readexactly(k)
                t0 = time.monotonic()
                self.latency[p] = t0 - t_ask
                await asyncio.wait_for(r.readexactly(PROBE_BYTES), 10.0)
                dt = time.monotonic() - t0
                w.close()
                return p, PROBE_BYTES / max(dt, 1e-4)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                return p, 0.0
        res = dict(await asyncio.gather(*(one(p) for p in peers)))
        return {p: b for p, b in res.items() if b > 0}

    async def pull(self, plan: schedule.Plan, srcs: list[schedule.Source],
                   commit: dict[str, Any], t_req: float) -> bytes:
        buf = bytearray(plan.size)
        done: set[int] = set()
        hashes: dict[str, str] = {}
        alive = list(srcs)
        stats: dict[str, dict[str, Any]] = {}
        self.log("plan", v=commit["v"], plan=plan.describe(), makespan_s=round(plan.makespan, 4),
                 method=self.exp.method)
        while len(done) < len(plan.shards):
            results = await asyncio.gather(*(
                self.pull_from(n, js, plan, buf, done, hashes, commit, stats)
                for n, js in plan.assign.items()))
            failed = [n for n, ok in zip(plan.assign, results, strict=True) if not ok]
            if not failed:
                break
            alive = [s for s in alive if s.name not in failed]
            self.log("source_lost", lost=failed, shards_left=len(plan.shards) - len(done))
            if not alive:
                raise RuntimeError("every neighbour died while we pulled the state")
            plan = schedule.replan(plan, done, alive)
            self.log("plan", v=commit["v"], plan=plan.describe(), replan=True,
                     makespan_s=round(plan.makespan, 4))
        blob = bytes(buf)
        h = await asyncio.to_thread(digest, blob)
        agree = {n: hv == h for n, hv in hashes.items()}
        for n, st in stats.items():
            self.log("pulled", source=n, **st)
        self.log("state_check", sha256=h, sources=agree, identical=all(agree.values()))
        if not all(agree.values()):
            raise RuntimeError(f"state hash mismatch: {agree}")
        return blob

    async def pull_from(self, src: str, js: list[int], plan: schedule.Plan, buf: bytearray,
                        done: set[int], hashes: dict[str, str], commit: dict[str, Any],
                        stats: dict[str, dict[str, Any]]) -> bool:
        st = stats.setdefault(src, {"bytes": 0, "shards": 0, "seconds": 0.0,
                                    "dev": route_dev(self.monitor.resolve(src))})
        t0 = time.monotonic()
        try:
            r, w = await self.connect(src)
            await wire.send(w, {"t": "get", "v": commit["v"], "step": commit["step"],
                                "shards": [plan.shards[j] for j in js], "ids": js})
            for _ in js:
                head, data = await asyncio.wait_for(wire.recv(r), STALL_S)
                if head.get("t") != "shard":
                    raise OSError(head.get("error", "bad reply"))
                a, b = plan.shards[head["j"]]
                buf[a:b] = data
                done.add(head["j"])
                hashes[src] = head["sha256"]
                st["bytes"] += len(data)
                st["shards"] += 1
            w.close()
            return True
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            st["error"] = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            st["seconds"] = round(st["seconds"] + time.monotonic() - t0, 4)

    async def state_blob(self, step: int) -> tuple[bytes, str]:
        """The bytes to serve and their hash, made once per view and off the event loop (the
        members are parked, so the state holds still)."""
        if self.admin:
            return self.ckpts[step]
        assert self.trainer is not None
        if self.blob_cache is None or self.blob_cache[0] != self.version:
            v = self.version
            b = await asyncio.to_thread(self.trainer.blob)
            self.blob_cache = (v, b, await asyncio.to_thread(digest, b))
        return self.blob_cache[1], self.blob_cache[2]

    async def send_shards(self, head: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        if self.admin and head["step"] == -1:  # the latest (TorchElastic's workers)
            head["step"] = max(self.ckpts, default=-1)
        if self.admin and head["step"] not in self.ckpts:  # not (yet): the caller retries
            await wire.send(writer, {"t": "error", "error": f"no checkpoint of {head['step']}"})
            return
        deadline = time.monotonic() + 10
        while (not self.admin and time.monotonic() < deadline
               and (self.version < head["v"] or self.gate.is_set())):
            await asyncio.sleep(0.005)  # serve the committed step, never a moving state
        blob, h = await self.state_blob(head["step"])
        step = int.from_bytes(blob[:8], "little")
        view = memoryview(blob)
        t0 = time.time()
        for j, (a, b) in zip(head["ids"], head["shards"], strict=True):
            await wire.send(writer, {"t": "shard", "j": j, "sha256": h, "step": step}, view[a:b])
        self.log("served", to=head.get("from"), v=head["v"], shards=len(head["ids"]),
                 bytes=sum(b - a for a, b in head["shards"]), s=round(time.time() - t0, 4))

    # ---- the checkpoint baseline (central store and admin) -------------------------------------
    async def upload_checkpoint(self, blob: bytes | None = None) -> None:
        assert self.trainer is not None
        if blob is None:  # the members are parked: the state is still
            blob = await asyncio.to_thread(self.trainer.blob)
        step = int.from_bytes(blob[:8], "little")
        t0 = time.time()
        self.uploading = True
        try:
            r, w = await self.connect(self.exp.store)
            await wire.send(w, {"t": "put", "step": step, "from": self.me}, blob)
            await wire.recv(r)
            w.close()
            self.log("checkpoint", step=step, bytes=len(blob), s=round(time.time() - t0, 4))
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.log("error", where="checkpoint", error=str(exc))
        finally:
            self.uploading = False

    async def admin_main(self) -> None:
        """The store: waits for the first view to appear, then adopts it (it coordinates every
        later change)."""
        while not self.members:
            for v in self.monitor.view.values():
                if v.get("v", 0) > 0 and v.get("role") == "member":
                    self.version, self.members = v["v"], list(v["m"])
                    self.log("view", v=self.version, m=self.members, step=v.get("step"),
                             reason="adopted")
                    break
            await asyncio.sleep(0.1)

    async def admin_plan(self, reason: str, acks: dict[str, dict[str, Any]], step: int,
                         graceful: bool) -> dict[str, Any]:
        """Graceful changes checkpoint the current state (one member uploads it) before the
        restart; a crash restarts from the last periodic checkpoint (work since is lost)."""
        if reason in ("join", "leave") or graceful:
            uploader = next((n for n, a in sorted(acks.items()) if a["step"] == step), None)
            return {"restart": step, "upload_by": uploader}
        ck = max(self.ckpts, default=0)
        return {"restart": ck, "upload_by": None, "step": ck}

    async def checkpoint_commit(self, m: dict[str, Any]) -> None:
        """A member under the checkpoint baseline: upload if asked, then restart."""
        if self.admin:
            if m.get("upload_by"):
                t0 = time.monotonic()
                while m["restart"] not in self.ckpts and time.monotonic() - t0 < 120:
                    await asyncio.sleep(0.01)
            self.ready.setdefault(m["v"], set())
            restart = {"t": "restart", "v": m["v"], "m": m["m"], "step": m["restart"],
                       "reason": m["reason"], "joiners": m.get("joiners", [])}
            for n in m["m"]:
                self.restarting[n] = time.monotonic() + RESTART_GRACE_S
                self.spawn(self.peers.send(n, restart))
            return
        if m.get("upload_by") == self.me:
            await self.upload_checkpoint()

    def restart_process(self, m: dict[str, Any]) -> None:
        """The baseline restarts the training process (as EDL/Pollux relaunch workers): the
        new process loads the checkpoint from the store and waits for the admin's go."""
        if self.me not in m["m"]:
            self.stopping.set()
            return
        if self.me in m.get("joiners", []):
            return  # a joiner's process is new already: it loads the checkpoint as it is
        info = {"v": m["v"], "m": m["m"], "step": m["step"], "reason": m["reason"],
                "paused_since": self.paused_since or time.time()}
        self.log("restart", **info)
        self.log.f.flush()
        argv = [sys.executable, "-m", LIVE, "node", "--config", os.environ["SAGIN_TRAIN_CONFIG"],
                "--method", self.exp.method, "--resume", json.dumps(info)]
        self.monitor.close()
        os.execv(sys.executable, argv)

    async def restart_load(self, info: dict[str, Any]) -> None:
        self.version, self.members, self.acked_v = info["v"], list(info["m"]), info["v"]
        await self.checkpoint_load({"v": info["v"], "step": info["step"], **info}, None)

    async def checkpoint_load(self, commit: dict[str, Any], t_req: float | None) -> None:
        assert self.trainer is not None and self.exp.store is not None
        size = self.trainer.blob_size
        src = schedule.Source(self.exp.store, 1e6)
        plan = schedule.single(size, [src])
        t_wait = time.monotonic()
        while True:  # the store may still be receiving the checkpoint
            try:
                blob = await self.pull(plan, [src], {"v": commit["v"], "step": commit["step"]},
                                       t_req or time.time())
                break
            except RuntimeError:
                if time.monotonic() - t_wait > CHECKPOINT_WAIT_S:
                    raise
                await asyncio.sleep(0.5)
        await asyncio.to_thread(self.trainer.load, blob)
        self.log("loaded_checkpoint", step=self.trainer.step, v=commit["v"])
        self.first_step = {"t_request": t_req, "joined": t_req is not None,
                           "restarted": t_req is None}
        if t_req is not None:
            self.log("scale_out", v=commit["v"], step=self.trainer.step, t_request=t_req,
                     t_ready=time.time(), delay_s=round(time.time() - t_req, 4),
                     state_bytes=len(blob), method=self.exp.method, pending_go=True)
        await self.peers.send(self.exp.store, {"t": "ready", "v": commit["v"], "from": self.me})

    def admin_ready(self, m: dict[str, Any]) -> None:
        got = self.ready.setdefault(m["v"], set())
        got.add(m["from"])
        self.restarting.pop(m["from"], None)
        if m["v"] == self.version and got >= set(self.members):
            go = {"t": "go", "v": m["v"], "reason": "restart"}
            for n in self.members:
                self.spawn(self.peers.send(n, go))
            self.log("go", v=m["v"], m=self.members)


def route_dev(addr: tuple[str, int] | None) -> str | None:
    """The interface traffic to `addr` leaves by (the link it crosses first)."""
    if addr is None:
        return None
    try:
        out = subprocess.run(["ip", "-o", "route", "get", addr[0]], capture_output=True,
                             text=True, timeout=2).stdout.split()
        return out[out.index("dev") + 1] if "dev" in out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
