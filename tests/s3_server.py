"""A real S3-protocol server for tests: moto in server mode, started as its own process, and a
small faulty proxy in front of it that can answer a timeout or a 5xx, once or always.

The proxy forwards every request byte for byte (the SigV4 signature covers the Host header, which
the client computed for the proxy's address, and moto checks nothing else of it), and keeps a log
of the requests it saw, so that a test can say which S3 calls were made (a multipart upload's
parts, a ranged download).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer", "expect"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` on a free port of 127.0.0.1, stopped with ``stop()``."""

    def __init__(self, *, log_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.log = log_dir / f"moto-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> MotoServer:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited at start: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto did not listen within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Nothing of a test's server is worth a graceful shutdown.
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Fault:
    method: str  # the HTTP method it applies to ("PUT": uploads, "GET": downloads, "HEAD", "DELETE")
    mode: str  # "timeout" (never answers in time) or "error" (HTTP 500) or "unavailable" (503 SlowDown)
    times: int | None  # None: always


@dataclass
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)


class FaultyProxy:
    """An HTTP proxy in front of moto that fails chosen requests on purpose."""

    def __init__(self, upstream: str, *, hang_seconds: float = 10) -> None:
        self.upstream = urlsplit(upstream)
        self.hang_seconds = hang_seconds
        self.faults: list[Fault] = []
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _handle(self) -> None:
                body = self._read_body()
                target = urlsplit(self.path)
                proxy.requests.append(
                    SeenRequest(
                        self.command, target.path, target.query, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
                fault = proxy._take_fault(self.command)
                if fault is not None and fault.mode == "timeout":
                    proxy._release.wait(proxy.hang_seconds)
                    self.close_connection = True
                    return
                if fault is not None:
                    status, code = (500, "InternalError") if fault.mode == "error" else (503, "SlowDown")
                    payload = (
                        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>Injected by the test proxy.</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                self._forward(body)

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    headers["Content-Length"] = str(len(body))
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                # A HEAD answer announces the object's length without a body.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Polled every 50 ms: stop() (shutdown) waits for the loop's next poll, 0.5 s by default.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultyProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, mode: str, *, times: int | None = 1) -> None:
        with self._lock:
            self.faults.append(Fault(method=method, mode=mode, times=times))

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def seen(self, method: str) -> list[SeenRequest]:
        return [request for request in self.requests if request.method == method]
