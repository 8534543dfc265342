"""video_trim, video_thumbnail, video_to_gif, audio_normalize and video_compress's max_height and
target_size_mb, end to end through the API with a real RQ worker: each output downloaded and
measured (duration, frame rate, dimensions, loudness, size against the target), plus the refusals
at create and the failures in the worker."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image, ImageStat

from apps.operations.enums import FileType
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.probe import probe_media
from tests.processors.conftest import assert_completed, assert_failed_keeping_input

API = "/api/v1"


# --- media these operations need beyond tests/media.py -------------------------------------------
def _ffmpeg(*args: str) -> None:
    command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(command, check=True, timeout=120)


def keyframed_video(media, *, duration: int = 4) -> Path:
    """An MP4 with a keyframe every second (x264's default puts one at the start only)."""
    path = media.directory / f"keyframed-{duration}.mp4"
    if not path.exists():
        _ffmpeg(
            *["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={duration}"],
            *["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={duration}", "-ac", "2"],
            *["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"],
            *["-pix_fmt", "yuv420p", "-c:a", "aac", "-t", str(duration), str(path)],
        )
    return path


def video_opening_with(media, colour: str, *, plain_seconds: int = 3, picture_seconds: int = 1) -> Path:
    """``plain_seconds`` of one flat colour (black, white), then a test pattern: a naive pick of the
    most typical frame takes the flat one."""
    path = media.directory / f"opening-{colour}-{plain_seconds}-{picture_seconds}.mp4"
    if not path.exists():
        graph = "[0][1]concat=n=2:v=1[v]"
        if picture_seconds == 0:
            graph = "[0]null[v]"
        _ffmpeg(
            *["-f", "lavfi", "-i", f"color={colour}:size=320x240:rate=25:duration={plain_seconds}"],
            *["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={max(picture_seconds, 1)}"],
            *["-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast"],
            *["-pix_fmt", "yuv420p", str(path)],
        )
    return path


def audio_at(media, *, source: str, name: str, seconds: int = 4) -> Path:
    path = media.directory / f"{name}-{seconds}.wav"
    if not path.exists():
        _ffmpeg("-f", "lavfi", "-i", source, "-t", str(seconds), "-ac", "2", "-c:a", "pcm_s16le", str(path))
    return path


def integrated_loudness(path: Path) -> float:
    """Measured independently of loudnorm: FFmpeg's ebur128 scanner's summary."""
    result = subprocess.run(
        [resolve_ffmpeg_binary(), "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = result.stderr[result.stderr.rindex("Summary:") :]
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))


def luma(path: Path) -> tuple[float, float]:
    """(mean, standard deviation) of an image's brightness."""
    with Image.open(path) as image:
        stat = ImageStat.Stat(image.convert("L"))
    return stat.mean[0], stat.stddev[0]


# --- the API ------------------------------------------------------------------------------------
@pytest.fixture
def client(client: Client) -> Client:
    """conftest's client (on a clean Redis: the rate limits count there) with its session made."""
    client.get(f"{API}/session/")
    return client


def post(client: Client, source: Path, parameters: dict[str, Any], **fields: str):
    return client.post(
        f"{API}/operations/",
        {
            **fields,
            "parameters": json.dumps(parameters),
            "file": SimpleUploadedFile(f"holiday{source.suffix}", source.read_bytes()),
        },
    )


def run_through_api(client, run_worker, tmp_path, source: Path, parameters: dict[str, Any], **fields: str):
    """Create, run a real worker, check it completed at 100 %, download: (output path, output_file)."""
    response = post(client, source, parameters, **fields)
    assert response.status_code == 201, response.content
    operation_id = response.json()["data"]["id"]
    run_worker()
    status = client.get(f"{API}/operations/{operation_id}/status/").json()["data"]
    assert (status["status"], status["progress"], status["error_message"]) == ("completed", 100, None)
    detail = client.get(f"{API}/operations/{operation_id}/").json()["data"]
    output = detail["output_file"]
    download = client.get(f"{API}/operations/{operation_id}/download/")
    assert download.status_code == 200
    path = tmp_path / output["file_name"]
    path.write_bytes(b"".join(download.streaming_content))
    download.close()
    assert path.stat().st_size == output["file_size"]
    return path, output


def refusal(response) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return error


pytestmark = pytest.mark.django_db(transaction=True)  # the API queues on commit


# --- video_trim ---------------------------------------------------------------------------------
def test_an_accurate_trim_lasts_exactly_from_start_to_end(client, media, run_worker, tmp_path):
    path, output = run_through_api(
        client, run_worker, tmp_path, media.video(duration=4), {"start": 1, "end": 3}, operation="video_trim"
    )

    assert output["file_name"] == "holiday_trimmed.mp4"
    info = probe_media(path, format_name="mov")
    assert info.video.duration == pytest.approx(2.0, abs=0.05)
    assert (info.video.codec, info.video.width, info.video.height, info.video.frame_rate) == ("h264", 320, 240, 25)
    assert info.audio is not None
    assert output["metadata"]["stream_copied"] is False


def test_a_fast_trim_copies_from_the_keyframe_at_or_before_start(client, media, run_worker, tmp_path):
    path, output = run_through_api(
        client,
        run_worker,
        tmp_path,
        keyframed_video(media),
        {"start": 1.5, "duration": 1, "accurate": False},
        operation="video_trim",
    )

    metadata = output["metadata"]
    assert (metadata["stream_copied"], metadata["start_keyframe"]) == (True, 1.0)
    # Checked from its headers; the pixel format is the input's, which the upload's check decoded.
    assert (metadata["video_codec"], metadata["pixel_format"]) == ("h264", "yuv420p")
    info = probe_media(path, format_name="mov")
    # From the keyframe at 1.0 s to 2.5 s.
    assert info.video.duration == pytest.approx(1.5, abs=0.05)
    assert (info.video.width, info.video.frame_rate) == (320, 25)


def test_a_webm_trim_stays_webm(client, media, run_worker, tmp_path):
    path, output = run_through_api(
        client, run_worker, tmp_path, media.video(extension="webm", duration=3), {"start": 2}, operation="video_trim"
    )

    assert output["mime_type"] == "video/webm"
    info = probe_media(path, format_name="matroska")
    assert (info.video.codec, info.audio.codec) == ("vp9", "opus")
    assert info.duration == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    ("parameters", "field", "message"),
    [
        ({"start": 5}, "start", "start (5 s) is at or after the end of this video (2 s)."),
        ({"start": 1, "end": 1}, "end", "end (1 s) must be after start (1 s)."),
        ({"end": 1, "duration": 1}, "duration", "Give only one of: duration, end."),
        ({"start": -1}, "start", "Must be at least 0."),
    ],
)
def test_a_trim_that_cannot_work_on_the_upload_is_refused_and_nothing_is_stored(
    client, media, storage_root, parameters, field, message
):
    error = refusal(post(client, media.video(duration=2), parameters, operation="video_trim"))

    assert error["details"][field] == [message]
    assert list((storage_root / "uploads").iterdir()) == []


