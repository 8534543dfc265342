"""Which FFmpeg runs (FFMPEG_BINARY, then PATH, then imageio-ffmpeg's build), and how it is run:
progress, errors, timeouts, and stopping it with its children however the job ends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import imageio_ffmpeg
import pytest
from django.core.exceptions import ImproperlyConfigured
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from apps.processors import ffmpeg
from apps.processors.exceptions import OperationStopped
from tests.processors.processes import descendants, ffmpeg_processes_under, is_alive, wait_until


@pytest.fixture(autouse=True)
def fresh_resolution():
    ffmpeg._resolve.cache_clear()
    yield
    ffmpeg._resolve.cache_clear()


def fake_ffmpeg(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "ffmpeg"
    binary.write_text("#!/bin/sh\necho fake\n")
    binary.chmod(0o755)
    return binary


def test_configured_binary_wins(settings, tmp_path, monkeypatch):
    configured = fake_ffmpeg(tmp_path / "configured")
    monkeypatch.setenv("PATH", str(fake_ffmpeg(tmp_path / "on-path").parent))
    settings.FFMPEG_BINARY = str(configured)

    assert ffmpeg.resolve_ffmpeg_binary() == str(configured.resolve())


def test_a_configured_binary_that_does_not_exist_is_a_clear_error(settings):
    settings.FFMPEG_BINARY = "/nowhere/ffmpeg"
    with pytest.raises(ImproperlyConfigured, match="FFMPEG_BINARY"):
        ffmpeg.resolve_ffmpeg_binary()


def test_path_comes_before_the_bundled_build(settings, tmp_path, monkeypatch):
    settings.FFMPEG_BINARY = None
    on_path = fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(on_path.parent))

    assert ffmpeg.resolve_ffmpeg_binary() == str(on_path.resolve())


def test_bundled_build_is_used_when_nothing_else_is_there(settings, tmp_path, monkeypatch):
    settings.FFMPEG_BINARY = None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    binary = ffmpeg.resolve_ffmpeg_binary()

    assert binary == imageio_ffmpeg.get_ffmpeg_exe()
    version = subprocess.run([binary, "-hide_banner", "-version"], capture_output=True, text=True, check=True)
    assert "ffmpeg version" in version.stdout
    encoders = subprocess.run([binary, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True)
    for encoder in ("libx264", "libvpx-vp9", "aac", "libmp3lame", "libopus", "flac", "libvorbis"):
        assert encoder in encoders.stdout


# --- running FFmpeg -------------------------------------------------------------------------------
ENDLESS = [
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x240:rate=25",
    "-c:v",
    "libx264",
    "-preset",
    "veryslow",
    "-f",
    "null",
    "-",
]


class ProgressLog:
    """An on_progress callback that remembers what it saw and which FFmpeg was running."""

    def __init__(self, *, stop_after: int | None = None) -> None:
        self.values: list[float | None] = []
        self.ffmpeg_pids: set[int] = set()
        self.stop_after = stop_after

    def __call__(self, percent: float | None) -> bool:
        self.values.append(percent)
        self.ffmpeg_pids.update(ffmpeg_processes_under(os.getpid()))
        return self.stop_after is None or len(self.values) < self.stop_after


def test_progress_comes_from_out_time_over_the_duration_and_ends_at_100(media, tmp_path):
    source = media.video(duration=2)
    log = ProgressLog()

    ffmpeg.run_ffmpeg(
        [
            *ffmpeg.input_args(source, demuxer="mov"),
            "-c:v",
            "libx264",
            "-preset",
            "slow",
            "-f",
            "mp4",
            "-y",
            str(tmp_path / "o.mp4"),
        ],
        duration=2.0,
        timeout=60,
        on_progress=log,
    )

    reported = [value for value in log.values if value is not None]
    assert reported[-1] == 100
    assert all(0 <= value <= 100 for value in reported)
    assert reported == sorted(reported)
    assert (tmp_path / "o.mp4").stat().st_size > 0


@pytest.mark.parametrize(
    ("update", "duration", "percent"),
    [
        ({"out_time_us": "1000000", "progress": "continue"}, 4.0, 25.0),
        ({"out_time_us": "N/A", "progress": "continue"}, 4.0, None),
        ({"out_time_us": "9000000", "progress": "continue"}, 4.0, 100.0),
        ({"out_time_us": "1000000", "progress": "continue"}, None, None),
        ({"out_time_us": "N/A", "progress": "end"}, None, 100.0),
    ],
)
def test_percent_is_parsed_from_progress_reports(update, duration, percent):
    assert ffmpeg._percent(update, duration) == percent


def test_a_failing_ffmpeg_raises_a_permanent_error_with_a_readable_message_and_its_stderr(media, tmp_path):
    with pytest.raises(ffmpeg.FFmpegError) as caught:
        ffmpeg.run_ffmpeg(
            [*ffmpeg.input_args(media.text(extension="mp4"), demuxer="mov"), "-f", "null", "-"], duration=1, timeout=30
        )

    error = caught.value
    assert error.permanent is True
    assert error.returncode != 0
    assert error.user_message == "The file could not be read. It may be damaged, incomplete or not what its name says."
    assert "Invalid data found when processing input" in error.stderr_tail


def test_the_result_carries_the_whole_command_ffmpeg_ran(media, tmp_path):
    args = [*ffmpeg.input_args(media.audio(duration=1), demuxer="wav"), "-c:a", "flac", "-f", "flac", "-y"]
    args.append(str(tmp_path / "o.flac"))

    result = ffmpeg.run_ffmpeg(args, duration=1.0, timeout=60)

    assert result.command[0] == ffmpeg.resolve_ffmpeg_binary()
    assert result.command[-len(args) :] == tuple(args)
    progress = result.command.index("-progress")
    assert result.command[progress + 1] == "pipe:1"
    # Run again as it reads, it does the same work.
    (tmp_path / "o.flac").unlink()
    subprocess.run(result.command, check=True, capture_output=True, timeout=60)
    assert (tmp_path / "o.flac").stat().st_size > 0


def test_the_stderr_tail_is_bounded(media):
    # ashowinfo logs a line per audio frame: far more than the tail keeps.
    args = ["-loglevel", "info", "-f", "lavfi", "-i", "sine=duration=3", "-af", "ashowinfo", "-f", "null", "-"]

    result = ffmpeg.run_ffmpeg(args, duration=3, timeout=30)

    assert len(result.stderr_tail.splitlines()) == ffmpeg.STDERR_TAIL_LINES


def test_a_run_past_its_timeout_is_stopped_with_its_process(tmp_path):
    log = ProgressLog()

    with pytest.raises(ffmpeg.FFmpegTimeout):
        ffmpeg.run_ffmpeg(ENDLESS, duration=None, timeout=1.5, on_progress=log)

    assert log.ffmpeg_pids
    assert not any(is_alive(pid) for pid in log.ffmpeg_pids)


def test_a_stop_request_stops_ffmpeg_even_while_it_reports_nothing():
    # Progress only every minute: the callback still runs on every poll, with None.
    log = ProgressLog(stop_after=2)

    with pytest.raises(OperationStopped):
        ffmpeg.run_ffmpeg(["-stats_period", "60", *ENDLESS], duration=None, timeout=60, on_progress=log)

    assert log.values == [None] * 2
    assert log.ffmpeg_pids
    assert not any(is_alive(pid) for pid in log.ffmpeg_pids)


def test_rqs_job_timeout_raised_into_the_job_stops_ffmpeg():
    log = ProgressLog()

    with pytest.raises(JobTimeoutException), UnixSignalDeathPenalty(1, JobTimeoutException):
        ffmpeg.run_ffmpeg(ENDLESS, duration=None, timeout=60, on_progress=log)

    assert log.ffmpeg_pids
    assert not any(is_alive(pid) for pid in log.ffmpeg_pids)


def test_stopping_a_process_stops_its_children_too():
    process = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"], **ffmpeg.process_group_options())
    assert wait_until(lambda: len(descendants(process.pid)) == 2, timeout=10)
    children = descendants(process.pid)

    ffmpeg.stop_process(process)

    assert process.returncode is not None
    assert wait_until(lambda: not any(is_alive(pid) for pid in children), timeout=5)


def test_ffmpeg_dies_with_the_process_that_started_it_when_that_is_killed():
    # A work-horse SIGKILLed mid-job (RQ's cold shutdown, the OOM killer) runs no Python cleanup.
    script = (
        "import django; django.setup()\n"
        "from apps.processors import ffmpeg\n"
        f"ffmpeg.run_ffmpeg({ENDLESS!r}, duration=None, timeout=120)\n"
    )
    horse = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
    )
    try:
        started = wait_until(lambda: ffmpeg_processes_under(horse.pid), timeout=30)
        assert started

        horse.kill()
        horse.wait()

        assert wait_until(lambda: not any(is_alive(pid) for pid in started), timeout=10)
    finally:
        if horse.poll() is None:
            horse.kill()


# --- the stall watchdog ---------------------------------------------------------------------------
@pytest.fixture
def starved_input(tmp_path):
    """A named pipe that gets one second of audio and is then held open without another byte:
    FFmpeg reading it stays alive and waits forever, as on a stuck disk or a hung decoder."""
    fifo = tmp_path / "input.pcm"
    os.mkfifo(fifo)
    release = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(b"\0" * 8000 * 2)  # 1 s of 8 kHz mono s16le
            pipe.flush()
            release.wait(60)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield ["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", str(fifo)]
    release.set()
    feeder.join(timeout=5)


def test_an_ffmpeg_whose_output_stops_advancing_is_stopped_as_stalled(starved_input, tmp_path):
    log = ProgressLog()

    with pytest.raises(ffmpeg.FFmpegStalled) as raised:
        ffmpeg.run_ffmpeg(
            [*starved_input, "-c:a", "pcm_s16le", "-f", "wav", "-y", str(tmp_path / "out.wav")],
            duration=10,
            timeout=60,
            stall_timeout=1.5,
            on_progress=log,
        )

    assert raised.value.user_message == "Processing stalled: the encoder stopped making progress."
    assert raised.value.permanent is False  # retried, within RQ's retries
    assert log.ffmpeg_pids
    assert not any(is_alive(pid) for pid in log.ffmpeg_pids)


def test_the_stall_timeout_defaults_to_the_setting(starved_input, tmp_path, settings):
    settings.STALL_TIMEOUT_SECONDS = 1

    with pytest.raises(ffmpeg.FFmpegStalled):
        ffmpeg.run_ffmpeg([*starved_input, "-f", "null", "-"], duration=10, timeout=60)


def test_a_slow_but_advancing_encode_is_never_taken_for_stalled(tmp_path):
    # -re: read in real time, so the output advances at one second per second, in small steps.
    args = ["-re", "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-f", "wav", "-y", str(tmp_path / "out.wav")]

    result = ffmpeg.run_ffmpeg(args, duration=3, timeout=60, stall_timeout=1.5)

    assert result.elapsed_seconds > 1.5  # longer than the stall timeout, and not stopped
    assert (tmp_path / "out.wav").stat().st_size > 3 * 44100
