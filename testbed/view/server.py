"""The view's HTTP server: the page, its npm assets, the topology and the frames of one run.

Bound to 127.0.0.1 by default, every request checked against the run's token (in the URL the
console prints).  A separate process from the run (`testbed.view`), reading the run folder:
the run never waits for it, and whatever a browser does (closes, stalls, floods) costs the
run nothing.  Frames sit in one bounded ring that every client reads from its own cursor;
a client that falls further behind than the ring loses the oldest frames, and the answer says
how many (`dropped`).  Connections are bounded too: at most MAX_CLIENTS at once, each with a
socket timeout, so a slow client holds one thread for seconds, not the server.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

WEB = Path(__file__).resolve().parent / "web"
VENDOR = WEB / "node_modules"
# npm packages the page may load (installed by the setup from web/package-lock.json)
PACKAGES = ("leaflet", "uplot", "world-atlas", "topojson-client")
RING = 20_000
BATCH = 2_000
MAX_CLIENTS = 32
SOCKET_TIMEOUT_S = 10.0


class Source(Protocol):
    """Where frames come from: a run folder (feed.RunFeed) or a synthetic load (synthetic)."""

    live: bool
    series: list[dict[str, Any]]  # the workloads' series declared so far (they grow live)

    def topology(self) -> dict[str, Any]: ...
    def run_info(self) -> dict[str, Any]: ...
    def poll(self) -> list[dict[str, Any]]: ...
    def now(self) -> float | None: ...
    def ended(self) -> bool: ...


class Hub:
    """The frames so far (the newest RING), numbered; filled by one thread polling the source."""

    def __init__(self, source: Source, period_s: float = 0.25) -> None:
        self.source, self.period = source, period_s
        self.frames: deque[dict[str, Any]] = deque(maxlen=RING)
        self.next_seq = 0
        self.lock = threading.Lock()
        self.done = False
        self.stats = {"requests": 0, "frames": 0, "dropped": 0, "refused": 0, "clients": 0}
        self._stop = threading.Event()
        self._topology: dict[str, Any] | None = None
        self.error: str | None = None
        self.run_state: dict[str, Any] = {}  # status and phase, refreshed about once a second
        self._state_at = 0.0

    def topology(self) -> dict[str, Any]:
        # recomputed until frames flow (positions of a starting run), then kept
        if self._topology is None or self.next_seq == 0:
            self._topology = self.source.topology()
            return self._topology
        # status and headline change while a run goes, and a workload declares its series
        # once its first records exist
        return {**self._topology, "run": self.source.run_info(), "series": self.source.series}

    def pump(self) -> int:
        """Move the source's new frames into the ring; how many."""
        try:
            frames = self.source.poll()
        except Exception as exc:  # noqa: BLE001 - a bad line must not end the view
            self.error = f"{type(exc).__name__}: {exc}"
            return 0
        with self.lock:
            for f in frames:
                f["seq"] = self.next_seq
                self.next_seq += 1
                self.frames.append(f)
            self.stats["frames"] = self.next_seq
        return len(frames)

    def _refresh_state(self) -> None:
        now = time.monotonic()
        if now - self._state_at >= 1.0 or self.done:
            self._state_at = now
            try:
                info = self.source.run_info()
            except Exception:  # noqa: BLE001 - a half-written manifest: next time
                return
            self.run_state = {"status": info.get("status"), "phase": info.get("phase")}

    def run(self) -> None:
        while not self._stop.is_set():
            ended = self.source.ended()
            self.pump()
            self._refresh_state()
            if ended:  # one last read after the end: everything the run wrote is in
                self.done = True
                return
            self._stop.wait(self.period)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, name="view-feed", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    def since(self, seq: int) -> dict[str, Any]:
        with self.lock:
            first = self.frames[0]["seq"] if self.frames else self.next_seq
            dropped = max(0, first - seq)
            start = max(seq, first) - first
            out = [self.frames[i] for i in range(start, min(len(self.frames), start + BATCH))]
            nxt = out[-1]["seq"] + 1 if out else max(seq, first)
            self.stats["dropped"] += dropped
        return {"frames": out, "next": nxt, "ended": self.done and nxt >= self.next_seq,
                "dropped": dropped, "now_t": self.source.now(), **self.run_state}


