"""Every operation end to end through the API: upload, a real RQ worker on the real Redis, status,
details, download, and the downloaded bytes probed. Plus progress, ETA and cancel seen through the
API while a forking worker runs FFmpeg."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from apps.processors.probe import MediaInfo, probe_media
from tests.processors.processes import ffmpeg_processes_under, is_alive, wait_until, worker_environment

API = "/api/v1"
ROOT = Path(__file__).resolve().parents[2]


# What the API fills in when a parameter is not given (DESIGN.md, Operations).
DEFAULTS = {
    "video_compress": {"quality": 23, "preset": "medium", "audio_bitrate": "128k"},
    "video_convert": {"quality": 23},
    "image_resize": {"maintain_aspect_ratio": True},
    "image_convert": {"quality": 85},
    "audio_convert": {"bitrate": "192k"},
    "audio_extract": {"output_format": "mp3", "bitrate": "192k"},
}


@dataclass(frozen=True)
class Case:
    operation: str
    source: Callable[[Any], Path]
    parameters: dict[str, Any]
    output_name: str
    mime_type: str
    check: Callable[[Path], None]


def media_check(
    demuxer: str, *, video: str | None, audio: str | None, duration: float = 1.0, **expected
) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        info: MediaInfo = probe_media(path, format_name=demuxer)
        assert (info.video.codec if info.video else None) == video
        assert (info.audio.codec if info.audio else None) == audio
        assert info.duration == pytest.approx(duration, abs=0.2)
        for name, value in expected.items():
            stream = info.video if name in ("width", "height", "pixel_format") else info.audio
            assert getattr(stream, name) == value, name

    return check


def image_check(pillow_format: str, size: tuple[int, int]) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        with Image.open(path) as image:
            assert (image.format, image.size) == (pillow_format, size)

    return check


def video(media) -> Path:
    return media.video(duration=1)


CASES = [
    Case(
        "video_compress",
        video,
        {},
        "holiday_compressed.mp4",
        "video/mp4",
        media_check("mov", video="h264", audio="aac", width=320, height=240, pixel_format="yuv420p"),
    ),
    Case(
        "video_compress",
        video,
        {"quality": 28, "preset": "ultrafast", "audio_bitrate": "64k"},
        "holiday_compressed.mp4",
        "video/mp4",
        media_check("mov", video="h264", audio="aac"),
    ),
    Case(
        "video_convert",
        video,
        {"output_format": "webm"},
        "holiday_converted.webm",
        "video/webm",
        media_check("matroska", video="vp9", audio="opus"),
    ),
    Case(
        "video_convert",
        lambda media: media.video(extension="avi", duration=1),
        {"output_format": "mov", "quality": 20},
        "holiday_converted.mov",
        "video/quicktime",
        media_check("mov", video="h264", audio="aac"),
    ),
    Case(
        "video_convert",
        lambda media: media.video(extension="mkv", duration=1),
        {"output_format": "mp4"},
        "holiday_converted.mp4",
        "video/mp4",
        media_check("mov", video="h264", audio="aac"),
    ),
    Case(
        "image_resize",
        lambda media: media.jpeg(width=64, height=32),
        {"width": 32},
        "holiday_resized.jpg",
        "image/jpeg",
        image_check("JPEG", (32, 16)),
    ),
    Case(
        "image_resize",
        lambda media: media.png(),
        {"width": 20, "height": 50, "maintain_aspect_ratio": False},
        "holiday_resized.png",
        "image/png",
        image_check("PNG", (20, 50)),
    ),
    Case(
        "image_resize",
        lambda media: media.gif(),
        {"height": 16},
        "holiday_resized.gif",
        "image/gif",
        image_check("GIF", (16, 16)),
    ),
    Case(
        "image_convert",
        lambda media: media.png(),
        {"output_format": "jpg", "quality": 50},
        "holiday_converted.jpg",
        "image/jpeg",
        image_check("JPEG", (64, 64)),
    ),
    Case(
        "image_convert",
        lambda media: media.bmp(),
        {"output_format": "webp"},
        "holiday_converted.webp",
        "image/webp",
        image_check("WEBP", (40, 30)),
    ),
    Case(
        "image_convert",
        lambda media: media.webp(),
        {"output_format": "png"},
        "holiday_converted.png",
        "image/png",
        image_check("PNG", (48, 48)),
    ),
    Case(
        "audio_convert",
        lambda media: media.audio(duration=1),
        {"output_format": "mp3"},
        "holiday_converted.mp3",
        "audio/mpeg",
        media_check("mp3", video=None, audio="mp3", sample_rate=44100, channels=2),
    ),
    Case(
        "audio_convert",
        lambda media: media.audio(extension="flac", duration=1),
        {"output_format": "ogg", "bitrate": "128k", "sample_rate": 22050, "channels": 1},
        "holiday_converted.ogg",
        "audio/ogg",
        media_check("ogg", video=None, audio="vorbis", sample_rate=22050, channels=1),
    ),
    Case(
        "audio_convert",
        lambda media: media.audio(extension="mp3", duration=1),
        {"output_format": "wav", "sample_rate": 48000},
        "holiday_converted.wav",
        "audio/wav",
        media_check("wav", video=None, audio="pcm_s16le", sample_rate=48000),
    ),
    Case(
        "audio_convert",
        lambda media: media.audio(extension="ogg", duration=1),
        {"output_format": "aac", "channels": 1},
        "holiday_converted.aac",
        "audio/aac",
        media_check("aac", video=None, audio="aac", channels=1),
    ),
    Case(
        "audio_convert",
        lambda media: media.audio(extension="opus", duration=1),
        {"output_format": "flac"},
        "holiday_converted.flac",
        "audio/flac",
        media_check("flac", video=None, audio="flac"),
    ),
    Case(
        "audio_extract",
        video,
        {},
        "holiday_audio.mp3",
        "audio/mpeg",
        media_check("mp3", video=None, audio="mp3"),
    ),
    Case(
        "audio_extract",
        lambda media: media.video(extension="webm", duration=1),
        {"output_format": "aac", "bitrate": "96k"},
        "holiday_audio.aac",
        "audio/aac",
        media_check("aac", video=None, audio="aac"),
    ),
]


@pytest.fixture
def client(client: Client) -> Client:
    """conftest's client (on a clean Redis: the rate limits count there) with its session made."""
    client.get(f"{API}/session/")
    return client


