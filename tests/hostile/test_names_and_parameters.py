"""Names and parameters are data, never paths or command-line options.

A client's filename is kept (sanitised) only to name the download; files are stored under
generated keys, and FFmpeg only ever sees generated absolute paths. Parameters are validated
against each operation's JSON Schema (enums, ranges, no unknown keys) and passed to FFmpeg as
single arguments of an argument list, never through a shell.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.operations.enums import FileType
from apps.operations.models import File, Operation
from tests.api.conftest import API

pytestmark = pytest.mark.django_db

HOSTILE_NAMES = [
    "../../../../etc/passwd.png",
    "..\\..\\windows\\system32\\config.png",
    "/etc/shadow.png",
    "-i file:/etc/passwd.png",
    "--help.png",
    "\x1b[31mred\x07 bell\x7f.png",
    "tab\there\x0bvertical.png",
    "фото отпуска 日本 ✓.png",
    "a" * 5000 + ".png",
    ".htaccess.png",
    "semi;colon,comma=equals%22quote.png",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_filenames_are_stored_under_generated_keys_and_downloaded_under_safe_names(
    client, media, storage_root, run_worker, django_capture_on_commit_callbacks, name, caplog
):
    caplog.set_level(logging.DEBUG, logger="apps.processors.ffmpeg")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{API}/operations/",
            {
                "operation": "image_convert",
                "parameters": json.dumps({"output_format": "jpg"}),
                "file": SimpleUploadedFile(name, media.png().read_bytes()),
            },
        )
    assert response.status_code == 201, response.content
    operation_id = response.json()["data"]["id"]
    run_worker()

    stored = File.objects.get(operation_id=operation_id, file_type=FileType.INPUT)
    assert stored.file_path == f"uploads/{operation_id}/input.png"
    assert _is_safe_name(stored.file_name), stored.file_name
    assert len(stored.file_name) <= 200
    assert sorted(path.relative_to(storage_root).parts[0] for path in storage_root.rglob("*") if path.is_file()) == [
        "outputs",
        "uploads",
    ]

    download = client.get(f"{API}/operations/{operation_id}/download/")
    assert download.status_code == 200
    disposition = download["Content-Disposition"]
    assert disposition.startswith("attachment; filename")
    assert not re.search(r"[\x00-\x1f\x7f]", disposition)
    assert "/" not in disposition.replace("filename*=utf-8''", "") and "\\" not in disposition
    assert disposition.endswith(('.jpg"', ".jpg"))
    assert download["X-Content-Type-Options"] == "nosniff"
    b"".join(download.streaming_content)


def test_a_filename_is_never_part_of_an_ffmpeg_command(
    client, media, run_worker, django_capture_on_commit_callbacks, caplog
):
    caplog.set_level(logging.DEBUG, logger="apps.processors.ffmpeg")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{API}/operations/",
            {
                "operation": "video_compress",
                "parameters": json.dumps({"preset": "ultrafast"}),
                "file": SimpleUploadedFile("-i file:passwd -f hls.mp4", media.video(duration=0.5).read_bytes()),
            },
        )
    run_worker()

    assert client.get(f"{API}/operations/{response.json()['data']['id']}/").json()["data"]["status"] == "completed"
    (command,) = [record.args[0] for record in caplog.records if record.msg == "Running %s"]
    assert not any("passwd" in argument or "hls" in argument for argument in command)


INJECTIONS = [
    ("video_compress", {"preset": "medium -i /etc/passwd"}, "preset"),
    ("video_compress", {"preset": ["medium", "-i", "/etc/passwd"]}, "preset"),
    ("video_compress", {"audio_bitrate": "128k -map 0:s"}, "audio_bitrate"),
    ("video_compress", {"quality": "23 -vf scale=10000:10000"}, "quality"),
    ("video_compress", {"quality": 23, "vf": "movie=/etc/passwd"}, "vf"),
    ("video_convert", {"output_format": "mp4 -f hls"}, "output_format"),
    ("video_convert", {"output_format": "mp4", "quality": "1e9"}, "quality"),
    ("audio_convert", {"output_format": "mp3", "bitrate": "192k;rm -rf /"}, "bitrate"),
    ("audio_convert", {"output_format": "mp3", "sample_rate": "44100 -i x"}, "sample_rate"),
    ("audio_convert", {"output_format": "mp3", "channels": "2 -af volume=9"}, "channels"),
    ("image_resize", {"width": "10 -i x"}, "width"),
    ("image_convert", {"output_format": "jpg -quality 1", "quality": 85}, "output_format"),
]


@pytest.mark.parametrize(("operation", "parameters", "field"), INJECTIONS)
def test_option_injection_through_parameters_is_refused(client, media, storage_root, operation, parameters, field):
    source = {"video": media.video(duration=0.5), "audio": media.audio(duration=0.5), "image": media.png()}
    kind = operation.split("_")[0]

    response = client.post(
        f"{API}/operations/",
        {
            "operation": operation,
            "parameters": json.dumps(parameters),
            "file": SimpleUploadedFile(source[kind].name, source[kind].read_bytes()),
        },
    )

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Operation.objects.exists()
    assert [path for path in storage_root.rglob("*") if path.is_file()] == []


def _is_safe_name(name: str) -> bool:
    return bool(name) and not re.search(r"[\x00-\x1f\x7f/\\\\]", name) and not name.startswith(("-", "."))
