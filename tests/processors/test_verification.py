"""The final check of a stream copy (a fast trim): read from the output's headers, not decoded, and
still refusing an output that is empty, unreadable, of the wrong length, missing its video or
opening between keyframes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apps.processors.contract import ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.formats import MediaType
from apps.processors.probe import MediaInfo, probe_media
from apps.processors.verification import verify_output


def _ffmpeg(*args: str) -> None:
    command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(command, check=True, timeout=120)


@pytest.fixture
def source(media) -> Path:
    """Two seconds with a keyframe every half second."""
    path = media.directory / "keyframed-half-second.mp4"
    if not path.exists():
        _ffmpeg(
            *["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"],
            *["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-ac", "2"],
            *["-c:v", "libx264", "-preset", "ultrafast", "-g", "12", "-keyint_min", "12", "-sc_threshold", "0"],
            *["-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        )
    return path


def copied(source: Path, destination: Path, *seek: str, length: float = 1.0) -> Path:
    """What a fast trim writes: the streams copied as they are."""
    _ffmpeg(
        *seek, "-i", str(source), "-t", str(length), "-c", "copy", "-avoid_negative_ts", "make_zero", str(destination)
    )
    return destination


def copy_result(path: Path, *, expected_duration: float = 1.0, expect_audio: bool = True) -> ProcessingResult:
    return ProcessingResult(
        path=path,
        extension="mp4",
        media_type=MediaType.VIDEO,
        expect_video=True,
        expect_audio=expect_audio,
        expected_duration=expected_duration,
        video_copied=True,
    )


def test_a_copied_clip_passes_with_its_input_pixel_format(source, tmp_path):
    clip = copied(source, tmp_path / "clip.mp4", "-ss", "0.5")

    output = verify_output(result=copy_result(clip), input_info=probe_media(source))

    assert isinstance(output, MediaInfo)
    assert output.duration == pytest.approx(1.0, abs=0.1)
    assert (output.video.codec, output.video.width, output.video.pixel_format) == ("h264", 320, "yuv420p")
    # The pixel format is the input's only when the input's is known: never made up.
    unknown = probe_media(source, decode_pictures=False)
    assert verify_output(result=copy_result(clip), input_info=unknown).video.pixel_format is None


def test_a_copied_clip_that_opens_between_keyframes_fails_the_check(source, tmp_path):
    # Cut after the seek without dropping what precedes the next keyframe.
    clip = tmp_path / "between.mp4"
    _ffmpeg("-i", str(source), "-ss", "0.2", "-t", "1", "-c", "copy", "-copyinkf", str(clip))

    with pytest.raises(ProcessingError, match=r"final check \(its video does not start on a keyframe\)"):
        verify_output(result=copy_result(clip), input_info=probe_media(source))


def test_a_copied_clip_of_the_wrong_length_fails_the_check(source, tmp_path):
    clip = copied(source, tmp_path / "clip.mp4")

    with pytest.raises(ProcessingError, match=r"lasts 1.0 s instead of 5.0 s"):
        verify_output(result=copy_result(clip, expected_duration=5.0), input_info=probe_media(source))


def test_a_copied_clip_without_its_video_fails_the_check(source, tmp_path):
    sound = tmp_path / "sound.mp4"
    _ffmpeg("-i", str(source), "-t", "1", "-vn", "-c", "copy", str(sound))

    with pytest.raises(ProcessingError, match=r"its video track is missing"):
        verify_output(result=copy_result(sound), input_info=probe_media(source))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: b"", "no output was written"),
        (lambda data: data[: len(data) // 2], "the file cannot be read back"),  # the index is at the end
        (lambda data: b"\x00" * len(data), "the file cannot be read back"),
    ],
)
def test_a_broken_copied_clip_fails_the_check(source, tmp_path, damage, reason):
    clip = copied(source, tmp_path / "clip.mp4")
    clip.write_bytes(damage(clip.read_bytes()))

    with pytest.raises(ProcessingError, match=rf"final check \({reason}\)"):
        verify_output(result=copy_result(clip), input_info=probe_media(source))
