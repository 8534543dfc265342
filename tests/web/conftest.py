"""The web page in a real browser: Django's live server, a real RQ worker, headless Chromium.

The worker is an RQ SimpleWorker running in a thread of the test process rather than a
``manage.py rqworker`` subprocess: it then uses the very settings the test runs with (its own
storage root, the test database, including SQLite's in-memory test database, which another
process could not open), and the live server's committed rows are what it reads.
Two adjustments make a worker live outside the main thread: no signal handlers (signals belong
to the main thread) and job timeouts by a timer instead of SIGALRM.

Playwright's sync API keeps an asyncio loop running in the main thread, which makes Django
refuse database access from it as "async unsafe"; the tests touch the database only from plain
synchronous code, so that guard is lifted while the browser is open.

SQLite's in-memory test database is one connection for the live server's threads, the worker and
the test itself (``live_database``): a second connection to it shares its cache, where a table
written by one connection is locked for the other, and that error ("database table is locked")
does not wait. Two things used to open a second one: the session's live server, when no test before
it had set up the database (tests/conftest.py now starts it after), opened one per request thread;
and under Playwright the test's own ``connections`` are another context's, so a fresh connection,
which the worker then used. Which happened depended on the tests run before.

Without Chromium or Playwright the browser tests skip, except under CI (``CI=true``): there a
skip would let the run pass without them, so they fail instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import django_rq
import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from redis import Redis
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

from tests.conftest import queue_names

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A current phone (390 CSS px) and a laptop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class PatchCutter:
    """A Playwright route handler for the tus endpoint: the ``nth`` PATCH never reaches the server
    (the connection is reset), once. Records every request's method and every PATCH's offset."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.methods: list[str] = []
        self.patches: list[int] = []
        self.dropped: list[int] = []

    def __call__(self, route) -> None:
        request = route.request
        self.methods.append(request.method)
        if request.method == "PATCH":
            offset = int(request.headers.get("upload-offset", "-1"))
            self.patches.append(offset)
            if len(self.patches) == self.nth and not self.dropped:
                self.dropped.append(offset)
                route.abort("connectionreset")
                return
        route.continue_()


def browser_unavailable(reason: str, *, module_level: bool = False) -> NoReturn:
    """Skip the browser tests for ``reason``; under CI, fail them instead."""
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} CI runs the browser tests (CI is set): they must not be skipped.", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


@pytest.fixture(autouse=True)
def _clean_redis(redis_connection) -> None:
    """The page calls the API (rate limits in Redis) and its jobs wait on the test run's queues."""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        browser_unavailable(
            f"No Chromium at {CHROMIUM}: install Debian's chromium package (apt-get install chromium), "
            "or set CHROMIUM_BINARY, to run the browser tests."
        )
    try:
        from playwright import sync_api
    except ImportError:
        browser_unavailable("Playwright for Python is not installed.")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def live_database(live_server, transactional_db) -> Iterator[dict[str, BaseDatabaseWrapper]]:
    """The live server's in-memory SQLite connections (none on PostgreSQL), made the test's own."""
    shared = dict(live_server.thread.connections_override)
    previous = {alias: connections[alias] for alias in shared}
    for alias, conn in shared.items():
        connections[alias] = conn
    yield shared
    for alias, conn in previous.items():
        connections[alias] = conn


class BrowserPage:
    """A Playwright page on the live server that refuses (and remembers) any request elsewhere."""

    def __init__(self, browser, base_url: str, viewport: dict[str, int]) -> None:
        self.base_url = base_url
        self.origin = urlsplit(base_url).netloc
        self.context = browser.new_context(base_url=base_url, viewport=viewport, accept_downloads=True)
        self.context.set_default_timeout(20_000)
        self.external_requests: list[str] = []
        self.page_errors: list[str] = []
        self.context.route("**/*", self._only_our_server)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _only_our_server(self, route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.netloc == self.origin:
            route.continue_()
        else:
            self.external_requests.append(url)
            route.abort()

    def open(self, path: str = "/") -> object:
        self.page.goto(path)
        # The page marks itself ready once it has its session and the operation definitions.
        self.page.wait_for_selector("main[data-ready='true']")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def web(browser, live_server, live_database) -> Iterator[BrowserPage]:
    """The page at desktop size; every test also checks it made no request to another host and
    raised no uncaught script error."""
    page = BrowserPage(browser, live_server.url, DESKTOP)
    yield page
    page.close()
    assert page.external_requests == []
    assert page.page_errors == []


@pytest.fixture
def phone(browser, live_server, live_database) -> Iterator[BrowserPage]:
    page = BrowserPage(browser, live_server.url, PHONE)
    yield page
    page.close()
    assert page.external_requests == []
    assert page.page_errors == []


class ThreadWorker(SimpleWorker):
    # SIGALRM, RQ's default way to time a job out, can only be used from the main thread.
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to pytest's main thread; the fixture stops this worker instead."""


@pytest.fixture
def worker(live_database, redis_connection: Redis) -> Iterator[threading.Thread]:
    """A real RQ worker serving every queue for the duration of the test."""
    stop = threading.Event()
    failures: list[BaseException] = []
    # On SQLite the worker uses the connection the live server's threads share (``live_database``),
    # as Django does for those threads. PostgreSQL needs none of this: the worker opens its own.
    shared = live_database
    for conn in shared.values():
        conn.inc_thread_sharing()

    def serve() -> None:
        for alias, conn in shared.items():
            connections[alias] = conn
        queues = [django_rq.get_queue(name) for name in queue_names()]
        try:
            while not stop.is_set():
                # Returns after a second without work, so that stop is noticed promptly.
                ThreadWorker(queues, connection=redis_connection).work(max_idle_time=1, logging_level="WARNING")
        except Exception as e:  # reported in the test's own thread, below
            failures.append(e)
        finally:
            for conn in connections.all():
                if conn.alias not in shared:
                    conn.close()

    thread = threading.Thread(target=serve, name="rq-worker", daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(timeout=60)
    for conn in shared.values():
        conn.dec_thread_sharing()
    assert not thread.is_alive(), "the RQ worker thread did not stop"
    assert failures == []
