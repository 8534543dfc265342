"""Damaged, empty, mislabelled and oversized uploads: refused at upload, or failed cleanly by the
worker with a sentence for the user; nothing is kept, no worker dies, and the web process never
holds an oversized body."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from tests.api.conftest import API, upload

pytestmark = pytest.mark.django_db


def kept_files(storage_root: Path) -> list[Path]:
    return [path for path in storage_root.rglob("*") if path.is_file()]


def truncated(fraction: float) -> Callable[[bytes], bytes]:
    return lambda content: content[: int(len(content) * fraction)]


def garbled(content: bytes) -> bytes:
    # The header survives, the middle third is noise.
    third = len(content) // 3
    return content[:third] + bytes((i * 131 + 7) % 256 for i in range(third)) + content[2 * third :]


# What each operation gets: (operation, parameters, sample, extension).
SAMPLES = {
    "video": ("video_compress", {"preset": "ultrafast"}, lambda media: media.video(duration=1), "mp4"),
    "audio": ("audio_convert", {"output_format": "mp3"}, lambda media: media.audio(duration=1), "wav"),
    "image": ("image_convert", {"output_format": "png"}, lambda media: media.jpeg(width=256, height=256), "jpg"),
}
REFUSED_AT_UPLOAD = {
    "zero bytes": lambda content: b"",
    "only the first 64 bytes": lambda content: content[:64],
    "text": lambda content: b"This is a plain text file, not media.\n" * 20,
    "html": lambda content: b"<!doctype html><html><body>hello</body></html>",
    "random bytes": lambda content: bytes((i * 197 + 13) % 256 for i in range(4096)),
}


@pytest.mark.parametrize("kind", list(SAMPLES))
@pytest.mark.parametrize("damage", list(REFUSED_AT_UPLOAD))
def test_unreadable_uploads_are_refused_and_nothing_is_kept(client, media, storage_root, kind, damage):
    operation, parameters, sample, extension = SAMPLES[kind]
    content = REFUSED_AT_UPLOAD[damage](sample(media).read_bytes())

    response = client.post(
        f"{API}/operations/",
        {
            "operation": operation,
            "parameters": json.dumps(parameters),
            "file": SimpleUploadedFile(f"clip.{extension}", content),
        },
    )

    assert response.status_code in (400, 415), response.content
    error = response.json()["error"]
    assert error["code"] in ("validation_error", "unsupported_media")
    assert error["message"].endswith(".") and "Traceback" not in error["message"]
    assert kept_files(storage_root) == []
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("content_of", "name", "operation", "parameters"),
    [
        (lambda media: media.png(), "holiday.mp4", "video_compress", {}),
        (lambda media: media.video(duration=0.5), "photo.jpg", "image_resize", {"width": 10}),
        (
            lambda media: media.audio(extension="mp3", duration=0.5),
            "clip.avi",
            "video_convert",
            {"output_format": "mp4"},
        ),
        # A silent video: sound beside a picture would be taken as audio (an M4A with a video track).
        (lambda media: media.video(duration=0.5, audio=False), "song.wav", "audio_convert", {"output_format": "mp3"}),
        (lambda media: media.jpeg(), "song.flac", "audio_convert", {"output_format": "mp3"}),
    ],
)
def test_content_that_is_not_what_its_name_says_is_a_415(
    client, media, storage_root, content_of, name, operation, parameters
):
    response = upload(client, content_of(media), operation=operation, parameters=parameters, name=name)

    assert response.status_code == 415
    assert kept_files(storage_root) == []


@pytest.mark.parametrize(
    ("kind", "damage", "outcome"),
    [
        ("video", truncated(0.5), "fails"),  # the index promises 1 s, the data holds half
        ("video", garbled, "completes or fails"),
        ("audio", truncated(0.5), "completes or fails"),  # FFmpeg reads a WAV up to where it ends
        ("image", truncated(0.6), "fails"),
        ("image", garbled, "completes or fails"),
    ],
)
def test_damaged_media_that_passes_the_upload_checks_ends_cleanly_in_the_worker(
    tmp_path, media, run_operation, submit, run_worker, kind, damage, outcome
):
    operation_name, parameters, sample, extension = SAMPLES[kind]
    damaged = tmp_path / f"damaged.{extension}"
    damaged.write_bytes(damage(sample(media).read_bytes()))

    # Stored as its name says, whichever of these damages the upload checks would notice.
    operation = run_operation(operation_name, damaged, parameters, inspect=False)

    assert operation.status in ((OperationStatus.FAILED,) if outcome == "fails" else OperationStatus.terminal())
    if operation.status == OperationStatus.FAILED:
        assert operation.error_message.endswith(".") and "Traceback" not in operation.error_message
    # The worker took the next job as if nothing had happened.
    good = submit(operation_name, sample(media), parameters)
    run_worker()
    good.refresh_from_db()
    assert good.status == OperationStatus.COMPLETED


# --- oversized bodies, over a real socket -----------------------------------------------------------
# What the kernel buffers of the two ends of a local connection can hold while the server is not
# reading: a client that got this far before the answer was not read to the end of its body.
SOCKET_BUFFERS = 32 * 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_an_oversized_stream_gets_a_413_long_before_its_end_and_nothing_is_kept(live_server, settings, storage_root):
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 1024 * 1024}
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    declared = 200 * 1024 * 1024  # within the video limit, so the body is read until the PNG passes 1 MB
    status, sent = _stream_upload(live_server.url, name="poster.png", operation="image_resize", file_size=declared)

    assert status == 413
    assert sent < SOCKET_BUFFERS, f"{sent} bytes were taken before the server answered"
    assert kept_files(storage_root) == []


@pytest.mark.django_db(transaction=True)
def test_a_body_declared_larger_than_any_limit_is_refused_without_reading_it(live_server, storage_root):
    status, sent = _stream_upload(live_server.url, name="film.mp4", operation="video_compress", file_size=10 * 1024**3)

    assert status == 413
    assert sent < SOCKET_BUFFERS
    assert kept_files(storage_root) == []


def _stream_upload(url: str, *, name: str, operation: str, file_size: int) -> tuple[int, int]:
    """POST a multipart body holding a ``file_size``-byte file, sent in 64 KB chunks over a plain
    socket, stopping as soon as the server answers. Returns the status and how many file bytes had
    been sent by then."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="operation"\r\n\r\n{operation}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST {API}/operations/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(head) + file_size + len(tail)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nConnection: close\r\n\r\n"
    ).encode()
    chunk = b"\x00" * 64 * 1024
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request + head)
        connection.setblocking(False)
        deadline = time.monotonic() + 120
        while sent < file_size and not answer and time.monotonic() < deadline:
            try:
                answer = connection.recv(65536)
            except BlockingIOError:
                pass
            try:
                sent += connection.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)  # the server is not reading: it may be answering
            except (BrokenPipeError, ConnectionResetError):
                break
        connection.setblocking(True)
        while b"\r\n" not in answer:
            received = connection.recv(65536)
            if not received:
                break
            answer += received
    return int(answer.split(b" ", 2)[1]), sent
