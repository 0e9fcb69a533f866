"""Payload agent: the service on a compute node (UAV edge server, satellite, ground server) that
executes offloaded tasks, reached over the emulated network with the `payloads.protocol` format.

It runs inside the node's Linux network namespace, or on a physical board, and has two modes:

* ``emulated`` - the node's CPU is modelled, not burned.  The agent does NOT run the task's
  computation: it holds each task for exactly as long as a processor of `cpu_hz` cycles/s
  would need to execute it, then answers.  Concurrent tasks share that processor by weighted
  processor sharing (generalised processor sharing, GPS): each task in service drains its
  remaining cycles at ``cpu_hz * share_i / sum(shares in service)``; a task of share 0 gets
  nothing while tasks of positive share are in service; if every share is 0 they split the
  processor equally.  This is how the testbed emulates, say, a UAV's 5 GHz edge server on a
  2-core host - the same way ns-3 emulates a link's delay instead of stretching a real cable.
  It is event driven (one asyncio timer for the next completion, recomputed on each arrival
  and completion), so a hundred concurrent tasks cost no CPU.  The input's SHA-256 digest is
  still really computed, so the result proves the whole input arrived intact.
* ``real`` - the task really runs a CPU kernel (SHA-256 over 4 KiB blocks, in a worker
  thread).  At start the agent measures how many kernel iterations this host does per second
  (about 0.2 s); a task of c cycles on a node of `cpu_hz` then runs ``c / cpu_hz`` seconds'
  worth of iterations - counted, not slept, so a loaded or throttled board shows up as a longer
  execution time.  Tasks run one at a time, first come first served; `share` is ignored.

Admission is bounded: with `max_queue` tasks queued or running, a further task is answered
"overloaded" and counted in `rejected` - nothing is dropped silently.  Every answer to a task
that finished or was refused is appended to `log_path` as one JSON line (the response header);
every `report_interval_s` the queue and this process's CPU and memory use are appended to
`report_path`.

Hostile peers are bounded too: at most `max_connections` are served at once (a further one
gets a refusal and is closed), a header must be complete `HEADER_STALL_S` after its first byte,
and every refusal is counted by reason (`refused` in the health reply).

Run it with ``python -m payloads.agent --node uav1 --cpu-hz 5e9`` and the run's token in
$SAGIN_RUN_TOKEN (as the timeline's `exec` provides), or ``--token-file``; the agent refuses to
start without one, and refuses every request that does not carry it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TextIO

from payloads.protocol import (
    MAX_BODY_BYTES,
    ConnectionClosed,
    ProtocolError,
    encode_frame,
    read_body,
    read_header,
    write_message,
)

Mode = Literal["emulated", "real"]
MODES: tuple[Mode, ...] = ("emulated", "real")
DEFAULT_PORT = 7700
TOKEN_ENV = "SAGIN_RUN_TOKEN"

# A timer may fire a hair before the exact completion instant; a task whose remaining work
# would take less than this at its current rate counts as done.
_DONE_TOLERANCE_S = 1e-6
# Inputs at least this large are hashed in a thread (hashlib releases the GIL) so that one big
# upload does not stall the timers of every other task.
_THREAD_DIGEST_BYTES = 1 << 20
# How long an unauthorized peer's body is read (and dropped) before hanging up; reading it lets
# the refusal arrive instead of a connection reset.
_DISCARD_TIMEOUT_S = 5.0
# A message's header must be complete this long after its first byte (slow-loris peers).
HEADER_STALL_S = 10.0
# Connections served at once: a run opens a few per client node; past this a peer is refused
# at once, so that a flood of connections cannot grow the agent's memory without bound.
MAX_CONNECTIONS = 256

_REFUSAL = encode_frame({"ok": False, "error": "too many connections"})
_KERNEL_BLOCK = bytes(range(256)) * 16  # 4 KiB: above hashlib's 2 KiB GIL-release threshold
_KERNEL_BATCH = 256  # iterations between checks of the stop flag


class _Job:
    __slots__ = ("future", "remaining", "share", "t_start")

    def __init__(self, cycles: float, share: float, future: asyncio.Future[tuple[float, float]]):
        self.remaining = cycles
        self.share = share
        self.future = future
        self.t_start: float | None = None


class EmulatedCpu:
    """A processor of `cpu_hz` cycles/s shared by weighted processor sharing (see module doc)."""

    def __init__(self, cpu_hz: float) -> None:
        self.cpu_hz = cpu_hz
        self._jobs: list[_Job] = []
        self._rates: list[float] = []  # cycles/s of each job, as of the last reschedule
        self._last = 0.0  # loop time up to which `remaining` is accounted
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> int:
        """Tasks currently receiving cycles."""
        return sum(rate > 0 for rate in self._rates)

    def describe(self) -> dict[str, Any]:
        return {"sharing": "weighted processor sharing"}

    async def start(self) -> None:
        self._last = asyncio.get_running_loop().time()

    async def run(self, cycles: float, share: float) -> tuple[float, float]:
        """Hold until `cycles` have been served; returns wall-clock (t_start, t_done)."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        job = _Job(cycles, share, loop.create_future())
        self._jobs.append(job)
        self._reschedule(loop)
        try:
            return await job.future
        finally:
            if job in self._jobs:  # cancelled before it finished: hand its share to the others
                self._advance(loop.time())
                self._jobs.remove(job)
                self._reschedule(loop)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for job in self._jobs:
            job.future.cancel()

    def _shares(self) -> list[float]:
        positive = sum(job.share for job in self._jobs if job.share > 0)
        if positive > 0:
            return [self.cpu_hz * job.share / positive if job.share > 0 else 0.0
                    for job in self._jobs]
        return [self.cpu_hz / len(self._jobs)] * len(self._jobs)

    def _advance(self, now: float) -> None:
        """Charge every job the cycles it received since the last event."""
        dt = now - self._last
        if dt > 0:
            for job, rate in zip(self._jobs, self._rates, strict=True):
                job.remaining -= rate * dt
        self._last = now

    def _reschedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Recompute the rates after a change and arm one timer for the next completion."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._rates = self._shares() if self._jobs else []
        wall = time.time()
        soonest = math.inf
        for job, rate in zip(self._jobs, self._rates, strict=True):
            if rate > 0:
                if job.t_start is None:
                    job.t_start = wall
                soonest = min(soonest, max(job.remaining, 0.0) / rate)
        if soonest < math.inf:
            self._timer = loop.call_at(self._last + soonest, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._advance(loop.time())
        t_done = time.time()
        waiting = []
        for job, rate in zip(self._jobs, self._rates, strict=True):
            if rate > 0 and job.remaining <= rate * _DONE_TOLERANCE_S:
                if not job.future.done():
                    assert job.t_start is not None
                    job.future.set_result((job.t_start, t_done))
            else:
                waiting.append(job)
        self._jobs = waiting
        self._reschedule(loop)


def _kernel(iterations: int, stop: threading.Event) -> int:
    """The real-mode CPU kernel: SHA-256 over 4 KiB blocks; returns the iterations done."""
    h = hashlib.sha256()
    block = _KERNEL_BLOCK
    done = 0
    while done < iterations and not stop.is_set():
        n = min(_KERNEL_BATCH, iterations - done)
        for _ in range(n):
            h.update(block)
        done += n
    return done


def calibrate_kernel(duration_s: float = 0.2, stop: threading.Event | None = None) -> float:
    """Kernel iterations per second on this host, measured for about `duration_s`."""
    stop = stop or threading.Event()
    _kernel(_KERNEL_BATCH, stop)  # warm up caches and hashlib's lazy lock
    iterations = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration_s and not stop.is_set():
        iterations += _kernel(_KERNEL_BATCH, stop)
    return iterations / elapsed if elapsed > 0 else 0.0


class RealCpu:
    """Runs each task's kernel in one worker thread, first come first served."""

    def __init__(self, cpu_hz: float, calibration_s: float = 0.2) -> None:
        self.cpu_hz = cpu_hz
        self.calibration_s = calibration_s
        self.iters_per_s = 0.0
        self.running = 0
        self._queue: asyncio.Queue[tuple[float, asyncio.Future[tuple[float, float]]]] = (
            asyncio.Queue())
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payload-kernel")
        self._worker: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, Any]:
        return {"kernel": "sha256 over 4 KiB blocks", "kernel_iters_per_s": self.iters_per_s,
                "calibration_s": self.calibration_s, "sharing": "fifo, one at a time"}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.iters_per_s = await loop.run_in_executor(self._pool, calibrate_kernel,
                                                      self.calibration_s, self._stop)
        if self.iters_per_s <= 0:
            raise RuntimeError("real-mode kernel calibration measured no iterations")
        self._worker = asyncio.create_task(self._work())

    async def run(self, cycles: float, share: float) -> tuple[float, float]:
        """Queue `cycles` of work (`share` is ignored); returns wall-clock (t_start, t_done)."""
        future: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((cycles, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cycles, future = await self._queue.get()
            if future.done():  # its requester went away while it waited
                continue
            iterations = round(cycles / self.cpu_hz * self.iters_per_s)
            self.running = 1
            t_start = time.time()
            try:
                await loop.run_in_executor(self._pool, _kernel, iterations, self._stop)
            finally:
                self.running = 0
            if not future.done():
                future.set_result((t_start, time.time()))

    async def close(self) -> None:
        self._stop.set()  # a kernel in progress returns within one batch
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _ProcessSampler:
    """CPU share and resident memory of this process, from /proc (os.times() elsewhere)."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._last = (time.monotonic(), self._cpu_s())

    def _cpu_s(self) -> float:
        try:
            with open("/proc/self/stat") as f:
                # fields after the parenthesised command name start at field 3 (state);
                # utime and stime are fields 14 and 15
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / self._tick
        except OSError:
            t = os.times()
            return t.user + t.system

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:
            return None

    def sample(self) -> tuple[float, int | None]:
        """(percent of one core used since the previous sample, resident bytes)."""
        now, cpu = time.monotonic(), self._cpu_s()
        t_prev, cpu_prev = self._last
        self._last = (now, cpu)
        percent = 100.0 * (cpu - cpu_prev) / (now - t_prev) if now > t_prev else 0.0
        return round(percent, 2), self._rss()


def _check_task(header: dict[str, Any]) -> str | None:
    """Why a task header is unusable, or None."""

    def number(value: Any) -> bool:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))

    task_id, cycles = header.get("id"), header.get("cycles")
    share, result_bytes = header.get("share", 1.0), header.get("result_bytes", 64)
    if not isinstance(task_id, str):
        return f"id must be a string, got {task_id!r}"
    if not number(cycles) or cycles <= 0:
        return f"cycles must be a finite number > 0, got {cycles!r}"
    if not number(share) or share < 0:
        return f"share must be a finite number >= 0, got {share!r}"
    if (isinstance(result_bytes, bool) or not isinstance(result_bytes, int)
            or not 0 <= result_bytes <= MAX_BODY_BYTES):
        return f"result_bytes must be an integer in [0, {MAX_BODY_BYTES}], got {result_bytes!r}"
    return None


async def _sha256(body: bytes) -> str:
    if len(body) < _THREAD_DIGEST_BYTES:
        return hashlib.sha256(body).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())


def _result_body(digest: str, n: int) -> bytes:
    raw = bytes.fromhex(digest)
    return (raw * (n // len(raw) + 1))[:n]


class PayloadAgent:
    """One node's task executor: a TCP server, a CPU model and the run's logs."""

    def __init__(self, node: str, cpu_hz: float, token: str, mode: Mode = "emulated",
                 max_queue: int = 64, log_path: Path | None = None,
                 report_path: Path | None = None, report_interval_s: float = 1.0,
                 calibration_s: float = 0.2, llm: Any = None,
                 max_connections: int = MAX_CONNECTIONS,
                 header_stall_s: float = HEADER_STALL_S) -> None:
        if not node:
            raise ValueError("node name must not be empty")
        if not (math.isfinite(cpu_hz) and cpu_hz > 0):
            raise ValueError(f"cpu_hz must be a finite number > 0, got {cpu_hz!r}")
        if not token:
            raise ValueError("token must not be empty: the agent refuses to run unauthenticated")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if not report_interval_s > 0:
            raise ValueError(f"report_interval_s must be > 0, got {report_interval_s}")
        self.node, self.cpu_hz, self.mode, self.max_queue = node, float(cpu_hz), mode, max_queue
        self.log_path, self.report_path = log_path, report_path
        self.report_interval_s = report_interval_s
        self._token = token.encode()
        self.cpu: EmulatedCpu | RealCpu = (EmulatedCpu(self.cpu_hz) if mode == "emulated"
                                           else RealCpu(self.cpu_hz, calibration_s))
        self.completed = 0
        self.rejected = 0  # refused as overloaded
        # refused peers by reason: unauthorized, bad request, too many connections, ...
        self.refused: collections.Counter[str] = collections.Counter()
        self.max_connections, self.header_stall_s = max_connections, header_stall_s
        self._in_system = 0  # tasks admitted and not yet answered: queued or running
        self.host: str | None = None
        self.port: int | None = None
        self._t0 = time.monotonic()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._report_task: asyncio.Task[None] | None = None
        self._log: TextIO | None = None
        self._report: TextIO | None = None
        self._infer_pool: ThreadPoolExecutor | None = None
        self._model: Any = None  # payloads.inference.TinyCnn, built by the first inference
        self.llm = llm  # payloads.llm.node.ShardHost when this node hosts LLM shards

    @property
    def queue_len(self) -> int:
        """Tasks queued or running."""
        return self._in_system

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Calibrate (real mode), open the logs and listen; `port` 0 binds an ephemeral port,
        found afterwards in `self.port`."""
        try:
            await self.cpu.start()
            # opened here, not in the background, so a bad path fails the start, loudly
            if self.log_path is not None:
                self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - see close()
            if self.report_path is not None:
                self._report = open(self.report_path, "a", buffering=1)  # noqa: SIM115
            self._t0 = time.monotonic()
            self._server = await asyncio.start_server(self._serve, host, port)
        except BaseException:
            await self.close()  # nothing half-started is left behind (thread, files)
            raise
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        if self._report is not None:
            self._report_task = asyncio.create_task(self._report_loop(self._report))

    async def close(self) -> None:
        """Stop listening, abandon the tasks in progress (each logged as cancelled), close logs."""
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._report_task is not None:
            self._report_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._report_task
            self._report_task = None
        await self.cpu.close()
        if self.llm is not None:
            await self.llm.close()
        if self._infer_pool is not None:
            self._infer_pool.shutdown(wait=False, cancel_futures=True)
            self._infer_pool = None
        for f in (self._log, self._report):
            if f is not None:
                f.close()
        self._log = self._report = None

    def health(self) -> dict[str, Any]:
        return {"ok": True, "node": self.node, "mode": self.mode, "cpu_hz": self.cpu_hz,
                "queue_len": self._in_system, "running": self.cpu.running,
                "completed": self.completed, "rejected": self.rejected,
                "uptime_s": round(time.monotonic() - self._t0, 3), "max_queue": self.max_queue,
                "connections": len(self._handlers), "refused": dict(self.refused),
                **self.cpu.describe()}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= self.max_connections:
            self._refuse("too many connections")
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(_REFUSAL)  # one small write, no waiting on the peer
                writer.close()
            return
        self._handlers.add(task)
        try:
            while await self._answer_one(reader, writer):
                pass
        except ProtocolError as exc:
            # the stream's framing is lost: say why, then hang up
            self._refuse("stalled" if "within" in str(exc) else "bad frame")
            with contextlib.suppress(ConnectionError, ProtocolError):
                await write_message(writer, {"ok": False, "node": self.node,
                                             "error": f"bad request: {exc}"})
        except ConnectionError:
            pass  # the peer went away; a finished task was logged already
        except asyncio.CancelledError:
            # close() cancels the connections; this task is asyncio's, and asyncio 3.11's
            # start_server logs a cancelled handler as an error, so it ends normally instead
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer_one(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        try:
            header = await read_header(reader, stall_timeout=self.header_stall_s)
        except ConnectionClosed:
            return False
        t_recv = time.time()
        queue_len = self._in_system
        kind = header.get("kind")
        if not self._authorized(header.get("token")):
            self._refuse("unauthorized")
            reply = self._error(header, "unauthorized")
            await write_message(writer, reply)
            if kind == "task":
                self._write_log(reply)
            await _discard_body(reader, header)
            return False
        body = await read_body(reader, header)
        if kind == "health":
            await write_message(writer, self.health())
        elif kind == "task":
            reply, result = await self._task(header, body, t_recv, queue_len)
            await write_message(writer, reply, result)
        elif kind == "llm" and self.llm is not None:
            answer = await self.llm.handle(header, body)
            if answer is not None:  # pipeline steps are one-way
                await write_message(writer, *answer)
        elif kind == "llm":
            await write_message(writer, self._error(
                header, "bad request: this agent hosts no LLM shards (start it with --llm)"))
        else:
            await write_message(writer, self._error(
                header, f"bad request: unknown kind {kind!r}, expected 'task', 'health' or "
                "'llm'"))
        return True

    async def _task(self, header: dict[str, Any], body: bytes, t_recv: float,
                    queue_len: int) -> tuple[dict[str, Any], bytes]:
        if header.get("op", "cycles") == "infer":
            return await self._infer(header, body, t_recv, queue_len), b""
        if header.get("op", "cycles") != "cycles":
            reply = self._error(header, f"bad request: unknown op {header.get('op')!r}, "
                                "expected 'cycles' or 'infer'")
            self._write_log(reply)
            return reply, b""
        problem = _check_task(header)
        if problem is not None:
            reply = self._error(header, f"bad request: {problem}")
            self._write_log(reply)
            return reply, b""
        cycles = float(header["cycles"])
        share = float(header.get("share", 1.0))
        result_bytes = int(header.get("result_bytes", 64))
        t_queued = time.time()
        if self._in_system >= self.max_queue:
            self.rejected += 1
            reply = {**self._error(header, "overloaded"), "t_recv": t_recv,
                     "queue_len": queue_len}
            self._write_log(reply)
            return reply, b""
        self._in_system += 1
        try:
            (t_start, t_done), digest = await asyncio.gather(self.cpu.run(cycles, share),
                                                             _sha256(body))
        except asyncio.CancelledError:
            self._write_log({**self._error(header, "cancelled: agent closed"),
                             "t_recv": t_recv, "t_queued": t_queued})
            raise
        finally:
            self._in_system -= 1
        self.completed += 1
        reply = {"ok": True, "id": header["id"], "node": self.node, "digest": digest,
                 "cycles": cycles, "share": share, "t_recv": t_recv, "t_queued": t_queued,
                 "t_start": t_start, "t_done": t_done, "queue_len": queue_len}
        self._write_log(reply)
        return reply, _result_body(digest, result_bytes)

    async def _infer(self, header: dict[str, Any], body: bytes, t_recv: float,
                     queue_len: int) -> dict[str, Any]:
        """Image inference, really executed (payloads/inference.py), one task at a time on a
        thread of its own so the event loop keeps answering; same admission as CPU tasks."""
        from payloads.inference import MAX_IMAGES

        n = header.get("images", 1)
        if not isinstance(header.get("id"), str):
            reply = self._error(header, f"bad request: id must be a string, got "
                                f"{header.get('id')!r}")
        elif isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
            reply = self._error(header, f"bad request: images must be an integer in "
                                f"[1, {MAX_IMAGES}], got {n!r}")
        elif self._in_system >= self.max_queue:
            self.rejected += 1
            reply = {**self._error(header, "overloaded"), "t_recv": t_recv,
                     "queue_len": queue_len}
        else:
            t_queued = time.time()
            self._in_system += 1
            try:
                if self._infer_pool is None:
                    self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="infer")
                out = await asyncio.get_running_loop().run_in_executor(
                    self._infer_pool, self._run_inference, body, n)
            except ImportError as exc:
                out = {"error": f"{exc.name or 'torch'} is not installed on {self.node}: "
                                "inference tasks need torch and numpy"}
            except ValueError as exc:
                out = {"error": f"bad request: {exc}"}
            finally:
                self._in_system -= 1
            if "error" in out:
                reply = self._error(header, out["error"])
            else:
                self.completed += 1
                reply = {"ok": True, "id": header["id"], "node": self.node, "op": "infer",
                         "images": n, **out, "t_recv": t_recv, "t_queued": t_queued,
                         "queue_len": queue_len}
        self._write_log(reply)
        return reply

    def _run_inference(self, body: bytes, n: int) -> dict[str, Any]:
        """Runs on the inference thread: the model is built on first use (torch's import and
        the weights), before t_start, so execution time is the inference alone."""
        from payloads.inference import MODEL, TinyCnn, decode_images

        images = decode_images(body, n)
        if self._model is None:
            self._model = TinyCnn()
        t_start = time.time()
        result = self._model(images)
        return {"model": MODEL, **result, "t_start": t_start, "t_done": time.time()}

    def _authorized(self, token: Any) -> bool:
        """Constant-time check, so response timing does not leak how much of a guess matched."""
        return isinstance(token, str) and hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), self._token)

    def _refuse(self, reason: str) -> None:
        """Counted always; said on stderr the first time and every 1000th, so that a flood is
        visible in the node's log without filling it."""
        self.refused[reason] += 1
        n = self.refused[reason]
        if n == 1 or n % 1000 == 0:
            print(f"agent {self.node}: refused {n} peer(s) so far: {reason}", file=sys.stderr,
                  flush=True)

    def _error(self, header: dict[str, Any], error: str) -> dict[str, Any]:
        reply: dict[str, Any] = {"ok": False, "node": self.node, "error": error}
        if "id" in header:
            reply["id"] = header["id"]
        return reply

    def _write_log(self, reply: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(reply) + "\n")

    async def _report_loop(self, out: TextIO) -> None:
        from payloads.sensors import Sensors

        loop = asyncio.get_running_loop()
        sampler = _ProcessSampler()
        sensors = Sensors(int(self.report_interval_s * 1000))
        due = loop.time()
        try:
            while True:
                due += self.report_interval_s  # fixed schedule: no drift from the writes
                await asyncio.sleep(max(0.0, due - loop.time()))
                cpu_percent, rss = sampler.sample()
                out.write(json.dumps({"t": time.time(), "queue_len": self._in_system,
                                      "running": self.cpu.running, "completed": self.completed,
                                      "rejected": self.rejected, "cpu_percent": cpu_percent,
                                      "rss_bytes": rss, "sensors": sensors.source,
                                      **sensors.read()}) + "\n")
        finally:
            sensors.close()