# --- video_thumbnail ----------------------------------------------------------------------------
def test_a_thumbnail_at_a_time_has_the_width_asked_for(client, media, run_worker, tmp_path):
    path, output = run_through_api(
        client,
        run_worker,
        tmp_path,
        media.video(duration=2),
        {"time": 1.0, "width": 160},
        operation="video_thumbnail",
    )

    assert (output["file_name"], output["mime_type"]) == ("holiday_thumbnail.jpg", "image/jpeg")
    with Image.open(path) as image:
        assert (image.format, image.size) == ("JPEG", (160, 120))


@pytest.mark.parametrize(
    ("colour", "output_format", "pillow_format"), [("black", "png", "PNG"), ("white", "webp", "WEBP")]
)
def test_an_automatic_thumbnail_skips_a_black_or_blank_opening(
    client, media, run_worker, tmp_path, colour, output_format, pillow_format
):
    source = video_opening_with(media, colour)

    path, output = run_through_api(
        client, run_worker, tmp_path, source, {"output_format": output_format}, operation="video_thumbnail"
    )

    assert output["metadata"]["automatic"] is True
    assert "notice" not in output["metadata"]
    with Image.open(path) as image:
        assert (image.format, image.size) == (pillow_format, (320, 240))
    mean, spread = luma(path)
    assert 40 < mean < 220 and spread > 30, (mean, spread)  # the test pattern, not the flat opening


def test_an_all_black_video_still_gets_a_thumbnail_that_says_so(client, media, run_worker, tmp_path):
    source = video_opening_with(media, "black", plain_seconds=2, picture_seconds=0)

    path, output = run_through_api(client, run_worker, tmp_path, source, {}, operation="video_thumbnail")

    assert "dark or blank" in output["metadata"]["notice"]
    assert luma(path)[0] < 32


def test_a_thumbnail_time_past_the_end_is_refused(client, media):
    error = refusal(post(client, media.video(duration=2), {"time": 2.5}, operation="video_thumbnail"))

    assert error["details"]["time"] == ["time (2.5 s) is at or after the end of this video (2 s)."]


