"""A web process killed mid-upload, and what the next start of the web tier removes.

A request's body is spooled into an unnamed file (``test_slow_clients``: a cut-off upload leaves
nothing), but while the request runs Django keeps a large upload's file in a named temp file: a
process killed then leaves it behind. A web-only machine runs no sweeper, so each web worker
removes such files as it starts (``cleanup.cleanup_upload_temp_at_start``): the ones no process
holds open any more, once a minute old.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.processors.processes import wait_until
from tests.serving.conftest import ROOT, database_url, free_port, procfile_command
from tests.serving.test_slow_clients import multipart, request_head

pytestmark = pytest.mark.slow


def start_web(work: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(),
        "STORAGE_ROOT": str(work / "storage"),
        "TEMP_ROOT": str(work / "storage" / "temp"),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "THROTTLE_UPLOADS": "1000/hour",
        "LOG_LEVEL": "INFO",
    }
    with (work / "server.log").open("ab") as log:
        process = subprocess.Popen(
            procfile_command("web"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def healthy() -> bool:
        assert process.poll() is None, (work / "server.log").read_text(errors="replace")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health/", timeout=2):
                return True
        except OSError:
            return False

    assert wait_until(healthy, timeout=60, interval=0.2), (work / "server.log").read_text(errors="replace")
    return process


def kill_web(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def web_workers_of(master: subprocess.Popen) -> list[int]:
    return [
        int(pid)
        for pid in subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout.split()
    ]


def web_worker_of(master: subprocess.Popen) -> int:
    children = web_workers_of(master)
    assert len(children) == 1, children
    return children[0]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see which files are held open")
def test_a_web_worker_killed_mid_upload_leaves_a_temp_file_that_the_next_start_removes(tmp_path, api_session, media):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("The served tests share the test database with a server process: PostgreSQL only.")
    upload_temp = tmp_path / "storage" / "temp" / "uploads"
    port = free_port()
    web = start_web(tmp_path, port)
    try:
        # Well past FILE_UPLOAD_MAX_MEMORY_SIZE: Django writes the file part to a named temp file.
        content_type, body = multipart(
            {"operation": "video_compress"}, "big.mp4", media.video().read_bytes() + b"\0" * 60_000_000
        )
        worker = web_worker_of(web)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "X-Session-Key": api_session}
            sock.sendall(request_head("POST", "/api/v1/operations/", headers) + body)
            left = wait_until(lambda: list(upload_temp.iterdir()), timeout=30, interval=0.002)
            os.kill(worker, signal.SIGKILL)  # mid-request: the named temp file stays
        assert left, "the upload never reached a named temp file"
        leftover = left[0]
        assert leftover.exists()

        # Held open by a live process (a request of another server on this machine): never taken.
        held = upload_temp / "tmp-held.upload"
        held.write_bytes(b"x")
        holder = subprocess.Popen(["sleep", "120"], stdin=held.open("rb"))
        # Not held, but too fresh to be judged.
        fresh = upload_temp / "tmp-fresh.upload"
        fresh.write_bytes(b"x")
        # gunicorn replaced the killed worker, which cleaned up as it started: the leftover is too
        # fresh yet (a minute), so it stays until a later start.
        # Between the kill and the new fork the master has no worker at all: wait for the new one.
        assert wait_until(lambda: len(web_workers_of(web)) == 1 and web_workers_of(web) != [worker], timeout=30)
        assert leftover.exists()

        # A minute later the web host restarts (killed, then the Procfile's command again).
        an_hour_ago = time.time() - 3600
        for path in (leftover, held):
            os.utime(path, (an_hour_ago, an_hour_ago))
        kill_web(web)
        web = start_web(tmp_path, port)

        assert not leftover.exists()
        assert held.exists() and fresh.exists()
        assert sorted(path.name for path in upload_temp.iterdir()) == ["tmp-fresh.upload", "tmp-held.upload"]
        holder.kill()
        holder.wait()
    finally:
        kill_web(web)
