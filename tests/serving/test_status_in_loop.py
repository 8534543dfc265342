"""The status poll served in the event loop (apps/api/status_poll.py, config/asgi.py): for every kind
of poll it answers exactly what the usual path (a thread per request) answers (status, headers,
body), it starts no thread and never calls the synchronous reads, and it keeps the rate limit. A
plain poll's 200 is made without Django's chain (apps/api/status_answer.py): the same comparisons
cover it, and the chain is shown to be skipped for those polls only.

Driven through the web tier's ASGI application in this process, once with
WEB_STATUS_DB_CONNECTIONS=2 (served in the loop) and once with 0 (the usual path), against the
test run's PostgreSQL and Redis. The Procfile's server answers polls through the same code: see the
last test."""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.db.models.functions import Now

from apps.core.async_database import close_pools
from apps.core.redis import close_async_clients
from apps.operations import selectors
from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from config.asgi import KonvrtASGIHandler
from tests.factories import backdate

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "postgresql" not in django_settings.DATABASES["default"]["ENGINE"],
        reason="the poll is served in the loop on PostgreSQL only; elsewhere every poll takes the usual path",
    ),
]
S = OperationStatus
GENEROUS = {"anon_burst": "100000/minute", "anon_sustained": "100000/day", "uploads": "1000/hour"}
ALLOWED_ORIGIN = "http://localhost:3000"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def poll(handler: KonvrtASGIHandler, path: str, headers: dict[str, str], method: str = "GET") -> Answer:
    return run(handler, [(path, headers, method)])[0]


async def answer(handler: KonvrtASGIHandler, path: str, headers: dict[str, str], method: str = "GET") -> Answer:
    """One request through the ASGI application."""
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # no disconnect: the answer is awaited
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"Host": "testserver", **headers}.items()],
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(handler(scope, receive, send), timeout=30)
    start, *bodies = sent
    listed = tuple(sorted((k.decode().lower(), comparable(v.decode())) for k, v in start["headers"] if k != b"date"))
    return Answer(start["status"], listed, b"".join(m.get("body", b"") for m in bodies))


def comparable(value: str) -> str:
    """A header value with what is new in every answer masked: a new CSRF cookie's random token
    and its expiry time."""
    return re.sub(r"(csrftoken=|expires=)[^;]+", r"\1…", value)


def run(handler: KonvrtASGIHandler, requests: list[tuple[str, dict[str, str], str]]) -> list[Answer]:
    """Each request through the ASGI application, one after another, in one event loop."""

    async def all_of() -> list[Answer]:
        try:
            return [await answer(handler, *request) for request in requests]
        finally:
            await close_loop_clients()

    return asyncio.run(all_of())


async def close_loop_clients() -> None:
    await close_pools()
    await close_async_clients()


def rates(settings, status_checks: str) -> None:
    rates = {**GENEROUS, "status_checks": status_checks}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


