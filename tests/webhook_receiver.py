"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that verifies every delivery with
the Standard Webhooks reference library (``standardwebhooks``), records it, and answers as the test
scripts it (a status per request, a delay, a redirect).

``Receiver.url`` is its address; ``Receiver.deliveries`` what arrived (verified or not); the
``answers`` list is consumed one per request, then ``default`` answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str = ""
    received_at: float = field(default_factory=time.monotonic)

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Answer:
    status: int = 200
    delay: float = 0.0
    location: str | None = None


class Receiver:
    def __init__(self, secret: str = SECRET) -> None:
        self.verifier = Webhook(secret)
        self.deliveries: list[Delivery] = []
        self.answers: list[Answer] = []
        self.default = Answer()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    receiver.verifier.verify(body, headers)
                    verified, error = True, ""
                except WebhookVerificationError as e:
                    verified, error = False, str(e)
                with receiver.arrived:
                    answer = receiver.answers.pop(0) if receiver.answers else receiver.default
                    receiver.deliveries.append(Delivery(self.path, headers, body, verified, error))
                    receiver.arrived.notify_all()
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                if answer.location:
                    self.send_header("Location", answer.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        # Polled every 50 ms: close() (shutdown) waits for the loop's next poll, 0.5 s by default.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, count: int, *, timeout: float = 30) -> list[Delivery]:
        """Block until ``count`` deliveries have arrived; returns them."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout):
                raise AssertionError(f"{len(self.deliveries)} deliveries arrived, expected {count}")
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def receiving(secret: str = SECRET) -> Iterator[Receiver]:
    receiver = Receiver(secret)
    try:
        yield receiver
    finally:
        receiver.close()
