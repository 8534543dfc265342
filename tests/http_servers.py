"""Small real HTTP servers for tests of outbound requests: a source that serves files, redirects or
errors by path, and records every connection it accepted (so a test can prove that nothing
connected to it)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Send the body in pieces with a pause between them (a slow server); None: all at once.
    drip_seconds: float | None = None
    # Send no Content-Length and close the connection after the body (its end is the close).
    no_length: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: int, owner: RecordingServer) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        route = owner.routes.get(self.path.split("?", 1)[0]) or Route(404, body=b"not here")
        if callable(route):
            route = route()
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if route.drip_seconds is None:
                self.wfile.write(route.body)
            else:
                for index in range(0, len(route.body), 1024):
                    self.wfile.write(route.body[index : index + 1024])
                    self.wfile.flush()
                    time.sleep(route.drip_seconds)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_HEAD = do_PUT = _answer  # noqa: N815


class RecordingServer:
    """An HTTP server on ``host`` (any free port) answering ``routes`` by path."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        routes: dict[str, Route | Callable[[], Route]] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.routes: dict[str, Route | Callable[[], Route]] = dict(routes or {})
        self.requests: list[Seen] = []
        self.connections = 0
        self._server = _Server((host, 0), family, self)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/", *, host: str | None = None) -> str:
        name = host or self.host
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        return f"{self.scheme}://{name}:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serving(
    host: str = "127.0.0.1", routes: dict[str, Route | Callable[[], Route]] | None = None
) -> Iterator[RecordingServer]:
    server = RecordingServer(host, routes)
    try:
        yield server
    finally:
        server.close()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