def create(client: Client, operation: str, source: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        f"{API}/operations/",
        {
            "operation": operation,
            "parameters": json.dumps(parameters),
            "file": SimpleUploadedFile(f"holiday{source.suffix}", source.read_bytes()),
        },
    )
    assert response.status_code == 201, response.content
    return response.json()["data"]


@pytest.mark.django_db(transaction=True)  # the API queues on commit
@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{case.operation}-{case.output_name.rpartition('.')[2]}-{json.dumps(case.parameters)}" for case in CASES],
)
def test_every_operation_end_to_end_through_the_api(client, media, run_worker, tmp_path, case):
    created = create(client, case.operation, case.source(media), case.parameters)
    assert created["status"] == "queued"
    assert created["parameters"] == {**DEFAULTS[case.operation], **case.parameters}

    run_worker()

    status = client.get(f"{API}/operations/{created['id']}/status/").json()["data"]
    assert (status["status"], status["progress"]) == ("completed", 100)
    assert status["eta_seconds"] is None and status["error_message"] is None
    detail = client.get(f"{API}/operations/{created['id']}/").json()["data"]
    output = detail["output_file"]
    assert (output["file_name"], output["mime_type"]) == (case.output_name, case.mime_type)
    assert output["metadata"]["compression_ratio"] > 0
    assert output["metadata"]["format"] == case.output_name.rsplit(".", 1)[1]
    assert detail["expires_at"] is not None
    response = client.get(f"{API}/operations/{created['id']}/download/")
    assert response.status_code == 200
    assert case.output_name in response["Content-Disposition"]
    downloaded = tmp_path / case.output_name
    downloaded.write_bytes(b"".join(response.streaming_content))
    response.close()
    assert downloaded.stat().st_size == output["file_size"]
    case.check(downloaded)


@pytest.mark.django_db(transaction=True)  # the API queues on commit
def test_a_compression_that_grew_says_so_through_the_api(client, media, run_worker):
    created = create(
        client, "video_compress", media.video(extension="webm", duration=1), {"quality": 18, "preset": "ultrafast"}
    )

    run_worker()

    metadata = client.get(f"{API}/operations/{created['id']}/").json()["data"]["output_file"]["metadata"]
    assert metadata["larger_than_input"] is True
    assert "came out larger than the original" in metadata["notice"]


@pytest.mark.django_db(transaction=True)  # the API queues on commit
def test_extracting_audio_from_a_silent_video_is_refused_at_upload(client, media):
    response = client.post(
        f"{API}/operations/",
        {
            "operation": "audio_extract",
            "parameters": "{}",
            "file": SimpleUploadedFile("holiday.mp4", media.video(duration=1, audio=False).read_bytes()),
        },
    )

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == "This video has no audio track to extract."
    assert error["details"]["file"] == ["This video has no audio track to extract."]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_progress_eta_and_cancel_through_the_api_while_a_forking_worker_encodes(client, media, storage_root):
    created = create(client, "video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})
    worker = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rqworker",
            "video_queue",
            "--burst",
            "--worker-class",
            "apps.operations.worker.KonvrtWorker",
        ],
        cwd=ROOT,
        env=worker_environment(storage_root),
    )
    try:
        seen = []

        def progressing() -> bool:
            seen.append(client.get(f"{API}/operations/{created['id']}/status/").json()["data"])
            return 0 < seen[-1]["progress"] < 100

        assert wait_until(progressing, timeout=60, interval=0.25), seen[-1]
        status = seen[-1]
        assert (status["status"], status["phase"]) == ("processing", "processing")
        assert isinstance(status["eta_seconds"], int)
        running = wait_until(lambda: ffmpeg_processes_under(worker.pid), timeout=10)
        assert running

        cancelled = client.post(f"{API}/operations/{created['id']}/cancel/")

        assert cancelled.status_code == 200
        assert cancelled.json()["data"]["status"] == "cancelled"
        assert wait_until(lambda: not any(is_alive(pid) for pid in running), timeout=10)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert client.get(f"{API}/operations/{created['id']}/status/").json()["data"]["status"] == "cancelled"
    assert list((storage_root / "outputs").iterdir()) == []
