"""`make test` without REDIS_URL gets a redis-server of its own: the suite flushes its database, so it
must never be a developer's Redis that happens to answer at the default URL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "redis://localhost:6379/0"


def run_with_redis(*options: str, key: str) -> str:
    """Runs a child under scripts/embedded_redis.py without REDIS_URL; the child writes ``key`` into
    the Redis it was given and prints its URL."""
    child = (
        "import os, redis; url = os.environ['REDIS_URL']; "
        f"redis.Redis.from_url(url).set({key!r}, 'x', ex=60); print(url)"
    )
    environment = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    finished = subprocess.run(
        [sys.executable, "scripts/embedded_redis.py", *options, "--", sys.executable, "-c", child],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return finished.stdout.strip()


def test_private_never_uses_the_redis_already_answering_at_the_default_url():
    developers_redis = redis.Redis.from_url(DEFAULT_URL, socket_connect_timeout=1)
    key = f"konvrt-test-probe-{uuid.uuid4()}"

    url = run_with_redis("--private", key=key)

    assert url.startswith("redis://127.0.0.1:")
    try:
        assert not developers_redis.exists(key)
    except redis.ConnectionError:
        pass  # nothing answers at the default URL here: there is nothing to protect


def test_without_private_an_answering_redis_is_used_as_make_run_does():
    developers_redis = redis.Redis.from_url(DEFAULT_URL, socket_connect_timeout=1)
    try:
        developers_redis.ping()
    except redis.ConnectionError:
        pytest.skip("No Redis answers at the default URL on this machine.")
    key = f"konvrt-test-probe-{uuid.uuid4()}"

    try:
        assert run_with_redis(key=key) == DEFAULT_URL
        assert developers_redis.exists(key)
    finally:
        developers_redis.delete(key)