def backends() -> set[int]:
    """The other connections to the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {pid for (pid,) in cursor.fetchall()}


def end_backends(pids: set[int]) -> None:
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.fixture
def handler(settings) -> Iterator[KonvrtASGIHandler]:
    rates(settings, "100000/minute")
    before = backends()
    yield KonvrtASGIHandler()
    # Each request of the usual path ran in a thread of its own, which opened a connection and is
    # gone (the server borrows from a pool instead): end those, so that the test database can go.
    end_backends(backends() - before)


def in_loop_and_usual(settings, handler, requests) -> tuple[list[Answer], list[Answer]]:
    settings.WEB_STATUS_DB_CONNECTIONS = 2
    in_loop = run(handler, requests)
    settings.WEB_STATUS_DB_CONNECTIONS = 0
    usual = run(handler, requests)
    return in_loop, usual


@pytest.fixture
def operations(make_operation) -> dict[str, Any]:
    """Operations of one session in the states a poll reports differently, one of another session."""
    session = SessionStore()
    session.create()
    key = session.session_key
    processing = make_operation(key, status=S.PROCESSING, progress=90, phase=ProcessingPhase.PROCESSING)
    # Started 100 s ago, heard from just now: an ETA of 11 s that stays 11 for a while.
    backdate(processing, timedelta(seconds=100))
    Operation.objects.filter(id=processing.id).update(heartbeat_at=Now())
    other = SessionStore()
    other.create()
    return {
        "key": key,
        "queued": make_operation(key, status=S.QUEUED),
        "pending": make_operation(key, status=S.PENDING),
        "processing": processing,
        "completed": make_operation(key, operation="image_convert", status=S.COMPLETED),
        "failed": make_operation(key, operation="audio_convert", status=S.FAILED),
        "others": make_operation(other.session_key, status=S.QUEUED),
    }


def path_of(operation_id: Any) -> str:
    return f"/api/v1/operations/{operation_id}/status/"


def test_every_kind_of_poll_is_answered_as_the_usual_path_answers_it(settings, handler, operations):
    key = operations["key"]
    requests = [(path_of(operations[name].id), {"X-Session-Key": key}, "GET") for name in operations if name != "key"]
    queued = path_of(operations["queued"].id)
    requests += [
        (queued, {"Cookie": f"sessionid={key}"}, "GET"),
        (queued, {"X-Session-Key": "nokey"}, "GET"),  # too short to be a key: names no session
        (queued, {"X-Session-Key": "x" * 32}, "GET"),  # a key of no session
        (queued, {}, "GET"),
        (queued, {"X-Session-Key": key, "Cookie": "sessionid=" + "y" * 32}, "GET"),  # the header wins
        (queued, {"X-Session-Key": key, "Origin": ALLOWED_ORIGIN}, "GET"),
        (queued, {"X-Session-Key": key, "Origin": "https://elsewhere.example"}, "GET"),
        (queued, {"X-Session-Key": key, "Accept": "text/html"}, "GET"),
        (queued, {"X-Session-Key": key}, "HEAD"),
        (path_of("not-an-id"), {"X-Session-Key": key}, "GET"),
        (path_of("00000000-0000-0000-0000-000000000000"), {"X-Session-Key": key}, "GET"),
        (queued, {"X-Session-Key": key, "Accept": "application/json"}, "GET"),
        (queued, {"X-Session-Key": key, "Accept": "*/*"}, "GET"),
        (queued, {"X-Session-Key": key, "Accept": "application/json; indent=4"}, "GET"),
        (queued, {"X-Session-Key": key, "Cookie": "csrftoken=" + "c" * 32}, "GET"),
        (queued, {"X-Session-Key": key, "Cookie": "csrftoken=not-a-token!"}, "GET"),  # the chain replaces it
        (queued, {"X-Session-Key": key, "Host": "elsewhere.example"}, "GET"),  # not an allowed host
    ]
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED_ORIGIN]

    in_loop, usual = in_loop_and_usual(settings, handler, requests)

    assert in_loop == usual
    statuses = [answer.status for answer in in_loop]
    assert statuses[:6] == [200, 200, 200, 200, 200, 404]  # the other session's operation is not found
    assert statuses[6:17] == [200, 404, 404, 404, 200, 200, 200, 406, 200, 404, 404]
    assert statuses[17:] == [200, 200, 200, 200, 200, 400]
    assert b'"eta_seconds":11' in in_loop[2].body
    assert b"No video worker is running" in in_loop[0].body
    assert ("access-control-allow-origin", ALLOWED_ORIGIN) in in_loop[11].headers
    assert in_loop[19].body.startswith(b'{\n    "success": true')  # DRF's indent, from the Accept header
    assert "set-cookie" in dict(in_loop[21].headers)


def test_a_plain_polls_200_skips_the_chain_and_every_other_answer_takes_it(settings, handler, operations):
    key, queued = operations["key"], path_of(operations["queued"].id)
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED_ORIGIN]
    plain = [
        (queued, {"X-Session-Key": key}, "GET"),
        (queued, {"Cookie": f"sessionid={key}", "Accept": "*/*"}, "HEAD"),
        (path_of(operations["processing"].id), {"X-Session-Key": key, "Origin": ALLOWED_ORIGIN}, "GET"),
        (path_of(operations["completed"].id), {"X-Session-Key": key, "Accept": "application/json"}, "GET"),
    ]
    others = [
        (queued, {"X-Session-Key": key, "Accept": "text/html"}, "GET"),
        (queued, {"X-Session-Key": key, "Accept": "application/json; indent=2"}, "GET"),
        (queued, {"X-Session-Key": "x" * 32}, "GET"),
        (path_of(operations["others"].id), {"X-Session-Key": key}, "GET"),
        (queued, {"X-Session-Key": key, "Host": "elsewhere.example"}, "GET"),
    ]
    chained: list[str] = []
    chain = handler._chain_in_loop

    def recording_chain(request: Any) -> Any:
        chained.append(request.headers.get("Accept") or request.headers.get("Host"))
        return chain(request)

    handler._chain_in_loop = recording_chain
    settings.WEB_STATUS_DB_CONNECTIONS = 2

    assert [answer.status for answer in run(handler, plain)] == [200] * 4
    assert chained == []
    assert [answer.status for answer in run(handler, others)] == [406, 200, 404, 404, 400]
    assert len(chained) == 5


def test_with_another_middleware_every_poll_takes_the_chain(settings, operations):
    rates(settings, "100000/minute")
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.http.ConditionalGetMiddleware"]
    handler = KonvrtASGIHandler()
    request = (path_of(operations["queued"].id), {"X-Session-Key": operations["key"]}, "GET")

    in_loop, usual = in_loop_and_usual(settings, handler, [request])

    assert not handler._status_answerer.enabled
    assert in_loop == usual
    assert "etag" in dict(in_loop[0].headers)  # what the added middleware does, kept


@pytest.mark.parametrize(
    ("setting", "value", "status", "header"),
    [
        ("SECURE_SSL_REDIRECT", True, 301, "location"),
        ("PREPEND_WWW", True, 301, "location"),
        ("DISALLOWED_USER_AGENTS", [re.compile("^curl/")], 403, None),
        ("SESSION_SAVE_EVERY_REQUEST", True, 200, "set-cookie"),
    ],
)
def test_settings_that_change_a_polls_answer_change_it_in_the_loop_too(
    settings, operations, setting, value, status, header
):
    rates(settings, "100000/minute")
    setattr(settings, setting, value)
    handler = KonvrtASGIHandler()  # SecurityMiddleware reads its settings when the chain is built
    request = (path_of(operations["queued"].id), {"X-Session-Key": operations["key"], "User-Agent": "curl/8"}, "GET")

    in_loop, usual = in_loop_and_usual(settings, handler, [request])

    assert in_loop == usual
    assert in_loop[0].status == status
    assert header is None or header in dict(in_loop[0].headers)


def test_behind_a_proxy_the_security_headers_are_the_usual_ones(settings, handler, operations):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_SSL_REDIRECT = True  # due only for plain HTTP
    headers = {"X-Session-Key": operations["key"], "X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    handler = KonvrtASGIHandler()  # SecurityMiddleware reads its settings when the chain is built

    in_loop, usual = in_loop_and_usual(settings, handler, [(path_of(operations["queued"].id), headers, "GET")])

    assert in_loop == usual
    assert in_loop[0].status == 200
    assert ("strict-transport-security", "max-age=3600; includeSubDomains") in in_loop[0].headers


def test_the_rate_limit_counts_polls_served_in_the_loop(settings, handler, operations, redis_connection):
    rates(settings, "2/minute")
    request = (path_of(operations["queued"].id), {"X-Session-Key": operations["key"]}, "GET")

    settings.WEB_STATUS_DB_CONNECTIONS = 2
    in_loop = run(handler, [request] * 3)
    for log in redis_connection.scan_iter("*throttle:status_checks*"):  # the queue stays as it is
        redis_connection.delete(log)
    settings.WEB_STATUS_DB_CONNECTIONS = 0
    usual = run(handler, [request] * 3)

    assert [answer.status for answer in in_loop] == [200, 200, 429]
    assert in_loop == usual
    assert dict(in_loop[2].headers)["retry-after"] == "60"


def test_an_unreachable_cache_leaves_polls_unlimited_as_on_the_usual_path(settings, handler, operations):
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    request = (path_of(operations["queued"].id), {"X-Session-Key": operations["key"]}, "GET")

    in_loop, usual = in_loop_and_usual(settings, handler, [request])

    assert in_loop == usual
    assert in_loop[0].status == 200


def test_a_connection_the_database_closed_is_replaced_without_failing_a_poll(settings, handler, operations):
    settings.WEB_STATUS_DB_CONNECTIONS = 1
    path, headers = path_of(operations["queued"].id), {"X-Session-Key": operations["key"]}

    async def scenario() -> list[Answer]:
        try:
            before = await asyncio.to_thread(backends)
            first = await answer(handler, path, headers)  # opens the loop's one connection
            opened = await asyncio.to_thread(backends) - before
            await asyncio.to_thread(end_backends, opened)  # as a restart or failover would
            return [first, await answer(handler, path, headers), await answer(handler, path, headers)]
        finally:
            await close_loop_clients()

    assert [answer.status for answer in asyncio.run(scenario())] == [200, 200, 200]


@pytest.fixture
def threads_started(monkeypatch) -> Iterator[list[threading.Thread]]:
    started: list[threading.Thread] = []
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    yield started


def test_a_poll_in_the_loop_starts_no_thread_and_reads_nothing_synchronously(
    settings, handler, operations, threads_started, monkeypatch
):
    request = (path_of(operations["queued"].id), {"X-Session-Key": operations["key"]}, "GET")
    run(handler, [request])  # the first poll compiles the status query (once, in a thread)
    threads_started.clear()

    def refuse(**kwargs: Any) -> None:
        raise AssertionError("the synchronous status read was called")

    settings.WEB_STATUS_DB_CONNECTIONS = 2
    with monkeypatch.context() as patch:
        patch.setattr(selectors, "operation_status", refuse)
        answers = run(handler, [request] * 20)
    assert [answer.status for answer in answers] == [200] * 20
    assert threads_started == []

    settings.WEB_STATUS_DB_CONNECTIONS = 0
    run(handler, [request] * 2)
    assert len(threads_started) >= 2  # the usual path: a thread per request


@pytest.mark.slow
def test_the_procfile_server_answers_polls_from_the_loop(web_server, operations):
    request = urllib.request.Request(
        f"{web_server.base}{path_of(operations['queued'].id)}", headers={"X-Session-Key": operations["key"]}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        assert response.status == 200
        assert response.headers["X-Session-Key"] == operations["key"]
    assert b'"queue_position":1' in body