# --- video_to_gif -------------------------------------------------------------------------------
def gif_timing(path: Path) -> tuple[int, float, tuple[int, int], int | None]:
    """(frames, total seconds, size, loop) of an animation, as a browser plays it."""
    with Image.open(path) as image:
        total = 0
        for index in range(image.n_frames):
            image.seek(index)
            image.load()  # WebP frames say their duration once loaded
            total += image.info["duration"]
        return image.n_frames, total / 1000, image.size, image.info.get("loop")


@pytest.mark.parametrize("two_passes", [False, True])
def test_a_gif_has_the_frames_rate_and_width_asked_for(client, media, run_worker, tmp_path, monkeypatch, two_passes):
    if two_passes:
        # A clip over the in-memory budget: the palette is made in a first pass of its own.
        monkeypatch.setattr("apps.processors.gif.SINGLE_PASS_BUDGET_BYTES", 1)

    path, output = run_through_api(
        client,
        run_worker,
        tmp_path,
        media.video(duration=4),
        {"start": 1, "duration": 2, "fps": 10, "width": 160},
        operation="video_to_gif",
    )

    assert (output["file_name"], output["mime_type"]) == ("holiday_animation.gif", "image/gif")
    assert output["metadata"]["passes"] == (2 if two_passes else 1)
    frames, seconds, size, loop = gif_timing(path)
    assert size == (160, 120)
    assert frames == pytest.approx(20, abs=1)
    assert seconds == pytest.approx(2.0, abs=0.1)
    assert loop == 0


def test_an_animated_webp_never_enlarges_the_video(client, media, run_worker, tmp_path):
    path, output = run_through_api(
        client,
        run_worker,
        tmp_path,
        media.video(duration=2),
        {"output_format": "webp", "fps": 30},
        operation="video_to_gif",
    )

    assert output["mime_type"] == "image/webp"
    # width 480 and 30 fps asked for; the video is 320 wide at 25 fps.
    assert (output["metadata"]["width"], output["metadata"]["fps"]) == (320, 25)
    frames, seconds, size, _ = gif_timing(path)
    assert size == (320, 240)
    assert frames == pytest.approx(50, abs=1)
    assert seconds == pytest.approx(2.0, abs=0.1)


def test_a_gif_longer_than_30_seconds_is_refused(client, media):
    error = refusal(post(client, media.video(duration=1), {"duration": 31}, operation="video_to_gif"))

    assert error["details"]["duration"] == ["Must be at most 30."]


# --- audio_normalize ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "parameters", "extension"),
    [
        ("sine=frequency=440:sample_rate=44100", {}, "mp3"),  # quiet: brought up to -16 LUFS
        ("anoisesrc=color=pink:amplitude=0.9:sample_rate=48000", {"target_lufs": -23, "output_format": "flac"}, "flac"),
        # Measures above 0 LUFS, more than loudnorm accepts as a measurement.
        ("aevalsrc=sin(2*PI*(220+200*t)*t)|sin(2*PI*(330+100*t)*t):s=44100", {"output_format": "wav"}, "wav"),
    ],
    ids=["quiet-tone-to-mp3", "loud-noise-to-flac", "clipped-sweep-to-wav"],
)
def test_normalized_audio_measures_within_1_lu_of_the_target(
    client, media, run_worker, tmp_path, source, parameters, extension
):
    wav = audio_at(media, source=source, name=source.split("=")[0])
    before = integrated_loudness(wav)

    path, output = run_through_api(client, run_worker, tmp_path, wav, parameters, operation="audio_normalize")

    target = parameters.get("target_lufs", -16)
    assert abs(before - target) > 3  # the input really needed changing
    assert output["file_name"] == f"holiday_normalized.{extension}"
    assert integrated_loudness(path) == pytest.approx(target, abs=1.0)
    assert output["metadata"]["loudness_lufs"] == pytest.approx(target, abs=1.0)
    info = probe_media(path, format_name=extension)
    assert info.duration == pytest.approx(4.0, abs=0.1)
    assert info.audio.sample_rate == (48000 if "48000" in source else 44100)


def test_normalizing_silence_fails_with_a_clear_message(media, run_operation, storage_root):
    silence = audio_at(media, source="anullsrc=sample_rate=44100", name="silence", seconds=2)

    operation = run_operation("audio_normalize", silence)

    assert_failed_keeping_input(operation, storage_root, "This audio is silent")


