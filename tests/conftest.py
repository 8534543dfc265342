"""Fixtures every test can use: isolated storage, a clean Redis, a real RQ worker, real media and
operations in the state a test needs.

Redis is emptied only for tests that use it: those that ask for ``redis_connection``, directly or
through a fixture that reaches Redis (``run_worker``, ``make_operation``, ``client``: every API
request counts towards the rate limits kept in Redis), and every test of the directories whose
tests all reach it (their conftest makes it autouse). A pure test (formats, sniffing, parameters,
FFmpeg) never touches Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import django_rq
import pytest
from django.conf import settings as django_settings
from redis import Redis
from rq import SimpleWorker

from tests.factories import OperationFactory
from tests.media import MediaFactory


def queue_names() -> list[str]:
    return [worker["queue"] for worker in django_settings.WORKER_CONFIG.values()]


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    """Generates small real media files (see tests/media.py), once per run."""
    return MediaFactory(tmp_path_factory.mktemp("media"))


@pytest.fixture(autouse=True)
def storage_root(settings, tmp_path: Path) -> Path:
    """Every test stores files in a directory of its own."""
    root = tmp_path / "storage"
    settings.STORAGE_ROOT = root
    settings.TEMP_ROOT = root / "temp"
    settings.FILE_UPLOAD_TEMP_DIR = str(root / "temp" / "uploads")
    for directory in (root / "uploads", root / "outputs", root / "temp" / "jobs", root / "temp" / "uploads"):
        directory.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def live_server(django_db_setup, live_server):
    """pytest-django's live server (one per run), started once the test database exists: only then
    does it hand SQLite's in-memory connection to its threads (it looks for one as it starts);
    otherwise each request thread opens a connection of its own, and tables written by one are
    locked for the others. Whether it did depended on which test happened to start it."""
    return live_server


@pytest.fixture
def redis_connection() -> Redis:
    """The test run's Redis database, emptied before the test (queues, jobs, throttle counters).

    REDIS_URL must name a database that belongs to the tests: `.ci/run` uses /9 and `make test`
    without REDIS_URL starts a private server.
    """
    connection = django_rq.get_connection(queue_names()[0])
    connection.flushdb()
    return connection


@pytest.fixture
def run_worker(redis_connection: Redis) -> Callable[..., SimpleWorker]:
    """Run a real RQ worker in burst mode over the given queues (all by default) until they are empty.

    SimpleWorker executes jobs in this process, so they see the test's database.
    """

    def run(*names: str, max_jobs: int | None = None) -> SimpleWorker:
        queues = [django_rq.get_queue(name) for name in (names or queue_names())]
        worker = SimpleWorker(queues, connection=redis_connection)
        worker.work(burst=True, max_jobs=max_jobs, logging_level="WARNING")
        return worker

    return run


@pytest.fixture
def client(client, redis_connection):
    """pytest-django's test client, on a clean Redis: every request counts towards rate limits."""
    return client


@pytest.fixture
def make_operation(media, storage_root, tmp_path, redis_connection) -> OperationFactory:
    """``make_operation(session_key, status=..., ...)``: an operation built through the services,
    its files really stored (see ``tests/factories.py``). Queued ones are on a clean Redis."""
    return OperationFactory(media=media, scratch=tmp_path / "factory")
