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
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from controllers.cpn.sdn.plan import ServiceError
from testbed.net.sdn import SOCKET_ENV


class Backend(Protocol):
    def api_topology(self) -> dict[str, Any]: ...
    def api_services(self) -> list[dict[str, Any]]: ...
    def api_put_service(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def api_delete_service(self, name: str) -> dict[str, Any]: ...


class _UnixHttpServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    backend: Backend


class _Handler(BaseHTTPRequestHandler):
    server: _UnixHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Unix-socket peers have no address for the default log line; the app logs events."""

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
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ServiceError("the body must be a JSON object")
        except (ValueError, ServiceError) as exc:
            self._reply(400, {"error": f"bad request body: {exc}"})
            return
        try:
            self._reply(200, self.server.backend.api_put_service(name, body))
        except ServiceError as exc:
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
    def __init__(self, path: str, backend: Backend) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)  # a socket file left by a killed controller
        self.server = _UnixHttpServer(path, _Handler)
        self.server.backend = backend
        self.thread = threading.Thread(target=self.server.serve_forever, name="cpn-api",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

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
