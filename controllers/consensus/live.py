"""The same protocols live: LLM nodes in their namespaces, messages over TCP across the
emulated links (the simulator's twin: same protocol.py, another Context).

    python -m controllers.consensus.live node   --config FILE [--name NODE]   (on each node)
    python -m controllers.consensus.live client --config FILE                (on the client)

The client runs every protocol of the experiment in turn over the same questions: it tells
the nodes which protocol comes next, then submits the queries one after another (publishing
the previous query's key with each) and accepts answers by the protocol's rule.  A node
answers a question with its own LLM the first time (SmolLM2, answer.py) and keeps the answer
and how long it took; the later protocols get the same answer after the same time, so every
protocol decides over identical answers and the comparison is the consensus alone.

Signatures are Ed25519 (the `cryptography` package): each node makes its key pair at start
and publishes the public key in the run folder (host-local files: the management plane).
Wire format: one JSON object per line; protocol messages carry the protocol's epoch so that
nothing from one protocol's run reaches the next.

Outputs in $SAGIN_RUN_DIR/consensus/: decisions.csv (every decision: protocol, question,
key, accepted answer, latency, view, the wall-clock time `t` it was accepted - appended as
each is made, for the live view - and the simulator's latency for the same answers and
answer times), <node>.jsonl (every message each node sent and received: every round and
every vote), answers.csv (each node's answer and LLM time per question), summary.json
(per protocol: decided, accuracy, latency, messages; the sim-to-emulation gap), latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllers.consensus.config import ConfigError, ConsensusExperiment, load_experiment
from controllers.consensus.protocol import CLIENT, Client, Config, Msg, Node

READY_TIMEOUT_S = 300.0
MAX_QUEUE = 20_000


def _payload(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str).encode()


class Keys:
    """Ed25519 keys: ours to sign, everybody's public keys (files in the run folder)."""

    def __init__(self, folder: Path, name: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.folder, self.name = folder, name
        self.private = Ed25519PrivateKey.generate()
        self.public: dict[str, Any] = {}
        folder.mkdir(parents=True, exist_ok=True)
        raw = self.private.public_key().public_bytes_raw()
        tmp = folder / f".{name}.pub"
        tmp.write_text(raw.hex())
        tmp.rename(folder / f"{name}.pub")

    def load(self, names: tuple[str, ...]) -> bool:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        for n in names:
            if n not in self.public and (self.folder / f"{n}.pub").is_file():
                raw = bytes.fromhex((self.folder / f"{n}.pub").read_text().strip())
                self.public[n] = Ed25519PublicKey.from_public_bytes(raw)
        return all(n in self.public for n in names)

    def sign(self, payload: Any) -> str:
        return self.private.sign(_payload(payload)).hex()

    def verify(self, node: str, payload: Any, sig: Any) -> bool:
        from cryptography.exceptions import InvalidSignature

        key = self.public.get(node)
        if key is None or not isinstance(sig, str):
            return False
        try:
            key.verify(bytes.fromhex(sig), _payload(payload))
            return True
        except (InvalidSignature, ValueError):
            return False


class Wire:
    """Persistent TCP connections to peers, one writer task each; JSON lines both ways."""

    def __init__(self, name: str, address: Callable[[str], tuple[str, int]],
                 deliver: Callable[[dict[str, Any]], None], log: Any) -> None:
        self.name, self.address, self.deliver, self.log = name, address, deliver, log
        self.queues: dict[str, asyncio.Queue[bytes]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.sent = 0

    def send(self, dst: str, obj: dict[str, Any]) -> None:
        q = self.queues.get(dst)
        if q is None:
            q = self.queues[dst] = asyncio.Queue(MAX_QUEUE)
            self.tasks.append(asyncio.get_running_loop().create_task(self._writer(dst, q)))
        with contextlib.suppress(asyncio.QueueFull):  # a dead peer: drop, never block
            q.put_nowait((json.dumps(obj, default=str) + "\n").encode())
            self.sent += 1

    async def _writer(self, dst: str, q: asyncio.Queue[bytes]) -> None:
        while True:
            host, port = self.address(dst)
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            try:
                writer.write((json.dumps({"hello": self.name}) + "\n").encode())
                while True:
                    line = await q.get()
                    writer.write(line)
                    if q.empty():
                        await writer.drain()
            except (OSError, ConnectionError):
                await asyncio.sleep(0.2)  # reconnect; the message in hand is lost (a crash)
            except asyncio.CancelledError:
                writer.close()
                return

    async def serve(self, port: int) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = "?"
            try:
                while line := await reader.readline():
                    obj = json.loads(line)
                    if "hello" in obj:
                        peer = obj["hello"]
                        continue
                    obj["from"] = peer
                    self.deliver(obj)
            except (OSError, ValueError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(handle, "0.0.0.0", port)


class LiveContext:
    """protocol.Context over the Wire: the node's real clock, timers on the event loop."""

    def __init__(self, name: str, wire: Wire, keys: Keys, epoch: int, log: Any) -> None:
        self.name, self.wire, self.keys, self.epoch, self.log = name, wire, keys, epoch, log
        self.target: Node | None = None
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def send(self, dst: str, msg: Msg) -> None:
        _log(self.log, "tx", dst, msg, self.epoch)
        self.wire.send(dst, {"p": self.epoch, "m": msg.to_json()})

    def set_timer(self, delay: float, tag: str) -> None:
        node = self.target
        if node is not None:
            asyncio.get_running_loop().call_later(delay, node.on_timer, tag)

    def sign(self, payload: Any) -> Any:
        return self.keys.sign(payload)

    def verify(self, node: str, payload: Any, sig: Any) -> bool:
        return self.keys.verify(node, payload, sig)


def _log(log: Any, direction: str, peer: str, m: Msg, epoch: int) -> None:
    if log is not None:
        log.write(json.dumps({"t": round(time.time(), 4), "dir": direction, "peer": peer,
                              "p": epoch, "kind": m.kind, "seq": m.seq, "view": m.view,
                              "value": m.value, "phase": m.phase, "sender": m.sender}) + "\n")


def _address(exp: ConsensusExperiment) -> Callable[[str], tuple[str, int]]:
    def address(node: str) -> tuple[str, int]:
        return (exp.client if node == CLIENT else node), exp.port  # names resolve in the netns
    return address


def _config(exp: ConsensusExperiment, protocol: str) -> Config:
    return Config(protocol, exp.names, committee_share=exp.committee_share,
                  view_timeout=exp.view_timeout_s)


# ---- the LLM node ------------------------------------------------------------------------------
async def node_main(exp: ConsensusExperiment, name: str, out: Path) -> int:
    from controllers.consensus.answer import Answerer, load_questions
    from controllers.consensus.behaviours import Byzantine

    spec = exp.nodes[name]
    questions = {q.id: q for q in load_questions()[:exp.questions]}
    log = (out / f"{name}.jsonl").open("a", buffering=1)
    keys = Keys(out / "keys", name)
    loop = asyncio.get_running_loop()
    t = time.monotonic()
    answerer = await loop.run_in_executor(None, lambda: Answerer(
        exp.model, spec.persona, spec.temperature, tuple(spec.drop_layers), exp.seed))
    print(f"{name}: model loaded in {time.monotonic() - t:.1f} s", flush=True)
    cache: dict[str, tuple[str, float]] = {}
    state: dict[str, Any] = {"epoch": 0, "node": None, "ctx": None}
    tasks: set[asyncio.Task[None]] = set()
    wire: Wire

    def deliver(obj: dict[str, Any]) -> None:
        if "m" in obj:
            node = state["node"]
            if node is None or obj.get("p") != state["epoch"]:
                return
            m = Msg.from_json(obj["m"])
            _log(log, "rx", obj.get("from", "?"), m, state["epoch"])
            node.on_message(m)
        elif obj.get("ctl") == "protocol":
            ctx = LiveContext(name, wire, keys, int(obj["epoch"]), log)
            cfg = _config(exp, obj["name"])
            node: Node = Node(cfg, ctx) if spec.behaviour == "honest" else Byzantine(
                cfg, ctx, spec.behaviour, frozenset(n for n, s in exp.nodes.items()
                                                    if s.behaviour == "collude"),
                spec.late_s, exp.seed)
            ctx.target = node
            state.update(epoch=int(obj["epoch"]), node=node, ctx=ctx)
        elif obj.get("ctl") == "query":
            task = loop.create_task(answer(int(obj["epoch"]), int(obj["seq"]), obj["qid"],
                                           obj.get("previous_key")))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif obj.get("ctl") == "stats":
            wire.send(CLIENT, {"ctl": "stats", "node": name, "answers": cache,
                               "sent": wire.sent})

    async def answer(epoch: int, seq: int, qid: str, previous_key: str | None) -> None:
        q = questions[qid]
        if qid in cache:
            await asyncio.sleep(cache[qid][1])
        else:
            t0 = time.monotonic()
            ans = await loop.run_in_executor(None, answerer.answer, q)
            cache[qid] = (ans, round(time.monotonic() - t0, 4))
        node = state["node"]
        if node is None or state["epoch"] != epoch:
            return
        given = cache[qid][0]
        if isinstance(node, Byzantine):
            given = node.answer_for(seq, given, q.answer)
        node.on_answer(seq, given, previous_key)

    wire = Wire(name, _address(exp), deliver, log)
    server = await wire.serve(exp.port)
    while not keys.load(exp.names):
        await asyncio.sleep(0.2)
    wire.send(CLIENT, {"ctl": "ready", "node": name})
    print(f"{name}: listening on port {exp.port}, ready", flush=True)
    async with server:
        await server.serve_forever()
    return 0


# ---- the client --------------------------------------------------------------------------------
async def client_main(exp: ConsensusExperiment, out: Path) -> int:
    from controllers.consensus.answer import load_questions

    questions = load_questions()[:exp.questions]
    keys = Keys(out / "keys", CLIENT)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    wire = Wire(CLIENT, _address(exp), inbox.put_nowait, None)
    server = await wire.serve(exp.port)
    ready: set[str] = set()
    t0 = time.monotonic()
    print(f"client: waiting for {len(exp.nodes)} LLM nodes to load their models", flush=True)
    while ready != set(exp.nodes):
        try:
            obj = await asyncio.wait_for(inbox.get(), 1.0)
        except TimeoutError:
            obj = {}
        if obj.get("ctl") == "ready":
            ready.add(obj["node"])
        if time.monotonic() - t0 > READY_TIMEOUT_S:
            print(f"client: nodes not ready after {READY_TIMEOUT_S:.0f} s: "
                  f"{sorted(set(exp.nodes) - ready)}; going on without them", flush=True)
            break
    keys.load(exp.names)
    rows: list[dict[str, Any]] = []
    csv_path = out / "decisions.csv"
    fields = ["protocol", "seq", "qid", "key", "accepted", "correct", "latency_s", "view",
              "replies", "t"]
    with csv_path.open("w", newline="") as f:
        csv.DictWriter(f, fields, extrasaction="ignore").writeheader()
    for epoch, protocol in enumerate(exp.protocols, 1):
        cfg = _config(exp, protocol)
        client = Client(cfg, keys.verify)
        for n in exp.nodes:
            wire.send(n, {"ctl": "protocol", "name": protocol, "epoch": epoch})
        await asyncio.sleep(0.5)
        prev: str | None = None
        for seq, q in enumerate(questions, 1):
            start = time.monotonic()
            for n in exp.nodes:
                wire.send(n, {"ctl": "query", "epoch": epoch, "seq": seq, "qid": q.id,
                              "previous_key": prev})
            deadline = start + exp.query_timeout_s
            accepted, view, replies = None, 0, 0
            enough = len(exp.nodes) - (len(exp.nodes) - 1) // 3  # majority: n - f answers
            while accepted is None:
                try:
                    obj = await asyncio.wait_for(inbox.get(),
                                                 max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    if protocol == "majority":
                        accepted = client.close(seq)
                    break
                if "m" not in obj or obj.get("p") != epoch:
                    continue
                m = Msg.from_json(obj["m"])
                if m.kind != "REPLY" or m.seq != seq:
                    continue
                replies += 1
                accepted = client.on_reply(m)
                view = max(view, m.view)
                if protocol == "majority" and replies == enough:
                    deadline = min(deadline, time.monotonic() + exp.view_timeout_s)
            row = {"protocol": protocol, "seq": seq, "qid": q.id, "key": q.answer,
                   "accepted": accepted, "correct": accepted == q.answer,
                   "latency_s": round(time.monotonic() - start, 4) if accepted else None,
                   "view": view, "replies": replies, "t": round(time.time(), 4)}
            rows.append(row)
            with csv_path.open("a", newline="") as f:
                csv.DictWriter(f, fields, extrasaction="ignore").writerow(row)
            print(f"client: {protocol} q{seq} {q.id}: {accepted} (key {q.answer}) "
                  f"{row['latency_s']} s", flush=True)
            prev = q.answer
            await asyncio.sleep(0.2)  # let the last commits land before the next query
    stats = await _stats(exp, wire, inbox)
    summary = summarise(exp, rows, stats)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _write_answers(out, stats)
    _plot(out, rows)
    print("client: " + json.dumps(summary["protocols"]), flush=True)
    server.close()
    for task in wire.tasks:
        task.cancel()
    return 0


async def _stats(exp: ConsensusExperiment, wire: Wire,
                 inbox: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    for n in exp.nodes:
        wire.send(n, {"ctl": "stats"})
    got: dict[str, Any] = {}
    end = time.monotonic() + 10
    while len(got) < len(exp.nodes) and time.monotonic() < end:
        try:
            obj = await asyncio.wait_for(inbox.get(), max(0.01, end - time.monotonic()))
        except TimeoutError:
            break
        if obj.get("ctl") == "stats":
            got[obj["node"]] = obj
    return got


def summarise(exp: ConsensusExperiment, rows: list[dict[str, Any]],
              stats: dict[str, Any]) -> dict[str, Any]:
    """Per protocol: measured, and the simulator's prediction for the same answers and
    answer times (the sim-to-emulation gap)."""
    from controllers.consensus.answer import load_questions
    from controllers.consensus.sim import PROFILES, Simulation

    questions = load_questions()[:exp.questions]
    answers = {n: {qid: tuple(v) for qid, v in s.get("answers", {}).items()}
               for n, s in stats.items()}
    out: dict[str, Any] = {"nodes": {n: s.model_dump() for n, s in exp.nodes.items()},
                           "questions": len(questions), "protocols": {}}
    single = {n: sum(a[0] == q.answer for q in questions if (a := answers.get(n, {}).get(q.id)))
              / len(questions) for n in exp.nodes if n in answers}
    out["single_llm_accuracy"] = {n: round(v, 3) for n, v in single.items()}
    for protocol in exp.protocols:
        mine = [r for r in rows if r["protocol"] == protocol]
        lat = [r["latency_s"] for r in mine if r["latency_s"] is not None]
        sim = Simulation(_config(exp, protocol), PROFILES[exp.sim_profile],
                         {n: s.behaviour for n, s in exp.nodes.items()
                          if s.behaviour != "honest"}, seed=exp.seed)
        sim_lat = []
        prev = None
        for seq, q in enumerate(questions, 1):
            sim.fixed = {n: a[q.id] for n, a in answers.items() if q.id in a}
            o = sim.query(seq, q.answer, prev)
            prev = q.answer
            if o.latency_s is not None:
                sim_lat.append(o.latency_s)
        out["protocols"][protocol] = {
            "decided": len(lat), "queries": len(mine),
            "accuracy": round(sum(r["correct"] for r in mine) / max(1, len(mine)), 3),
            "latency_ms_median": round(1000 * statistics.median(lat), 1) if lat else None,
            "latency_ms_p95": round(1000 * sorted(lat)[int(0.95 * (len(lat) - 1))], 1)
            if lat else None,
            "sim_latency_ms_median": round(1000 * statistics.median(sim_lat), 1)
            if sim_lat else None,
            "gap_ms_median": round(1000 * (statistics.median(lat) - statistics.median(sim_lat)),
                                   1) if lat and sim_lat else None}
    return out


def _write_answers(out: Path, stats: dict[str, Any]) -> None:
    with (out / "answers.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node", "qid", "answer", "llm_s"])
        for n, s in sorted(stats.items()):
            for qid, (ans, secs) in sorted(s.get("answers", {}).items()):
                w.writerow([n, qid, ans, secs])


def _plot(out: Path, rows: list[dict[str, Any]]) -> None:
    from testbed.analysis.plots import plt, to_png

    fig, ax = plt.subplots(figsize=(8, 4))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    data = [[r["latency_s"] for r in rows if r["protocol"] == p and r["latency_s"]]
            for p in protocols]
    if any(data):
        ax.boxplot([d or [0] for d in data], tick_labels=protocols)
    ax.set_ylabel("query -> accepted answer (s)")
    ax.set_title("Live consensus among the LLM nodes (LLM time included)")
    (out / "latency.png").write_bytes(to_png(fig))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controllers.consensus.live",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=["node", "client"])
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", default=os.environ.get("SAGIN_NODE"))
    ap.add_argument("--run-dir", default=os.environ.get("SAGIN_RUN_DIR"))
    args = ap.parse_args(argv)
    # several LLM nodes share this host's cores: one BLAS thread each (before numpy loads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        exp = load_experiment(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not args.run_dir:
        ap.error("--run-dir (or SAGIN_RUN_DIR) is needed")
    out = Path(args.run_dir) / "consensus"
    out.mkdir(parents=True, exist_ok=True)
    if args.role == "node":
        if args.name not in exp.nodes:
            ap.error(f"--name {args.name!r} is not one of the experiment's nodes "
                     f"{list(exp.nodes)}")
        return asyncio.run(node_main(exp, args.name, out))
    return asyncio.run(client_main(exp, out))


if __name__ == "__main__":
    sys.exit(main())
