"""The in-process stream copy of a fast trim (``apps/processors/remux.py``): the packets FFmpeg's
``-c copy`` command wrote, from the keyframe at or before ``start``, with the audio in step, for
MP4, MOV and WebM (with and without cues); progress, a cancel and a broken input behave as they
do for an FFmpeg run; other containers still go through the command."""

from __future__ import annotations

import array
import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest

from apps.processors.contract import ProcessingContext
from apps.processors.exceptions import FFmpegTimeout, OperationStopped, ProcessingError
from apps.processors.ffmpeg import input_args, resolve_ffmpeg_binary, run_ffmpeg
from apps.processors.probe import keyframe_at_or_before, probe_media
from apps.processors.remux import copy_span
from apps.processors.trim import SEEK_EPSILON, trim_video
from apps.processors.video import container_args, map_streams
from tests.processors.conftest import assert_completed, assert_failed_keeping_input
from tests.processors.test_stages import context_for

FRAME = 1 / 25


def _ffmpeg(*args: str) -> None:
    command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(command, check=True, timeout=120)


def beeping_video(media, *, extension: str = "mp4", seconds: int = 6) -> Path:
    """Black video with one white frame at the start of every second and a 40 ms 1 kHz beep at the
    same moments; a keyframe every second; H.264 with B-frames and AAC (VP9 + Opus for WebM); MP4
    rotated by 90° (the display matrix a phone writes)."""
    path = media.directory / f"beeping-{seconds}.{extension}"
    if path.exists():
        return path
    flash = "drawbox=color=white:t=fill:enable='lt(mod(t,1),0.04)'"
    beep = "aevalsrc='if(lt(mod(t,1),0.04),0.8*sin(2*PI*1000*t),0)':s=48000:c=stereo"
    if extension == "webm":
        codecs = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"]
    else:
        codecs = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    _ffmpeg(
        *["-f", "lavfi", "-i", f"color=black:size=160x120:rate=25:duration={seconds},{flash}"],
        *["-f", "lavfi", "-i", f"{beep},atrim=0:{seconds}"],
        *codecs,
        *["-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-t", str(seconds)],
        *(["-metadata:s:v", "rotate=90"] if extension == "mp4" else []),
        str(path),
    )
    if extension == "mp4":
        rotated = path.with_name(f"rotated-{path.name}")
        _ffmpeg("-display_rotation", "90", "-i", str(path), "-c", "copy", str(rotated))
        rotated.replace(path)
    return path


def webm_without_cues(media) -> Path:
    """The beeping WebM written to a pipe: no cues (no index) for a seek to use, no duration."""
    path = media.directory / "beeping-nocues.webm"
    if not path.exists():
        command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin"]
        command += ["-i", str(beeping_video(media, extension="webm")), "-c", "copy", "-f", "webm", "pipe:1"]
        path.write_bytes(subprocess.run(command, check=True, capture_output=True, timeout=60).stdout)
        assert b"\x1c\x53\xbb\x6b" not in path.read_bytes()  # the Cues element's ID
    return path


def _context(source: Path, parameters: dict[str, Any], workspace: Path, report=None, *, extension=None):
    return context_for("video_trim", source, parameters, workspace, report, extension=extension)


def _by_command(context: ProcessingContext, start: float, end: float, output_format: str) -> tuple[Path, float]:
    """What the trim ran before the copy moved in process, FFmpeg's ``-c copy`` command: (its
    output, the keyframe it started from)."""
    keyframe = keyframe_at_or_before(
        context.input_path, format_name=context.demuxer, stream_index=context.video_stream.index, seconds=start
    )
    seek = keyframe + SEEK_EPSILON if keyframe > 0 else 0.0
    output = context.workspace / f"command.{output_format}"
    args = [
        *(["-ss", f"{seek:.3f}"] if seek > 0 else []),
        *input_args(context.input_path, demuxer=context.demuxer),
        *["-t", f"{end - keyframe:.3f}"],
        *map_streams(video=context.video_stream, audio=context.media.audio),
        *["-c", "copy", "-avoid_negative_ts", "make_zero"],
        *container_args(output_format, output),
    ]
    run_ffmpeg(args, duration=end - keyframe, timeout=60)
    return output, keyframe


