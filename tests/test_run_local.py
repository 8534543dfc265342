"""`make run` on a bare machine: no ffmpeg or redis-server on PATH, no DATABASE_URL, Redis not answering,
no SECRET_KEY; it serves the web tier as the Procfile does (gunicorn, DEBUG off)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def get_json(url: str) -> tuple[int, dict]:
    try:
        # The first request waits for gunicorn's workers to boot (the master listens before they do).
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.mark.slow
def test_run_serves_health_on_a_bare_machine_and_stops_everything(tmp_path):
    web_port, redis_port = free_port(), free_port()
    unset = {"DATABASE_URL", "FFMPEG_BINARY", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "DJANGO_DEBUG"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        PATH=str(Path(sys.executable).parent),  # the virtualenv only: no system ffmpeg or redis-server
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        STORAGE_ROOT=str(tmp_path / "storage"),
        PORT=str(web_port),
        HOST="127.0.0.1",
    )
    process = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not listening(web_port):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the web server did not start within 90 s"
            time.sleep(0.25)

        status, body = get_json(f"http://127.0.0.1:{web_port}/api/v1/health/")

        assert status == 200, body
        assert body["success"] is True
        assert body["data"]["status"] == "healthy"
        assert {"database", "redis", "storage"} <= set(body["data"]["checks"])
        assert listening(redis_port), "a private redis-server should serve the missing REDIS_URL"
        assert (tmp_path / "storage" / "konvrt.sqlite3").exists()
        # The Procfile's server, DEBUG off: no debug page listing every URL, and a key of its own.
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/v1/health/", timeout=5) as response:
            assert response.headers["server"] == "uvicorn"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{web_port}/no-such-page/", timeout=5)
        assert missing.value.code == 404
        assert b"URLconf" not in missing.value.read()
        key_file = tmp_path / "storage" / ".secret_key"
        assert len(key_file.read_text().strip()) >= 50
        assert key_file.stat().st_mode & 0o077 == 0
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)

    assert process.returncode == 0, output
    assert "Konvrt is running at http://127.0.0.1:" in output
    assert not listening(web_port)
    assert not listening(redis_port)
