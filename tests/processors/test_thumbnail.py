"""The automatic thumbnail's decoding: candidates from the frames other frames refer to, and every
frame decoded again when none of them would do."""

from __future__ import annotations

import subprocess
from pathlib import Path

from PIL import Image, ImageStat

from apps.processors import contract
from apps.processors.ffmpeg import resolve_ffmpeg_binary, run_ffmpeg
from apps.processors.registry import OPERATIONS
from tests.processors.test_stages import context_for


def _reference_frames_only(command: tuple[str, ...]) -> bool:
    before_input = command[: command.index("-i")]
    return any(before_input[i : i + 2] == ("-skip_frame", "noref") for i in range(len(before_input) - 1))


def _video(path: Path, source: str) -> Path:
    # x264's defaults: most frames are B-frames nothing refers to.
    command = [resolve_ffmpeg_binary(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", source]
    subprocess.run([*command, "-c:v", "libx264", "-preset", "ultrafast", "-bf", "3", str(path)], check=True)
    return path


def test_an_automatic_thumbnail_is_picked_among_reference_frames_only(tmp_path):
    source = _video(tmp_path / "pattern.mp4", "testsrc2=size=320x240:rate=25:duration=3")
    context = context_for("video_thumbnail", source, {}, tmp_path / "work", lambda percent: True)

    result = OPERATIONS["video_thumbnail"].load_processor()(context)

    assert [_reference_frames_only(run.command) for run in context.ffmpeg_runs] == [True]
    with Image.open(result.path) as image:
        assert image.size == (320, 240)
        assert ImageStat.Stat(image.convert("L")).stddev[0] > 30  # the test pattern


def test_when_no_candidate_will_do_every_frame_is_decoded_for_the_fallback(tmp_path, monkeypatch):
    source = _video(tmp_path / "black.mp4", "color=black:size=320x240:rate=25:duration=2")
    context = context_for("video_thumbnail", source, {}, tmp_path / "work", lambda percent: True)
    # Every run FFmpeg was asked for: the candidates' run ends in an error on builds where an image
    # encoder that never got a frame fails the run (7.x), so the context records only the fallback.
    attempted: list[list[str]] = []
    monkeypatch.setattr(
        contract, "run_ffmpeg", lambda args, **options: attempted.append(args) or run_ffmpeg(args, **options)
    )

    result = OPERATIONS["video_thumbnail"].load_processor()(context)

    assert [_reference_frames_only(tuple(args)) for args in attempted] == [True, False]
    assert "dark or blank" in result.details["notice"]
