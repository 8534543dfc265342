"""GET /operations/{id}/events/: the Server-Sent Events stream, served by a real ASGI server (uvicorn,
in a thread of the test) and fed by the lifecycle's publishing on Redis pub/sub."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from django.core.asgi import get_asgi_application
from django.db import connection, connections

from apps.api import events as api_events
from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.services import lifecycle
from scripts.embedded_redis import free_port
from tests.api.conftest import session_key_of

S = OperationStatus
# Committed rows: the server's threads read the database through connections of their own.
pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class LiveServer:
    host: str
    port: int

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = self.connection()
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, body

    def session(self) -> str:
        return self.get("/api/v1/session/")[1]["x-session-key"]


@pytest.fixture
def asgi_server(redis_connection) -> Iterator[LiveServer]:
    # Under ASGI each request's sync code runs in a thread of its own; a persistent connection left
    # there would outlive the request (and keep the test database open), so each closes at its end.
    database = connections.settings["default"]
    kept_for = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(get_asgi_application(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield LiveServer("127.0.0.1", port)
    server.should_exit = True
    thread.join(timeout=10)
    database["CONN_MAX_AGE"] = kept_for


@dataclass
class Stream:
    """An open event stream read by a thread: its events and comments as they arrive."""

    status: int
    headers: dict[str, str]
    events: list[tuple[str, dict]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 15) -> list[dict]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, timeout=timeout), self.events
            return [data for _, data in self.events]


def open_stream(server: LiveServer, operation_id, session_key: str) -> Stream:
    connection = server.connection()
    connection.request(
        "GET",
        f"/api/v1/operations/{operation_id}/events/",
        headers={"X-Session-Key": session_key, "Accept": "text/event-stream"},
    )
    response = connection.getresponse()
    stream = Stream(response.status, {name.lower(): value for name, value in response.getheaders()})

    def read() -> None:
        name, data = "message", ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            with stream.changed:
                if line.startswith(":"):
                    stream.comments.append(line)
                elif line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                elif line == "" and data:
                    stream.events.append((name, json.loads(data)))
                    name, data = "message", ""
                stream.changed.notify_all()
        stream.ended.set()
        connection.close()

    threading.Thread(target=read, daemon=True).start()
    return stream


def test_a_stream_follows_an_operation_to_completion_and_ends(asgi_server, make_operation):
    session = asgi_server.session()
    operation = make_operation(session, operation="image_convert", status=S.QUEUED)

    stream = open_stream(asgi_server, operation.id, session)

    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    (first,) = stream.wait_for(1)
    assert first["id"] == str(operation.id)
    assert first["status"] == "queued"
    assert set(first) == {
        "id",
        "status",
        "progress",
        "eta_seconds",
        "error_message",
        "phase",
        "queue_position",
        "waiting_reason",
    }

    claimed = lifecycle.operation_claim(operation_id=operation.id)
    assert claimed is not None
    stream.wait_for(2)
    lifecycle.operation_record_progress(
        operation_id=operation.id, attempt=claimed.attempt, progress=40, phase=ProcessingPhase.PROCESSING
    )
    stream.wait_for(3)
    assert lifecycle.operation_mark_completed(
        operation_id=operation.id,
        attempt=claimed.attempt,
        output={"file_path": f"outputs/{operation.id}/o.jpg", "file_name": "o.jpg", "file_size": 1},
    )

    updates = stream.wait_for(4)
    assert stream.ended.wait(10), "the stream did not end after the terminal status"
    assert [(update["status"], update["progress"], update["phase"]) for update in updates] == [
        ("queued", 0, None),
        ("processing", 0, "fetching"),
        ("processing", 40, "processing"),
        ("completed", 100, None),
    ]
    assert all(name == "status" for name, _ in stream.events)


def test_a_heartbeat_alone_sends_no_event_and_a_comment_keeps_the_stream_open(asgi_server, make_operation, monkeypatch):
    monkeypatch.setattr(api_events, "KEEPALIVE_SECONDS", 0.3)
    session = asgi_server.session()
    operation = make_operation(session, operation="image_convert", status=S.PROCESSING, progress=10)

    stream = open_stream(asgi_server, operation.id, session)
    stream.wait_for(1)
    lifecycle.operation_record_progress(operation_id=operation.id, attempt=operation.attempt)
    time.sleep(1)

    assert len(stream.events) == 1
    assert ": keep-alive" in stream.comments
    lifecycle.operation_cancel(operation=operation)
    assert stream.ended.wait(10)
    assert stream.events[-1][1]["status"] == "cancelled"


def test_a_finished_operation_sends_its_status_once_and_ends(asgi_server, make_operation):
    session = asgi_server.session()
    operation = make_operation(session, operation="image_convert", status=S.FAILED)

    stream = open_stream(asgi_server, operation.id, session)

    assert stream.ended.wait(10)
    assert [data["status"] for _, data in stream.events] == ["failed"]


def test_another_sessions_operation_is_a_404_envelope_not_a_stream(asgi_server, make_operation):
    operation = make_operation(asgi_server.session(), operation="image_convert", status=S.QUEUED)

    status, headers, body = asgi_server.get(
        f"/api/v1/operations/{operation.id}/events/",
        headers={"X-Session-Key": asgi_server.session(), "Accept": "text/event-stream"},
    )

    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "not_found"


def test_a_stream_counts_once_in_the_status_checks_limit(asgi_server, make_operation, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "status_checks": "2/minute"},
    }
    session = asgi_server.session()
    operation = make_operation(session, operation="image_convert", status=S.PROCESSING, progress=10)
    stream = open_stream(asgi_server, operation.id, session)
    stream.wait_for(1)
    for progress in (20, 30, 40):
        lifecycle.operation_record_progress(operation_id=operation.id, attempt=operation.attempt, progress=progress)
        stream.wait_for(progress // 10)

    first, _, _ = asgi_server.get(f"/api/v1/operations/{operation.id}/status/", headers={"X-Session-Key": session})
    second, headers, body = asgi_server.get(
        f"/api/v1/operations/{operation.id}/status/", headers={"X-Session-Key": session}
    )

    assert (first, second) == (200, 429)
    assert json.loads(body)["error"]["code"] == "throttled"
    lifecycle.operation_cancel(operation=operation)
    assert stream.ended.wait(10)


def test_open_streams_hold_no_database_connection(asgi_server, make_operation):
    if connection.vendor != "postgresql":
        pytest.skip("Counts the server's connections in PostgreSQL's pg_stat_activity; SQLite has no server.")
    session = asgi_server.session()
    operation = make_operation(session, operation="image_convert", status=S.QUEUED)

    def connections_to_the_database() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    before = connections_to_the_database()
    streams = [open_stream(asgi_server, operation.id, session) for _ in range(5)]
    for stream in streams:
        stream.wait_for(1)
    time.sleep(0.3)

    assert connections_to_the_database() <= before
    lifecycle.operation_cancel(operation=operation)
    assert all(stream.ended.wait(10) for stream in streams)


def test_under_a_wsgi_server_the_stream_sends_the_status_once_and_ends(client, make_operation):
    # Django's test client speaks WSGI, like the development server: no thread is held per stream.
    operation = make_operation(session_key_of(client), operation="image_convert", status=S.PROCESSING, progress=30)

    response = client.get(f"/api/v1/operations/{operation.id}/events/", headers={"Accept": "text/event-stream"})

    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("retry: 3000\n\nevent: status\ndata: ")
    assert json.loads(body.split("data: ", 1)[1])["progress"] == 30