def _file_under(root: Path, rel: str) -> Path | None:
    """root/rel when it is a file inside root (no .., no symlink out), else None."""
    if not rel or rel.startswith("/") or "\\" in rel:
        return None
    try:
        path = (root / rel).resolve()
        path.relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    return path if path.is_file() else None


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # the run's console is not the place for access logs

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(SOCKET_TIMEOUT_S)

    def _send(self, code: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any) -> None:
        self._send(200, json.dumps(data, separators=(",", ":")).encode(), "application/json")

    def do_GET(self) -> None:
        srv = self.server
        if not srv.slots.acquire(blocking=False):
            srv.hub.stats["refused"] += 1
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many clients\n", "text/plain")
            return
        try:
            self._get(srv)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # a browser gone mid-answer
        finally:
            srv.slots.release()

    def _get(self, srv: ViewServer) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        token = (query.get("token") or [self.headers.get("X-Token", "")])[0]
        if not hmac.compare_digest(token.encode(), srv.token.encode()):
            self._send(HTTPStatus.FORBIDDEN, b"wrong or missing token: open the URL the "
                       b"testbed printed\n", "text/plain")
            return
        srv.hub.stats["requests"] += 1
        path = url.path
        if path in ("/", "/index.html"):
            self._file(WEB / "index.html")
        elif path.startswith("/assets/"):
            self._file(_file_under(WEB, path[len("/assets/"):]), exclude=VENDOR)
        elif path.startswith("/vendor/"):
            pkg, _, rest = path[len("/vendor/"):].partition("/")
            self._file(_file_under(VENDOR / pkg, rest) if pkg in PACKAGES else None, cache=True)
        elif path == "/api/topology":
            self._json(srv.hub.topology())
        elif path == "/api/frames":
            try:
                since = max(0, int((query.get("since") or ["0"])[0]))
            except ValueError:
                since = 0
            self._json(srv.hub.since(since))
        elif path == "/api/stats":
            self._json({**srv.hub.stats, "clients": srv.slots_in_use(),
                        "error": srv.hub.error})
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _file(self, path: Path | None, exclude: Path | None = None, cache: bool = False) -> None:
        if path is None or not path.is_file() or (
                exclude is not None and path.is_relative_to(exclude.resolve())):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith(("javascript", "json")):
            ctype += "; charset=utf-8"
        self._send(200, path.read_bytes(), ctype, cache=cache)


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: Hub, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), Handler)
        self.hub, self.token = hub, token
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that went away or stalled past the socket timeout: nothing to report."""
        return

    def slots_in_use(self) -> int:
        return MAX_CLIENTS - self.slots._value

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/?token={self.token}"


def assets_missing() -> list[str]:
    """The npm packages the page needs that are not installed (setup installs them)."""
    return [p for p in PACKAGES if not (VENDOR / p / "package.json").is_file()]


def serve(source: Source, token: str, host: str = "127.0.0.1", port: int = 0,
          announce: Any = None, on_exit: Any = None) -> None:
    """Serve until interrupted (or, for a live source, until the run's teardown ends it);
    `on_exit(stats)` gets the server's own CPU time and counters (the view bench's numbers)."""
    t0, cpu0 = time.monotonic(), time.process_time()
    hub = Hub(source)
    hub.start()
    srv = ViewServer(hub, token, host, port)
    if announce is not None:
        announce(srv.url)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        hub.stop()
        srv.server_close()
        if on_exit is not None:
            on_exit({**hub.stats, "cpu_s": round(time.process_time() - cpu0, 3),
                     "wall_s": round(time.monotonic() - t0, 3), "error": hub.error})


def wait_for(path: Path, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """The view.json a starting view process writes (its URL), or None after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            time.sleep(0.05)
    return None