def _packets(path: Path) -> dict[str, list[tuple]]:
    """Each stream's packets: (payload, keyframe flag), and (pts, dts) in seconds."""
    with av.open(str(path)) as container:
        found: dict[str, list[tuple]] = {"video": [], "audio": []}
        for packet in container.demux():
            if packet.size:
                times = (float(packet.pts * packet.time_base), float(packet.dts * packet.time_base))
                found[packet.stream.type].append(((bytes(packet), packet.is_keyframe), times))
        return found


def assert_same_packets(ours: dict[str, list[tuple]], theirs: dict[str, list[tuple]]) -> None:
    for kind in ("video", "audio"):
        assert [content for content, _ in ours[kind]] == [content for content, _ in theirs[kind]], kind
        # The command's timestamps go through FFmpeg's microsecond clock on their way: they may
        # differ from ours by a rounding (a tick of the stream's time base), never by a frame.
        for (_, (pts, dts)), (_, (their_pts, their_dts)) in zip(ours[kind], theirs[kind], strict=True):
            assert (pts, dts) == pytest.approx((their_pts, their_dts), abs=0.001), kind


def _rotation(path: Path) -> str:
    result = subprocess.run(
        [resolve_ffmpeg_binary(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=30
    )
    return next((line.strip() for line in result.stderr.splitlines() if "rotation" in line), "")


def _flashes_and_beeps(path: Path) -> tuple[list[float], list[float]]:
    """When (s, as a player shows them) the white frames and the beeps start in ``path``."""
    flashes: list[float] = []
    beeps: list[float] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            gray = bytes(frame.reformat(format="gray", width=16, height=12).planes[0])
            if sum(gray) / len(gray) > 128 and (not flashes or frame.time - flashes[-1] > 0.5):
                flashes.append(frame.time)
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono")
        for frame in container.decode(audio=0):
            for mono in resampler.resample(frame):
                samples = array.array("h", bytes(mono.planes[0])[: mono.samples * 2])
                loud = next((i for i, sample in enumerate(samples) if abs(sample) > 8000), None)
                at = None if loud is None else mono.time + loud / mono.sample_rate
                if at is not None and (not beeps or at - beeps[-1] > 0.5):
                    beeps.append(at)
    return flashes, beeps


def mp4_with_an_edit_list(media) -> Path:
    """The beeping MP4 cut from 1.5 s by a copy that keeps the GOP from its keyframe at 1 s: an
    edit list hides the first half second of pictures (what a phone's or editor's trim writes)."""
    path = media.directory / "beeping-edit-list.mp4"
    if not path.exists():
        _ffmpeg("-ss", "1.5", "-i", str(beeping_video(media)), "-c", "copy", str(path))
    return path


INPUTS = {
    "mp4": lambda media: beeping_video(media),
    "mp4 with an edit list": lambda media: mp4_with_an_edit_list(media),
    "mov": lambda media: beeping_video(media, extension="mov"),
    "webm": lambda media: beeping_video(media, extension="webm"),
    "webm without cues": lambda media: webm_without_cues(media),
    # Matroska's H.264 and AAC into an MP4: another container's codec tags, the muxer's own.
    "mkv": lambda media: beeping_video(media, extension="mkv"),
}


# Not the MKV: there the command's copy started a whole GOP (1 s) before the keyframe its own
# search reported as ``start_keyframe``, and it cut the end by decoding times it derived where
# Matroska gives an H.264 packet none. The copy starts at the keyframe it reports (checked below
# with the other inputs) and cuts by presentation time where a packet has no decoding time.
@pytest.mark.parametrize("kind", [kind for kind in INPUTS if kind != "mkv"])
@pytest.mark.parametrize(("start", "end"), [(2.5, 4.2), (0.0, 1.5), (3.0, 6.0)])
def test_the_copy_writes_the_packets_ffmpegs_copy_command_wrote(media, tmp_path, kind, start, end):
    source = INPUTS[kind](media)
    context = _context(source, {"start": start, "end": end, "accurate": False}, tmp_path)

    result = trim_video(context)

    assert context.ffmpeg_runs == []  # in process: no FFmpeg program was started
    output_format = "webm" if kind.startswith("webm") else "mov" if kind == "mov" else "mp4"
    assert result.path.suffix == f".{output_format}"
    command, keyframe = _by_command(context, start, min(end, context.media.duration or end), output_format)
    ours, theirs = _packets(result.path), _packets(command)
    assert len(ours["video"]) > 10 and len(ours["audio"]) > 10
    assert_same_packets(ours, theirs)
    assert _rotation(result.path) == _rotation(command)
    if kind == "mp4":
        assert "rotation of 90.00 degrees" in _rotation(result.path)
    assert result.details["start_keyframe"] == round(keyframe, 3)
    if "edit list" not in kind:  # a keyframe every second
        assert result.details["start_keyframe"] == float(int(start))
    assert (result.details["stream_copied"], result.details["audio_copied"]) == (True, True)


@pytest.mark.parametrize("kind", INPUTS)
def test_a_copy_starts_at_zero_on_its_keyframe_and_keeps_sound_and_picture_together(media, tmp_path, kind):
    source = INPUTS[kind](media)
    context = _context(source, {"start": 2.5, "duration": 2, "accurate": False}, tmp_path)

    result = trim_video(context)

    keyframe = result.details["start_keyframe"]
    assert keyframe == round(keyframe_at_or_before(source, format_name=context.demuxer, stream_index=0, seconds=2.5), 3)
    info = probe_media(result.path)
    # From the keyframe to 4.5 s; cut by decoding time as FFmpeg's command cuts, so a stream
    # with B-frames shows up to its reordering delay (here 2 frames) more.
    assert 4.5 - keyframe - FRAME <= info.duration <= 4.5 - keyframe + 5 * FRAME
    with av.open(str(result.path)) as container:
        first = next(packet for packet in container.demux(video=0) if packet.size)
        assert first.is_keyframe
        starts = [stream.start_time * stream.time_base for stream in container.streams]
        assert min(starts) == 0  # -avoid_negative_ts make_zero
    flashes, beeps = _flashes_and_beeps(result.path)
    # Each flash (one a second) with its beep.
    assert len(flashes) >= 2 and len(beeps) == len(flashes)
    assert flashes == pytest.approx([flashes[0] + second for second in range(len(flashes))], abs=0.001)
    assert all(abs(beep - flash) <= FRAME for beep, flash in zip(beeps, flashes, strict=True))
    if "edit list" not in kind:
        # The flashes at 2, 3 and 4 s of the input, at 0, 1 and 2 s of the clip (H.264 with
        # B-frames shows its first picture after its reordering delay, 2 frames, with the sound
        # that went with it before).
        assert keyframe == 2.0
        assert len(flashes) == 3 and 0 <= flashes[0] <= 2 * FRAME + 0.001


def test_the_remux_refuses_a_container_it_does_not_copy(media, tmp_path):
    with pytest.raises(ValueError, match="mpegts input is copied by the FFmpeg command"):
        copy_span(
            input_path=media.video(),
            demuxer="mpegts",
            video_index=0,
            audio_index=None,
            output=tmp_path / "out.mp4",
            muxer="mp4",
            start=0,
            end=1,
            deadline=time.monotonic() + 10,
            on_progress=lambda percent: True,
        )


def test_a_transport_stream_is_still_copied_by_the_ffmpeg_command(media, tmp_path):
    source = tmp_path / "in.ts"
    _ffmpeg("-i", str(beeping_video(media)), "-c", "copy", str(source))
    context = _context(source, {"start": 2.5, "end": 4, "accurate": False}, tmp_path / "work")

    result = trim_video(context)

    assert len(context.ffmpeg_runs) == 1
    assert result.details["stream_copied"] is True
    assert result.path.suffix == ".mp4"


# --- through a worker: the final check and the failures ------------------------------------------
@pytest.mark.django_db
def test_a_fast_trim_of_a_mov_through_a_worker_stays_mov_and_passes_its_check(media, run_operation, output_path):
    operation = run_operation("video_trim", beeping_video(media, extension="mov"), {"start": 1.5, "accurate": False})

    assert_completed(operation)
    output = operation.files.get(file_type="output")
    assert (output.metadata["format"], output.metadata["start_keyframe"]) == ("mov", 1.0)
    assert (output.metadata["video_codec"], output.metadata["audio_codec"]) == ("h264", "aac")
    assert probe_media(output_path(operation)).video.duration == pytest.approx(5.0, abs=2 * FRAME)


@pytest.mark.django_db
def test_a_fast_trim_of_a_truncated_file_fails_with_a_clear_message(media, run_operation, storage_root, tmp_path):
    # The index up front (faststart) and the second half of the samples missing: the header reads
    # fine, the packets stop early.
    whole = tmp_path / "whole.mp4"
    _ffmpeg("-i", str(beeping_video(media)), "-c", "copy", "-movflags", "+faststart", str(whole))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    operation = run_operation("video_trim", truncated, {"start": 1, "accurate": False}, inspect=False)

    assert_failed_keeping_input(operation, storage_root, "failed its final check")


def test_a_silent_video_is_copied_without_an_audio_track(media, tmp_path):
    context = _context(media.video(duration=4, audio=False), {"start": 1, "accurate": False}, tmp_path)

    result = trim_video(context)

    info = probe_media(result.path)
    assert (info.video.codec, info.audio) == ("h264", None)
    assert (result.expect_audio, result.details["audio_copied"]) == (False, False)
    assert info.duration == pytest.approx(4 - result.details["start_keyframe"], abs=2 * FRAME)


def test_a_copy_that_would_pass_the_output_size_cap_is_refused(media, tmp_path, settings):
    settings.PROCESSING_MAX_OUTPUT_SIZE = 5_000
    context = _context(beeping_video(media), {"start": 0, "accurate": False}, tmp_path)

    with pytest.raises(ProcessingError, match="would be larger than"):
        trim_video(context)


def test_a_video_without_a_keyframe_where_its_index_says_fails_with_a_clear_message(media, tmp_path, monkeypatch):
    # Made real by the bound on what is read before the keyframe: none may be read here.
    monkeypatch.setattr("apps.processors.remux.MAX_PACKETS_BEFORE_KEYFRAME", 0)
    context = _context(beeping_video(media), {"start": 2.5, "accurate": False}, tmp_path)

    with pytest.raises(ProcessingError, match="no keyframe to start a copy from; try an accurate trim"):
        trim_video(context)


def test_a_copy_keeps_no_container_or_stream_tags(media, tmp_path):
    # As the command's -map_metadata -1: a phone's location, a title, a track's language and
    # handler name stay behind.
    tagged = tmp_path / "tagged.mov"
    _ffmpeg(
        *["-i", str(beeping_video(media, extension="mov")), "-c", "copy", "-metadata", "title=Private title"],
        *["-metadata", "location=+12.3456+045.6789/", "-metadata:s:a", "language=fra"],
        *["-metadata:s:v", "handler_name=Private handler", str(tagged)],
    )
    context = _context(tagged, {"start": 1.5, "accurate": False}, tmp_path / "work")

    result = trim_video(context)

    with av.open(str(result.path)) as container:
        assert not {"title", "location"} & set(container.metadata)
        assert all(stream.metadata.get("language", "und") == "und" for stream in container.streams)
    written = result.path.read_bytes()
    assert b"Private" not in written and b"12.3456" not in written


# --- progress, a cancel, the deadline and the stall watchdog, on an input that arrives slowly -----
@pytest.fixture
def trickled(media, tmp_path):
    """``trickled(hold_after=...)``: a named pipe fed with a 20 s faststart MP4 (index first, so it
    can be read from a pipe) 32 KB every 50 ms, as from a slow disk; with ``hold_after`` (a
    fraction), fed that far and then held open without another byte, as a stuck disk."""
    source = tmp_path / "faststart.mp4"
    _ffmpeg("-i", str(media.video(duration=20)), "-c", "copy", "-movflags", "+faststart", str(source))
    data = source.read_bytes()
    release = threading.Event()
    feeders = []

    def trickled(*, hold_after: float | None = None) -> Path:
        fifo = tmp_path / f"input-{len(feeders)}.mp4"
        os.mkfifo(fifo)
        stop_at = len(data) if hold_after is None else int(len(data) * hold_after)

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as pipe:
                for offset in range(0, stop_at, 32_768):
                    pipe.write(data[offset : min(offset + 32_768, stop_at)])
                    pipe.flush()
                    if release.wait(0.05):
                        return
                if hold_after is not None:
                    release.wait(60)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        feeders.append(feeder)
        return fifo

    yield trickled
    release.set()
    for feeder in feeders:
        feeder.join(timeout=5)


def _copy(source: Path, tmp_path: Path, *, deadline: float = 60, **options: Any):
    return copy_span(
        input_path=source,
        demuxer="mov",
        video_index=0,
        audio_index=1,
        output=tmp_path / "out.mp4",
        muxer="mp4",
        start=0.0,
        end=20.0,
        deadline=time.monotonic() + deadline,
        **{"on_progress": lambda percent: True, **options},
    )


def test_a_slow_copy_reports_rising_progress_to_its_end(trickled, tmp_path):
    seen: list[float] = []

    copied = _copy(trickled(), tmp_path, on_progress=lambda percent: (percent is None or seen.append(percent)) or True)

    assert copied.keyframe == 0.0
    assert len(seen) >= 2 and seen == sorted(seen)
    assert 0 < seen[0] < 100
    assert probe_media(tmp_path / "out.mp4").duration == pytest.approx(20, abs=0.1)


def test_a_copy_stops_when_the_operation_no_longer_wants_it(trickled, tmp_path):
    seen: list[float | None] = []

    def report(percent: float | None) -> bool:
        seen.append(percent)
        return percent is None  # cancelled once the copy is under way

    with pytest.raises(OperationStopped):
        _copy(trickled(), tmp_path, on_progress=report)

    # Stopped at once: the copy did not run on to its end first.
    assert seen[-1] is not None and 0 < seen[-1] < 90


def test_a_copy_past_its_deadline_is_stopped(trickled, tmp_path):
    with pytest.raises(FFmpegTimeout, match="time allowed"):
        _copy(trickled(), tmp_path, deadline=0.8)


def test_a_copy_whose_input_stops_arriving_is_stopped_as_stalled_to_be_tried_again(trickled, tmp_path):
    # Half the file, then a read that never returns: only the supervisor can notice.
    seen: list[float | None] = []
    started = time.monotonic()
    with pytest.raises(ProcessingError, match="stopped making progress") as raised:
        _copy(trickled(hold_after=0.5), tmp_path, stall_timeout=1.0, on_progress=lambda p: seen.append(p) or True)

    assert raised.value.permanent is False
    # It had been copying (the half that came), then nothing for a whole second.
    assert any(percent is not None and 0 < percent < 60 for percent in seen)
    assert 1.5 < time.monotonic() - started < 10


def test_an_hevc_mov_keeps_its_hvc1_sample_entry(media, tmp_path):
    # Apple's players play HEVC tagged hvc1 only; left to itself the muxer writes hev1.
    source = media.directory / "hvc1.mov"
    if not source.exists():
        _ffmpeg(
            *["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4"],
            *["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:log-level=error"],
            *["-tag:v", "hvc1", "-c:a", "aac", str(source)],
        )
    context = _context(source, {"start": 1.5, "accurate": False}, tmp_path)

    result = trim_video(context)

    assert result.details["start_keyframe"] == 1.0
    with av.open(str(result.path)) as container:
        assert container.streams.video[0].codec_context.codec_tag == "hvc1"
