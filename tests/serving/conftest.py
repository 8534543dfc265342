"""The Procfile's web command, run for real (gunicorn, uvicorn workers, production settings) on the
test database, for tests about HTTP itself: slow clients, cut-off uploads, byte ranges.

One server for the whole run (starting one costs seconds): it serves a storage root of its own, which
tests point the test process's settings at (``served_storage``) when they store files it must read.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def procfile_command(process: str) -> list[str]:
    """The Procfile's command for ``process``, with the virtualenv's executables."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            words = shlex.split(command)
            return [str(Path(sys.executable).with_name(words[0])), *words[1:]]
    raise LookupError(f"The Procfile has no {process} process.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    database = settings.DATABASES["default"]
    user, host, port = database.get("USER") or "postgres", database.get("HOST") or "127.0.0.1", database.get("PORT")
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port or 5432}/{database['NAME']}"


@dataclass
class WebServer:
    process: subprocess.Popen
    port: int
    storage_root: Path
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upload_temp_dir(self) -> Path:
        return self.storage_root / "temp" / "uploads"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory, django_db_setup, django_db_blocker) -> Iterator[WebServer]:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("The served tests share the test database with a server process: PostgreSQL only.")
    work = tmp_path_factory.mktemp("web")
    storage_root = work / "storage"
    (storage_root / "temp" / "uploads").mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(),
        "STORAGE_ROOT": str(storage_root),
        "TEMP_ROOT": str(storage_root / "temp"),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        # A short worker timeout: an upload that takes longer must still succeed (it costs a
        # coroutine, not a worker that gunicorn would kill), without the test waiting 30 s.
        "WEB_TIMEOUT": "5",
        "THROTTLE_ANON_BURST": "10000/minute",
        "THROTTLE_ANON_SUSTAINED": "100000/day",
        "THROTTLE_UPLOADS": "1000/hour",
        "LOG_LEVEL": "WARNING",
    }
    log = work / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            procfile_command("web"), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = WebServer(process=process, port=port, storage_root=storage_root, log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, server.output()
            assert time.monotonic() < deadline, f"The web server did not answer within 60 s:\n{server.output()}"
            try:
                with urllib.request.urlopen(f"{server.base}/api/v1/health/", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def served_storage(settings, web_server: WebServer) -> Path:
    """The test process stores files where the server reads them."""
    settings.STORAGE_ROOT = web_server.storage_root
    settings.TEMP_ROOT = web_server.storage_root / "temp"
    return web_server.storage_root


@pytest.fixture
def api_session(transactional_db) -> str:
    """A stored session's key (committed, so the server sees it)."""
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session.create()
    assert session.session_key is not None
    return session.session_key


@pytest.fixture(autouse=True)
def _clean_redis(redis_connection) -> None:
    """The server counts rate limits and queues jobs in the test run's Redis."""
