"""The CPN steering app's HTTP/JSON API, on a Unix socket.

Why a Unix socket: the mapping algorithm runs in another process, often inside an emulated
node's namespace, while os-ken runs in the switch namespace.  A socket file in the run's state
directory reaches across namespaces and never puts management traffic on emulated links.

Endpoints (all JSON):

    GET    /v1/topology          switches, discovered links, trunks, hosts, ready switches
    GET    /v1/services          every service with its VIP, instance and paths
    PUT    /v1/services/<name>   install or move a service; body:
                                 {"instance": "edge2", "port": 8000,
                                  "instance_port": 8001,          (default: port)
                                  "bandwidth_mbps": 5,            (0: no meter)
                                  "latency_ms": 20,               (optional bound)
                                  "protocols": ["tcp", "udp"],    (default both)
                                  "clients": ["user1"],           (default: every host)
                                  "path": ["sw1", "sw4", "sw3"],  (optional: the mapper's
                                        switches from a client's switch to the instance's;
                                        used while it is up and has the bandwidth, other
                                        clients join it; otherwise lowest latency)
                                  "vip": "198.18.1.254"}          (default: a free one)
                                 -> 200 with the service, "install_ms" and wall-clock
                                    "requested_at"/"installed_at" once the switches confirmed
                                 -> 400 bad field, 409 no path meets bandwidth/latency
    DELETE /v1/services/<name>   remove it (flows and meter)

`ApiClient` is the caller's side (standard library only, so a node needs nothing extra).

A client of this API is the run's own mapper, but the server is written for a hostile one: the
socket file is the owner's alone (0600), a request body is at most 1 MiB (Content-Length
checked before anything is read), a connection that stalls mid-request is closed after
`REQUEST_TIMEOUT_S`, and at most `MAX_CONNECTIONS` are served at once (a further one is
answered 503 and closed), so neither memory nor threads grow with what a client sends.
Refusals are counted by reason (`ApiServer.refused`, and `GET /v1/stats`).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import threading
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from controllers.cpn.sdn.plan import ServiceError
from testbed.net.sdn import SOCKET_ENV
from testbed.scenario.files import reject_constant


class Backend(Protocol):
    def api_topology(self) -> dict[str, Any]: ...
    def api_services(self) -> list[dict[str, Any]]: ...
    def api_put_service(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def api_delete_service(self, name: str) -> dict[str, Any]: ...


MAX_BODY_BYTES = 1 << 20  # a service request is a few hundred bytes
MAX_CONNECTIONS = 32  # the mapper holds one at a time; a few tools may watch too
REQUEST_TIMEOUT_S = 10.0  # idle or stalled mid-request: closed (slow-loris)


class _UnixHttpServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64  # listen backlog: a burst waits to be accepted (and refused)
    backend: Backend

    def __init__(self, path: str, max_connections: int, request_timeout: float) -> None:
        self.request_timeout = request_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self.refused: Counter[str] = Counter()
        self.refused_lock = threading.Lock()
        super().__init__(path, _Handler)

    def refuse(self, reason: str) -> None:
        with self.refused_lock:
            self.refused[reason] += 1

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to the limit; past it, a 503 written from the
        accepting thread (short, never blocking on the peer) and the connection closed."""
        if not self.slots.acquire(blocking=False):
            self.refuse("too many connections")
            try:
                request.settimeout(0.1)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A handler that failed (a peer gone mid-reply, a timeout) is counted, not printed."""
        self.refuse("connection error")


class _Handler(BaseHTTPRequestHandler):
    server: _UnixHttpServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # a stalled request line, header or body
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Unix-socket peers have no address for the default log line; the app logs events."""

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, an oversize header), counted and
        answered like every other error: an HTTP/1.1 status and a JSON body, never the
        header-less HTTP/0.9 page it sends to input that is not HTTP at all."""
        self.server.refuse(f"http {code}")
        self.close_connection = True
        self.request_version = "HTTP/1.1"
        self._reply(code, {"error": message or HTTPStatus(code).phrase})

    def log_error(self, format: str, *args: Any) -> None:
        """http.server reports a stalled request (its socket timeout) here, then closes."""
        if format.startswith("Request timed out"):
            self.server.refuse("timeout")

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _service_name(self) -> str | None:
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["v1", "services"] and parts[2]:
            return parts[2]
        return None

    def do_GET(self) -> None:
        backend = self.server.backend
        if self.path.rstrip("/") == "/v1/topology":
            self._reply(200, backend.api_topology())
        elif self.path.rstrip("/") == "/v1/stats":
            with self.server.refused_lock:
                self._reply(200, {"refused": dict(self.server.refused)})
        elif self.path.rstrip("/") == "/v1/services":
            self._reply(200, backend.api_services())
        else:
            self._reply(404, {"error": f"no such resource {self.path}"})

    def do_PUT(self) -> None:
        name = self._service_name()
        if name is None:
            self._reply(404, {"error": "PUT /v1/services/<name>"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.server.refuse("body size")
            self.close_connection = True  # the body (if any) is never read
            self._reply(413 if length > 0 else 400, {
                "error": f"Content-Length must be 0..{MAX_BODY_BYTES}, got "
                         f"{self.headers.get('Content-Length')!r}"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}",
                              parse_constant=reject_constant)
            if not isinstance(body, dict):
                raise ServiceError("the body must be a JSON object")
        except (ValueError, RecursionError, ServiceError) as exc:
            self.server.refuse("bad body")
            self._reply(400, {"error": f"bad request body: {exc}"})
            return
        try:
            self._reply(200, self.server.backend.api_put_service(name, body))
        except ServiceError as exc:
            self.server.refuse("bad service")
            status = 409 if "path" in str(exc) else 400
            self._reply(status, {"error": str(exc)})

    def do_DELETE(self) -> None:
        name = self._service_name()
        if name is None:
            self._reply(404, {"error": "DELETE /v1/services/<name>"})
            return
        try:
            self._reply(200, self.server.backend.api_delete_service(name))
        except KeyError:
            self._reply(404, {"error": f"no service {name}"})


class ApiServer:
    def __init__(self, path: str, backend: Backend,
                 max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)  # a socket file left by a killed controller
        self.server = _UnixHttpServer(path, max_connections, request_timeout)
        os.chmod(path, 0o600)  # the run's owner only (the state directory guards the moment)
        self.server.backend = backend
        self.thread = threading.Thread(target=self.server.serve_forever, name="cpn-api",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def refused(self) -> dict[str, int]:
        with self.server.refused_lock:
            return dict(self.server.refused)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"SDN API {status}: {message}")
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class ApiClient:
    """Blocking client; one connection per call keeps it safe to share between threads."""

    def __init__(self, path: str | None = None, timeout: float = 30.0) -> None:
        path = path or os.environ.get(SOCKET_ENV)
        if not path:
            raise ApiError(0, f"no API socket: pass one or set ${SOCKET_ENV} (the testbed sets "
                              "it for exec commands when services.sdn.app is cpn)")
        self.path, self.timeout = path, timeout

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            payload = json.loads(resp.read() or b"null")
        finally:
            conn.close()
        if resp.status >= 300:
            raise ApiError(resp.status, (payload or {}).get("error", "?"))
        return payload

    def topology(self) -> dict[str, Any]:
        return self._call("GET", "/v1/topology")

    def services(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/services")

    def put_service(self, name: str, **spec: Any) -> dict[str, Any]:
        return self._call("PUT", f"/v1/services/{name}", spec)

    def delete_service(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/services/{name}")
