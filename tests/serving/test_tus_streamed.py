"""tus upload data against the Procfile's web server: it goes from the connection straight into the
part file (config/asgi.py), so a PATCH cut off midway keeps what arrived, and slow PATCHes hold no
database connection while their bodies trickle in."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from email.message import Message

import pytest

from tests.serving.conftest import WebServer
from tests.serving.test_slow_clients import PROMPT_SECONDS, read_response, request_head

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TUS = {"Tus-Resumable": "1.0.0"}


def tus_request(
    server: WebServer, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, Message]:
    request = urllib.request.Request(f"{server.base}{path}", data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def create_upload(server: WebServer, session: str, length: int) -> str:
    status, headers = tus_request(
        server, "POST", "/api/v1/uploads/", {**TUS, "X-Session-Key": session, "Upload-Length": str(length)}
    )
    assert status == 201, headers
    return "/" + headers["Location"].split("/", 3)[3]


def patch_head(path: str, session: str, offset: int, length: int) -> bytes:
    headers = {
        **TUS,
        "X-Session-Key": session,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    }
    return request_head("PATCH", path, headers)


def offset_of(server: WebServer, path: str, session: str) -> int:
    status, headers = tus_request(server, "HEAD", path, {**TUS, "X-Session-Key": session})
    assert status == 200, headers
    return int(headers["Upload-Offset"])


def test_a_patch_cut_off_midway_keeps_what_arrived_and_the_upload_resumes(web_server: WebServer, api_session: str):
    data = uuid.uuid4().bytes * (3_000_000 // 16)
    path = create_upload(web_server, api_session, len(data))
    with socket.create_connection(("127.0.0.1", web_server.port)) as sock:
        sock.sendall(patch_head(path, api_session, 0, len(data)))
        sock.sendall(data[:1_500_000])
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while offset_of(web_server, path, api_session) < 1_500_000 and time.monotonic() < deadline:
        time.sleep(0.1)

    offset = offset_of(web_server, path, api_session)
    assert offset == 1_500_000
    with socket.create_connection(("127.0.0.1", web_server.port), timeout=30) as sock:
        sock.sendall(patch_head(path, api_session, offset, len(data) - offset) + data[offset:])
        status, _ = read_response(sock)
    assert status == 204
    upload_id = uuid.UUID(path.rstrip("/").rsplit("/", 1)[-1])
    assert (web_server.storage_root / "tus" / str(upload_id)).read_bytes() == data


def test_slow_patches_leave_the_pool_to_other_requests(web_server: WebServer, api_session: str):
    # More slow PATCHes than the pool has connections (WEB_THREADS, 8): were each to keep the
    # connection it looked its upload up with, the HEAD below would wait WEB_TIMEOUT for one.
    paths = [create_upload(web_server, api_session, 1000) for _ in range(10)]
    stop = threading.Event()
    opened: list[socket.socket] = []

    def trickle(path: str) -> None:
        sock = socket.create_connection(("127.0.0.1", web_server.port))
        opened.append(sock)
        sock.sendall(patch_head(path, api_session, 0, 1000))
        while not stop.wait(0.5):
            sock.sendall(b"x")

    writers = [threading.Thread(target=trickle, args=(path,)) for path in paths]
    try:
        for writer in writers:
            writer.start()
        time.sleep(1.5)
        started = time.monotonic()
        for path in paths[:3]:
            offset_of(web_server, path, api_session)
        took = time.monotonic() - started
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        for sock in opened:
            sock.close()

    assert took < PROMPT_SECONDS, took


def test_a_chunked_patch_without_content_length_is_stored(web_server: WebServer, api_session: str):
    # What `curl -T -` sends when it reads from a pipe: the body's length is not known up front.
    data = b"0123456789" * 1000
    path = create_upload(web_server, api_session, len(data))
    head = request_head(
        "PATCH",
        path,
        {
            **TUS,
            "X-Session-Key": api_session,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Transfer-Encoding": "chunked",
        },
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (data[:3000], data[3000:])) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", web_server.port), timeout=30) as sock:
        sock.sendall(head + chunks)
        status, _ = read_response(sock)

    assert status == 204
    assert offset_of(web_server, path, api_session) == len(data)


def test_creation_with_upload_stores_the_first_bytes_and_gives_a_new_client_its_session(web_server: WebServer):
    data = b"first bytes" * 30_000  # more than the streamed body's buffer
    head = request_head(
        "POST",
        "/api/v1/uploads/",
        {
            **TUS,
            "Upload-Length": str(len(data) + 5),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(data)),
        },
    )
    with socket.create_connection(("127.0.0.1", web_server.port), timeout=30) as sock:
        sock.sendall(head + data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
    lines = raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}

    assert lines[0].split(" ")[1] == "201"
    assert headers["upload-offset"] == str(len(data))
    path = "/" + headers["location"].split("/", 3)[3]
    assert offset_of(web_server, path, headers["x-session-key"]) == len(data)
