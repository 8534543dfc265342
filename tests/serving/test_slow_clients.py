"""Slow and broken clients against the Procfile's web server (one worker process): they cost a
coroutine each, never the worker, and a body cut off midway leaves nothing behind."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from apps.operations.models import Operation
from tests.serving.conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Far below the 31 s a single slow client used to stall /health/ for, far above a normal answer.
PROMPT_SECONDS = 2.0


def multipart(fields: dict[str, str], file_name: str, content: bytes) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body


def health_seconds(server: WebServer) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{server.base}/api/v1/health/", timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def test_slow_headers_and_slow_bodies_leave_health_answering_and_a_slow_upload_succeeds(
    web_server: WebServer, api_session: str, media
):
    stop = threading.Event()
    opened: list[socket.socket] = []

    def slow_headers() -> None:
        sock = socket.create_connection(("127.0.0.1", web_server.port))
        opened.append(sock)
        sock.sendall(b"GET /api/v1/session/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while not stop.wait(0.5):
            sock.sendall(b"X-Slow: 1\r\n")

    def slow_body() -> None:
        sock = socket.create_connection(("127.0.0.1", web_server.port))
        opened.append(sock)
        head = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "1000000"}
        sock.sendall(request_head("POST", "/api/v1/operations/", head))
        while not stop.wait(0.5):
            sock.sendall(b"x")

    upload_result: dict[str, object] = {}
    content_type, body = multipart(
        {"operation": "image_resize", "parameters": json.dumps({"width": 16})}, "slow.png", media.png().read_bytes()
    )

    def slow_upload() -> None:
        # The whole request over ~8 s: longer than the server's WEB_TIMEOUT (5 s here; 30 s by
        # default), which bounds how long a worker may block, not how long a client may take.
        with socket.create_connection(("127.0.0.1", web_server.port), timeout=60) as sock:
            headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "X-Session-Key": api_session}
            sock.sendall(request_head("POST", "/api/v1/operations/", headers))
            pieces = 16
            step = len(body) // pieces + 1
            for start in range(0, len(body), step):
                time.sleep(0.5)
                sock.sendall(body[start : start + step])
            upload_result["response"] = read_response(sock)

    clients = [threading.Thread(target=slow_headers) for _ in range(4)]
    clients += [threading.Thread(target=slow_body) for _ in range(4)]
    uploader = threading.Thread(target=slow_upload)
    try:
        for thread in [*clients, uploader]:
            thread.start()
        time.sleep(1)
        timings = []
        while uploader.is_alive():
            timings.append(health_seconds(web_server))
            time.sleep(0.5)
        uploader.join()
    finally:
        stop.set()
        for thread in clients:
            thread.join()
        for sock in opened:
            sock.close()

    assert len(timings) >= 8
    assert max(timings) < PROMPT_SECONDS, timings
    status, answer = upload_result["response"]  # type: ignore[misc]
    assert status == 201, answer
    assert json.loads(answer)["data"]["status"] in {"queued", "pending"}
    assert Operation.objects.filter(session_key=api_session).count() == 1


def test_an_upload_cut_off_midway_leaves_no_file_and_no_row(web_server: WebServer, api_session: str, media):
    content_type, body = multipart(
        {"operation": "image_resize"}, "cut.png", media.png().read_bytes() + b"\0" * 3_000_000
    )
    with socket.create_connection(("127.0.0.1", web_server.port)) as sock:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "X-Session-Key": api_session}
        sock.sendall(request_head("POST", "/api/v1/operations/", headers))
        sock.sendall(body[: len(body) * 3 // 4])  # past FILE_UPLOAD_MAX_MEMORY_SIZE: spooled to disk
        time.sleep(0.5)
        spooled_while_receiving = list(web_server.upload_temp_dir.iterdir())
    time.sleep(1)  # the server notices the disconnect

    assert spooled_while_receiving == []  # unnamed: nothing to leave behind even if the process dies
    assert list(web_server.upload_temp_dir.rglob("*")) == []
    assert Operation.objects.count() == 0
    assert health_seconds(web_server) < PROMPT_SECONDS


def test_a_body_larger_than_any_upload_is_refused_before_it_is_read(web_server: WebServer):
    with socket.create_connection(("127.0.0.1", web_server.port), timeout=10) as sock:
        headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * 1024**3)}
        sock.sendall(request_head("POST", "/api/v1/operations/", headers))
        status, answer = read_response(sock)

    assert status == 413
    assert json.loads(answer)["error"]["code"] == "file_too_large"
    assert list(Path(web_server.upload_temp_dir).rglob("*")) == []
