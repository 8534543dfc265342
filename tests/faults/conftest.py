"""What the fault tests run on: Konvrt's real processes, and servers they may break.

- ``redis_server``: a redis-server of the test's own on a free port, serving the queues and the
  cache of this process and of every process the test starts; the test may stop it, start it
  again on the same port, or flush it.
- ``fleet``: worker pools (``manage.py rqworker-pool`` with Konvrt's forking worker) and the cron
  scheduler (``manage.py rqcron config/cron.py``), started as the deployment starts them, with
  short heartbeat and recovery figures (``FAST_RECOVERY``), on this test's storage and database:
  the tests are transactional (``FAULT_TEST``), so what they write is committed and the processes
  see it. They need PostgreSQL (an in-memory SQLite test database cannot be shared).
- ``TcpProxy``: a way into PostgreSQL that a test can cut and restore.

Every test records how long its recovery took (``fault_timings``); the figures are printed at the
end of the run, for docs/guarantees.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection
from redis import Redis

from apps.operations.models import File, Operation
from scripts.embedded_redis import free_port, redis_answers, start_redis_server
from tests.processors.conftest import submit  # noqa: F401  (a fixture, registered by importing it)
from tests.processors.processes import descendants, is_alive, worker_environment

ROOT = Path(__file__).resolve().parents[2]
FORKING_WORKER = "apps.operations.worker.KonvrtWorker"
# Figures small enough for a test to watch a recovery happen, in the same ratio as the defaults'
# (10 s heartbeat, 45 s bound, 30 s sweep).
FAST_RECOVERY = {
    "JOB_HEARTBEAT_SECONDS": "1",
    "RECOVERY_STALE_SECONDS": "4",
    "RECOVERY_INTERVAL_SECONDS": "1",
}
# Generous: a bound on a loaded CI machine, not a speed check.
SETTLE_SECONDS = 120
# Every fault test module's pytestmark.
FAULT_TEST = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_a_shared_database() -> None:
    # Each module marks its tests django_db(transaction=True): committed rows, visible to the workers.
    if connection.vendor != "postgresql":
        pytest.skip("Fault tests start worker processes that share the test database: set DATABASE_URL to PostgreSQL.")


# --- timings --------------------------------------------------------------------------------------
_TIMINGS: list[tuple[str, str, float]] = []


@pytest.fixture
def fault_timings(request, record_property) -> Callable[[str, float], None]:
    """Record how long a step of the fault took (printed at the end of the run)."""

    def record(what: str, seconds: float) -> None:
        _TIMINGS.append((request.node.name, what, seconds))
        record_property(what, round(seconds, 2))
        print(f"{request.node.name}: {what} {seconds:.1f} s")

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if _TIMINGS:
        terminalreporter.section("fault recovery timings")
        for test, what, seconds in _TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}  ({test})")


# --- Redis ----------------------------------------------------------------------------------------
class RedisServer:
    """A private redis-server that keeps its port across restarts and keeps nothing on disk, so a
    restart loses every job, as a Redis without persistence does."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = start_redis_server(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        Redis.from_url(self.url).flushall()

    @property
    def running(self) -> bool:
        return redis_answers(self.url, timeout=0.2)


@pytest.fixture
def redis_server(settings) -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    settings.RQ_QUEUES = {name: {**config, "URL": server.url} for name, config in settings.RQ_QUEUES.items()}
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": server.url}}
    yield server
    server.stop()


# --- PostgreSQL behind a switch -------------------------------------------------------------------
class TcpProxy:
    """Forwards a local port to ``target``. ``cut()`` drops every open connection and turns new
    ones away (accepted and closed at once, as a dead server looks) until ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._open.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                destination.sendall(data)
        except OSError:
            pass  # cut, or the other side closed
        finally:
            _close(source)
            _close(destination)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or already shut
    sock.close()


@pytest.fixture
def database_proxy() -> Iterator[TcpProxy]:
    settings_dict = connection.settings_dict
    proxy = TcpProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    yield proxy
    proxy.close()


# --- Konvrt's processes ---------------------------------------------------------------------------
@dataclass
class Fleet:
    storage_root: Path
    redis_url: str
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def environment(self, **overrides: str) -> dict[str, str]:
        return {
            **worker_environment(self.storage_root),
            "REDIS_URL": self.redis_url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **FAST_RECOVERY,
            **overrides,
        }

    def start(self, name: str, *arguments: str, **environment: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env=self.environment(**environment),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def start_pool(self, queue: str, **environment: str) -> subprocess.Popen:
        """One queue's pool, as ``scripts/start_workers.sh`` starts it (one worker)."""
        return self.start(
            queue,
            "rqworker-pool",
            queue,
            "--num-workers",
            "1",
            "--worker-class",
            FORKING_WORKER,
            **environment,
        )

    def start_cron(self) -> subprocess.Popen:
        return self.start("cron", "rqcron", "config/cron.py")

    def log_tails(self, lines: int = 40) -> str:
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            tails.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)

    def stop_all(self) -> None:
        # By pid and ancestry: the work-horses and FFmpeg live in process groups of their own.
        for process in self.processes:
            for pid in [*reversed(descendants(process.pid)), process.pid]:
                if is_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # gone meanwhile
            process.wait(timeout=10)


@pytest.fixture
def fleet(redis_server, storage_root, tmp_path, request) -> Iterator[Fleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(storage_root=storage_root, redis_url=redis_server.url, logs=logs)
    yield fleet
    fleet.stop_all()
    outcome = getattr(request.node, "rep_call", None)
    if outcome is not None and outcome.failed:
        print(fleet.log_tails())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Lets ``fleet`` print the processes' logs when the test itself failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- end states -----------------------------------------------------------------------------------
def wait_for_status(operation: Operation, *statuses: str, timeout: float = SETTLE_SECONDS, fleet: Fleet) -> float:
    """Poll until the operation is in one of ``statuses``; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        operation.refresh_from_db()
        if operation.status in statuses:
            return time.monotonic() - started
        time.sleep(0.2)
    operation.refresh_from_db()
    raise AssertionError(
        f"operation still {operation.status} ({operation.error_message!r}) after {timeout} s\n{fleet.log_tails()}"
    )


def assert_nothing_orphaned(storage_root: Path) -> None:
    """Every stored file belongs to an operation that records it, and no job workspace is left."""
    recorded = set(File.objects.filter(operation__is_deleted=False).values_list("file_path", flat=True))
    for kind in ("uploads", "outputs"):
        for path in (storage_root / kind).rglob("*"):
            if path.is_file():
                assert path.relative_to(storage_root).as_posix() in recorded, f"orphaned: {path}"
    assert list((storage_root / "temp" / "jobs").iterdir()) == []