# --- video_compress: max_height and target_size_mb ----------------------------------------------
@pytest.mark.parametrize(
    ("size", "max_height", "expected"), [((640, 480), 360, (480, 360)), ((320, 240), 720, (320, 240))]
)
def test_max_height_makes_a_video_smaller_and_never_larger(
    client, media, run_worker, tmp_path, size, max_height, expected
):
    source = media.video(duration=1, width=size[0], height=size[1])

    path, _ = run_through_api(
        client,
        run_worker,
        tmp_path,
        source,
        {"max_height": max_height, "preset": "ultrafast"},
        operation="video_compress",
    )

    info = probe_media(path, format_name="mov")
    assert (info.video.width, info.video.height) == expected
    assert info.duration == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("target_size_mb", [0.3, 0.8])
def test_a_target_size_is_met_within_its_band(client, media, run_worker, tmp_path, target_size_mb):
    source = media.video(duration=4, noisy=True)  # 13 MB of near-lossless noise

    path, output = run_through_api(
        client,
        run_worker,
        tmp_path,
        source,
        {"target_size_mb": target_size_mb, "preset": "veryfast"},
        operation="video_compress",
    )

    target = target_size_mb * 1_000_000
    assert 0.85 * target <= path.stat().st_size <= target
    assert output["metadata"]["size_ratio"] == pytest.approx(path.stat().st_size / target, abs=1e-3)
    info = probe_media(path, format_name="mov")
    assert (info.video.width, info.video.height, info.video.frame_rate) == (320, 240, 25)
    assert info.duration == pytest.approx(4.0, abs=0.1)


def test_a_target_too_small_to_watch_is_refused_naming_the_smallest_that_works(client, media, storage_root):
    source = media.video(duration=4, width=640, height=480)

    error = refusal(post(client, source, {"target_size_mb": 0.1}, preset="discord"))

    assert error["details"]["target_size_mb"] == [
        "0.1 MB is too small for this 4-second video to stay watchable: even at 360 lines it needs at least "
        "0.2 MB. Choose a target of 0.2 MB or more."
    ]
    assert list((storage_root / "uploads").iterdir()) == []


def test_a_target_too_small_fails_in_the_worker_when_the_upload_was_not_checked(media, run_operation, storage_root):
    # Created without the API's check (as an import from a URL is): the worker refuses it the same way.
    source = media.video(duration=4, width=640, height=480)

    operation = run_operation("video_compress", source, {"target_size_mb": 0.1})

    assert_failed_keeping_input(operation, storage_root, "needs at least 0.2 MB")


def test_a_target_larger_than_the_video_needs_is_not_padded(media, run_operation, output_path):
    source = media.video(duration=2)  # a test pattern at about 1 Mb/s

    operation = run_operation("video_compress", source, {"target_size_mb": 50, "preset": "ultrafast"})

    assert_completed(operation)
    output = operation.files.get(file_type=FileType.OUTPUT)
    assert output.file_size < 0.2 * 50_000_000
    assert "encoded at its own bitrate" in output.metadata["notice"]
    assert output_path(operation).is_file()


# --- presets ------------------------------------------------------------------------------------
def test_presets_are_listed_with_their_operation_and_parameters(client):
    response = client.get(f"{API}/presets/")

    assert response.status_code == 200
    presets = {preset["name"]: preset for preset in response.json()["data"]}
    assert {"discord", "email", "web-720p", "podcast", "thumbnail"} <= set(presets)
    assert presets["discord"]["operation"] == "video_compress"
    assert presets["discord"]["parameters"]["target_size_mb"] == 10
    assert presets["discord"]["parameters"]["max_height"] == 720
    assert presets["podcast"]["parameters"]["target_lufs"] == -16
    assert all(preset["title"] and preset["description"] for preset in presets.values())


def test_a_preset_runs_its_operation_with_the_given_parameters_on_top(client, media, run_worker, tmp_path):
    wav = audio_at(media, source="sine=frequency=440:sample_rate=44100", name="sine")

    path, output = run_through_api(client, run_worker, tmp_path, wav, {"bitrate": "96k"}, preset="podcast")

    info = probe_media(path, format_name="mp3")
    assert info.audio.bit_rate == 96000
    assert integrated_loudness(path) == pytest.approx(-16, abs=1.0)


def test_a_preset_create_records_the_merged_parameters(client, media):
    response = post(client, media.video(duration=1), {"width": 320}, preset="thumbnail")

    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["operation"] == "video_thumbnail"
    assert data["parameters"] == {"width": 320, "output_format": "jpg"}


def test_an_unknown_preset_is_refused_naming_the_presets(client, media):
    error = refusal(post(client, media.video(duration=1), {}, preset="tiktok"))

    assert error["details"]["preset"][0].startswith("Unknown preset 'tiktok'. Available presets: discord, email")
