"""video_compress and video_convert on real FFmpeg: containers, codecs, sizes, durations, audio."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from apps.operations.enums import FileType
from apps.processors import video
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.probe import probe_media
from tests.processors.conftest import assert_completed, assert_failed_keeping_input

pytestmark = pytest.mark.django_db


def moov_before_mdat(path) -> bool:
    data = path.read_bytes()
    return data.index(b"moov") < data.index(b"mdat")


def test_compress_makes_a_faststart_h264_aac_mp4_smaller_than_a_high_bitrate_input(media, run_operation, output_path):
    source = media.video(duration=1, noisy=True)

    operation = run_operation("video_compress", source, {"preset": "veryfast"}, name="holiday.mov")

    assert_completed(operation)
    output = output_path(operation)
    info = probe_media(output, format_name="mov")
    assert (info.video.codec, info.video.pixel_format) == ("h264", "yuv420p")
    assert (info.video.width, info.video.height) == (320, 240)
    assert info.audio.codec == "aac"
    assert info.duration == pytest.approx(1.0, abs=0.2)
    assert moov_before_mdat(output)
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert result.file_name == "holiday_compressed.mp4"
    assert result.mime_type == "video/mp4"
    assert result.file_size < source.stat().st_size
    assert result.metadata["compression_ratio"] == pytest.approx(result.file_size / source.stat().st_size, abs=1e-3)
    assert "larger_than_input" not in result.metadata
    assert operation.metadata["compression_ratio"] < 1


def test_a_lower_quality_setting_makes_a_smaller_video(media, run_operation):
    source = media.video(duration=1, noisy=True)

    best = run_operation("video_compress", source, {"quality": 18, "preset": "ultrafast"})
    smallest = run_operation("video_compress", source, {"quality": 28, "preset": "ultrafast"})

    assert_completed(best)
    assert_completed(smallest)
    size = {op.id: op.files.get(file_type=FileType.OUTPUT).file_size for op in (best, smallest)}
    assert size[smallest.id] < size[best.id]


def test_compressing_an_already_small_video_is_flagged_as_larger_than_input(media, run_operation):
    source = media.video(extension="webm", duration=1)  # VP9 at 200 kb/s: H.264 at CRF 18 cannot beat it

    operation = run_operation("video_compress", source, {"quality": 18, "preset": "ultrafast"})

    assert_completed(operation)
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert result.file_size > source.stat().st_size
    assert result.metadata["larger_than_input"] is True
    assert "came out larger than the original" in result.metadata["notice"]
    assert result.metadata["compression_ratio"] > 1
    assert operation.metadata["larger_than_input"] is True


@pytest.mark.parametrize(("audio_bitrate", "copied"), [("64k", False), ("128k", True)])
def test_audio_is_reencoded_only_when_the_requested_bitrate_is_lower(
    media, run_operation, output_path, audio_bitrate, copied
):
    source = media.video(duration=1)  # AAC at 96 kb/s

    operation = run_operation("video_compress", source, {"audio_bitrate": audio_bitrate, "preset": "ultrafast"})

    assert_completed(operation)
    audio = probe_media(output_path(operation), format_name="mov").audio
    assert audio.codec == "aac"
    assert operation.files.get(file_type=FileType.OUTPUT).metadata["audio_copied"] is copied
    if not copied:
        assert audio.bit_rate == pytest.approx(64000, rel=0.25)


def test_a_silent_video_stays_silent(media, run_operation, output_path):
    operation = run_operation("video_compress", media.video(duration=1, audio=False), {"preset": "ultrafast"})

    assert_completed(operation)
    info = probe_media(output_path(operation), format_name="mov")
    assert info.video is not None
    assert info.audio is None


def test_odd_dimensions_are_made_even_for_yuv420p(media, run_operation, output_path):
    source = media.video(extension="webm", duration=1, width=321, height=241)

    operation = run_operation("video_convert", source, {"output_format": "mp4"})

    assert_completed(operation)
    video = probe_media(output_path(operation), format_name="mov").video
    assert (video.width, video.height) == (320, 240)
    assert video.pixel_format == "yuv420p"


@pytest.mark.parametrize(
    ("output_format", "demuxer", "video_codec", "audio_codec", "mime_type"),
    [
        ("mp4", "mov", "h264", "aac", "video/mp4"),
        ("mov", "mov", "h264", "aac", "video/quicktime"),
        ("webm", "matroska", "vp9", "opus", "video/webm"),
    ],
)
def test_convert_writes_the_requested_container_and_codecs(
    media, run_operation, output_path, output_format, demuxer, video_codec, audio_codec, mime_type
):
    source = media.video(extension="avi", duration=1)  # MPEG-4 Part 2 + MP3: every codec changes

    operation = run_operation("video_convert", source, {"output_format": output_format}, name="clip.avi")

    assert_completed(operation)
    info = probe_media(output_path(operation), format_name=demuxer)
    assert info.video.codec == video_codec
    assert info.video.pixel_format == "yuv420p"
    assert info.audio.codec == audio_codec
    assert info.duration == pytest.approx(1.0, abs=0.2)
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert result.file_name == f"clip_converted.{output_format}"
    assert result.mime_type == mime_type
    if output_format != "webm":
        assert moov_before_mdat(output_path(operation))


@pytest.mark.parametrize("extension", ["mp4", "mov", "mkv", "webm", "avi", "wmv", "flv", "m4v", "3gp", "mpg", "ts"])
def test_every_accepted_video_container_is_read(media, run_operation, output_path, extension):
    operation = run_operation("video_convert", media.video(extension=extension, duration=1), {"output_format": "mp4"})

    assert_completed(operation)
    info = probe_media(output_path(operation), format_name="mov")
    assert (info.video.codec, info.audio.codec) == ("h264", "aac")


def test_metadata_of_the_input_is_not_copied(media, run_operation, output_path, tmp_path):
    tagged = tmp_path / "tagged.mp4"
    subprocess.run(
        [
            resolve_ffmpeg_binary(),
            "-loglevel",
            "error",
            "-i",
            str(media.video(duration=1)),
            "-c",
            "copy",
            "-metadata",
            "location=+48.8584+002.2945/",
            "-metadata",
            "title=secret",
            str(tagged),
        ],
        check=True,
    )
    operation = run_operation("video_convert", tagged, {"output_format": "mov"})

    assert_completed(operation)
    with av.open(str(output_path(operation))) as container:
        assert "location" not in container.metadata
        assert "title" not in container.metadata


def test_a_file_that_is_not_a_video_fails_clearly_and_keeps_its_upload(media, run_operation, storage_root):
    operation = run_operation("video_compress", media.text(extension="mp4"), inspect=False)

    assert_failed_keeping_input(operation, storage_root, "could not be read as MP4")


def test_a_webm_named_mp4_is_not_decoded_as_something_else(media, run_operation, storage_root, tmp_path):
    disguised = tmp_path / "disguised.mp4"
    disguised.write_bytes(media.video(extension="webm", duration=1).read_bytes())

    operation = run_operation("video_convert", disguised, {"output_format": "mp4"}, inspect=False)

    assert_failed_keeping_input(operation, storage_root, "not what its name says")


def test_a_truncated_video_fails_its_output_check(media, run_operation, storage_root, tmp_path):
    source = media.video(extension="mkv", duration=2)
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 3])

    operation = run_operation("video_convert", truncated, {"output_format": "mp4"})

    assert_failed_keeping_input(operation, storage_root, "failed its final check")
    assert "instead of" in operation.error_message


# --- real media behaves: old cameras' QuickTime, full range, the notice at the slowest preset -----
def camera_clip(tmp_path) -> Path:
    """An old camera's clip: full-range MJPEG (yuvj420p) and PCM sound in a classic QuickTime file,
    whose first atom is not "ftyp" (FFmpeg's ftyp turned into a "free" atom of the same size)."""
    modern = tmp_path / "modern.mov"
    subprocess.run(
        [
            resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15:duration=1",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
            "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "4", "-c:a", "pcm_s16le", "-f", "mov", str(modern),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    data = modern.read_bytes()
    clip = tmp_path / "MVI_0042.MOV"
    clip.write_bytes(data[:4] + b"free" + data[8:])
    return clip


def test_a_full_range_mjpeg_from_a_classic_quicktime_file_becomes_yuv420p_h264(run_operation, output_path, tmp_path):
    clip = camera_clip(tmp_path)
    with av.open(str(clip)) as container:
        assert container.streams.video[0].codec_context.format.name == "yuvj420p"

    operation = run_operation("video_convert", clip, {"output_format": "mp4"})

    assert_completed(operation)
    with av.open(str(output_path(operation))) as container:
        video = container.streams.video[0].codec_context
        assert (video.name, video.format.name) == ("h264", "yuv420p")
        assert video.color_range != 2  # 2 is JPEG/full range


def test_the_larger_than_input_notice_suggests_only_settings_that_are_left(media, run_operation):
    source = media.video(extension="webm", duration=0.5)  # VP9 at 200 kb/s: H.264 at CRF 18 cannot beat it

    operation = run_operation("video_compress", source, {"quality": 18, "preset": "veryslow"})

    notice = operation.files.get(file_type=FileType.OUTPUT).metadata["notice"]
    assert notice.endswith("A higher quality number (up to 28) makes smaller files.")


@pytest.mark.parametrize(
    ("quality", "preset", "hint"),
    [
        (23, "medium", "A higher quality number (up to 28) or a slower preset makes smaller files."),
        (28, "medium", "A slower preset makes smaller files."),
        (28, "veryslow", "Every setting is already at its smallest; the original may be the better file to keep."),
    ],
)
def test_the_notice_names_no_setting_already_at_its_limit(quality, preset, hint):
    assert video._smaller_file_hint(quality, preset) == hint