async def _discard_body(reader: asyncio.StreamReader, header: dict[str, Any]) -> None:
    """Read and drop a refused request's body (bounded in time), so that closing afterwards
    sends a FIN after the refusal rather than a reset that could destroy it."""
    async def drain(left: int) -> None:
        while left > 0:
            chunk = await reader.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

    # wait_for rather than asyncio.timeout (3.11): the agent also runs on boards whose
    # Python is older (JetPack 6 ships 3.10)
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        await asyncio.wait_for(drain(header.get("body_bytes", 0)), _DISCARD_TIMEOUT_S)


def _resolve_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.token:
        return args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read token file {args.token_file}: {exc.strerror}")
        if not token:
            parser.error(f"token file {args.token_file} is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        parser.error(f"no token: refusing to start an agent anyone could use; pass --token-file F "
                     f"or set {TOKEN_ENV} (the testbed's exec does), or --token T")
    return token


async def _run_until_signal(agent: PayloadAgent, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start(host, port)
        detail = (f" kernel {agent.cpu.iters_per_s:.0f} it/s" if isinstance(agent.cpu, RealCpu)
                  else "")
        print(f"agent {agent.node} listening on {host}:{agent.port} mode {agent.mode} "
              f"cpu_hz {agent.cpu_hz:g} max_queue {agent.max_queue}{detail}", flush=True)
        await stop.wait()
    finally:
        await agent.close()


def _llm_host(args: argparse.Namespace, token: str) -> Any:
    # One BLAS thread: an emulated device is one core's worth of work (its speed comes from
    # --llm-speed), and several nodes share this host's cores.  Must precede numpy's import.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from payloads.llm.node import ShardHost

    speed = args.llm_speed
    if speed is None and args.llm_profile:
        from testbed.devices.profiles import lookup

        speed = lookup(args.llm_profile).cpu_speed  # numpy decode runs on one core
    mem = int(args.llm_mem_mb * 2**20) if args.llm_mem_mb else None
    if args.llm_offload and mem is None:
        raise ValueError("--llm-offload needs --llm-mem-mb: without a memory limit every layer "
                         "stays resident and nothing is streamed")
    if args.llm_disk_mb_s is not None and not args.llm_offload:
        raise ValueError("--llm-disk-mb-s needs --llm-offload: only a node that streams its "
                         "weights reads them from storage")
    return ShardHost(args.node, token, speed=speed, mem_limit_bytes=mem,
                     offload=args.llm_offload, disk_mb_s=args.llm_disk_mb_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m payloads.agent",
        description="Execute offloaded tasks for one node of the emulated network.")
    parser.add_argument("--node", default=os.environ.get("SAGIN_NODE"),
                        required="SAGIN_NODE" not in os.environ,
                        help="node name (default: $SAGIN_NODE)")
    parser.add_argument("--cpu-hz", type=float, required=True,
                        help="the node's processor speed in cycles/s, e.g. 5e9")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any)")
    parser.add_argument("--mode", choices=MODES, default="emulated",
                        help="emulated: modelled CPU (processor sharing); real: run a kernel")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--token", help="shared secret (visible in ps; prefer --token-file)")
    tokens.add_argument("--token-file", help=f"file holding the secret (default: ${TOKEN_ENV})")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="tasks queued+running beyond which requests are refused")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                        help="peers served at once; more are refused and counted")
    parser.add_argument("--log", type=Path, help="JSON lines: one per finished/refused task")
    parser.add_argument("--report", type=Path, help="JSON lines: periodic load report")
    parser.add_argument("--report-interval", type=float, default=1.0, help="seconds")
    llm = parser.add_argument_group("edge-LLM shards (payloads/llm)")
    llm.add_argument("--llm", action="store_true", help="host LLM layer windows / TP slices")
    llm.add_argument("--llm-profile", help="device profile whose per-core speed the shards "
                     "emulate (testbed/devices/profiles.py), e.g. jetson-orin-nano")
    llm.add_argument("--llm-speed", type=float, help="emulated device speed relative to one "
                     "host core (overrides --llm-profile); omit both to run at host speed")
    llm.add_argument("--llm-mem-mb", type=float, help="memory the device gives model weights")
    llm.add_argument("--llm-offload", action="store_true",
                     help="accept plans larger than --llm-mem-mb: keep what fits resident and "
                     "re-read the other layers from the model file for every token (TPI-LLM "
                     "sliding window, payloads/llm/stream.py) instead of refusing the plan")
    llm.add_argument("--llm-disk-mb-s", type=float, help="with --llm-offload: emulate the "
                     "device's storage at this many MB/s (streamed layers come from float32 "
                     "slice files and each load lasts at least bytes / rate)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    token = _resolve_token(args, parser)
    try:
        host = _llm_host(args, token) if args.llm else None
        agent = PayloadAgent(args.node, args.cpu_hz, token, args.mode, args.max_queue,
                             args.log, args.report, args.report_interval, llm=host,
                             max_connections=args.max_connections)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_run_until_signal(agent, args.host, args.port))
    except OSError as exc:
        print(f"agent {args.node}: cannot start on {args.host}:{args.port}: {exc}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
