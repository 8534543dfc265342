"""Resource bombs never exhaust a worker: what FFmpeg decodes, how many threads and how much address
space it gets, how long an input and how large an output may be."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from apps.operations.enums import OperationStatus
from apps.processors.exceptions import FFmpegError
from apps.processors.ffmpeg import input_args, run_ffmpeg
from apps.processors.probe import probe_media
from tests.api.conftest import upload
from tests.hostile import attacks

pytestmark = pytest.mark.django_db

# Enough for FFmpeg encoding audio (about 500 MB of address space with its static build), far
# from enough to decode the cover below (16000×16000 RGB, 768 MB).
TIGHT_MEMORY_MB = 800


@pytest.fixture(scope="module")
def cover_bomb(tmp_path_factory, media) -> Path:
    """A 1-second MP3 whose cover picture is a 16000×16000 RGB PNG of 750 KB."""
    directory = tmp_path_factory.mktemp("cover-bomb")
    cover = directory / "cover.png"
    cover.write_bytes(attacks.png_bomb(width=16000, height=16000, rgb=True))
    return attacks.audio_with_cover(
        audio=media.audio(extension="mp3", duration=1), cover=cover, output=directory / "song.mp3"
    )


def test_control_decoding_the_cover_hits_the_memory_limit_and_fails_with_a_message(cover_bomb, settings):
    settings.FFMPEG_MEMORY_LIMIT_MB = TIGHT_MEMORY_MB

    with pytest.raises(FFmpegError) as failure:
        # FFmpeg's default stream selection takes the cover as the video stream and decodes it.
        # -xerror: some builds (Debian's 5.1) log the failed decode and carry on with the audio.
        run_ffmpeg([*input_args(cover_bomb, demuxer="mp3"), "-xerror", "-f", "null", "-"], duration=1, timeout=60)

    assert failure.value.user_message == "The server ran out of memory while processing this file."
    # The static build's words; Debian's 5.1 says only that the frame's buffer could not be had.
    assert "Cannot allocate memory" in failure.value.stderr_tail or "get_buffer() failed" in failure.value.stderr_tail


@pytest.mark.parametrize("output_format", ["mp3", "flac"])
def test_audio_operations_never_decode_a_huge_cover(
    client, cover_bomb, settings, run_operation, output_path, output_format
):
    settings.FFMPEG_MEMORY_LIMIT_MB = TIGHT_MEMORY_MB

    accepted = upload(client, cover_bomb, operation="audio_convert", parameters={"output_format": output_format})
    operation = run_operation("audio_convert", cover_bomb, {"output_format": output_format})

    assert accepted.status_code == 201, accepted.content
    assert operation.status == OperationStatus.COMPLETED, operation.error_message
    assert [stream.kind for stream in probe_media(output_path(operation)).streams] == ["audio"]


def test_every_ffmpeg_run_is_pinned_and_bounded(run_operation, media, settings, caplog):
    settings.FFMPEG_THREADS = 2
    caplog.set_level(logging.DEBUG, logger="apps.processors.ffmpeg")

    run_operation("video_compress", media.video(duration=0.5), {"preset": "ultrafast"})
    run_operation("audio_convert", media.audio(duration=0.5), {"output_format": "mp3"})

    commands = [record.args[0] for record in caplog.records if record.msg == "Running %s"]
    assert len(commands) == 2
    for command in commands:
        before_input = command[: command.index("-i")]
        assert command[1] == "-nostdin"
        assert _option(command, "-filter_threads") == "2"
        assert _option(before_input, "-threads") == "2"
        assert _option(before_input, "-protocol_whitelist") == "file"
        assert _option(before_input, "-format_whitelist") == _option(before_input, "-f")
        source = _option(command, "-i")
        assert source.startswith("file:/") and Path(source.removeprefix("file:")).is_absolute()
        after_input = command[command.index("-i") :]
        assert _option(after_input, "-threads") == "2"
        assert _option(after_input, "-fs") == str(settings.PROCESSING_MAX_OUTPUT_SIZE)
        assert Path(command[-1]).is_absolute()


def test_an_output_over_the_size_cap_is_not_delivered(run_operation, media, settings, storage_root):
    settings.PROCESSING_MAX_OUTPUT_SIZE = 100 * 1024  # a 2 s WAV is about 350 KB

    operation = run_operation("audio_convert", media.audio(duration=2), {"output_format": "wav"})

    assert operation.status == OperationStatus.FAILED
    assert (
        operation.error_message
        == "The result would be larger than 100 KB, the most Konvrt delivers, so it was not kept."
    )
    assert list((storage_root / "outputs").rglob("*.*")) == []


def test_a_video_output_over_the_size_cap_is_not_delivered(run_operation, media, settings):
    settings.PROCESSING_MAX_OUTPUT_SIZE = 20 * 1024

    operation = run_operation("video_convert", media.video(duration=1, noisy=True), {"output_format": "mp4"})

    assert operation.status == OperationStatus.FAILED
    assert operation.error_message.startswith("The result would be larger than 20 KB")


def test_an_input_over_the_duration_cap_is_refused_at_upload_and_by_the_worker(client, run_operation, media, settings):
    settings.PROCESSING_MAX_DURATION_SECONDS = 1
    long_audio = media.audio(duration=2)

    response = upload(client, long_audio, operation="audio_convert", parameters={"output_format": "mp3"})
    operation = run_operation("audio_convert", long_audio, {"output_format": "mp3"}, inspect=False)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "This file is 2 seconds long; the limit is 1 second."
    assert operation.status == OperationStatus.FAILED
    assert operation.error_message == "This file is 2 seconds long; the limit is 1 second."


def test_a_video_picture_over_the_cap_is_refused_at_upload(client, media, settings):
    settings.PROCESSING_MAX_VIDEO_PIXELS = 100 * 100

    response = upload(client, media.video(duration=0.5), operation="video_compress")

    assert response.status_code == 400
    assert "320×240" in response.json()["error"]["message"]


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]
