"""Progress parsing against what the FFmpeg builds Konvrt supports really print on ``-progress``:
imageio-ffmpeg's bundled build and Debian 12's FFmpeg 5.1 (``apt-get install ffmpeg``).

Each build runs the kind of encode the slow tests use (x264 ``veryslow``, audio copied into MP4)
with the options ``run_ffmpeg`` gives it, and its report blocks are read by the runner's own reader
as they arrive. Debian's build is looked for as FFMPEG_BINARY, as ``ffmpeg`` on PATH and at
/usr/bin/ffmpeg. Where it is not installed (CI), its blocks come from a capture recorded with
``capture_progress`` below from Debian's 5.1.9-0+deb12u1 (``recorded/debian-ffmpeg-5.1-progress.txt``,
the arrival times rounded to 10 ms): the same checks then run on that record instead of a live run.
"""

from __future__ import annotations

import functools
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import pytest
from django.conf import settings

from apps.processors import ffmpeg

RECORDED_5_1 = Path(__file__).parent / "recorded" / "debian-ffmpeg-5.1-progress.txt"
CLIP_SECONDS = 10.0


@dataclass(frozen=True)
class Report:
    seconds: float  # since FFmpeg started, when the block's last line arrived
    block: dict[str, str]


def capture_progress(binary: str, source: Path, output: Path) -> list[Report]:
    """Run ``binary`` on ``source`` as ``run_ffmpeg`` runs it (``-nostats -progress pipe:1``) and
    return every report block it printed, read by ``ffmpeg._read_progress``, with its arrival time."""
    arguments = [
        *ffmpeg.input_args(source, demuxer="mov"),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-c:v",
        "libx264",
        "-preset",
        "veryslow",
        "-crf",
        "18",
        "-c:a",
        "copy",
        "-movflags",
        "+faststart",
        *ffmpeg.output_args(output, muxer="mp4"),
    ]
    command = ffmpeg.ffmpeg_command(arguments, binary=binary)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    updates: queue.SimpleQueue = queue.SimpleQueue()
    reader = threading.Thread(target=ffmpeg._read_progress, args=(process.stdout, updates), daemon=True)
    reader.start()
    reports = []
    while (update := updates.get(timeout=120)) is not ffmpeg._EOF:
        reports.append(Report(round(time.monotonic() - started, 2), update))
    assert process.wait(timeout=60) == 0
    return reports


def write_record(reports: list[Report], path: Path) -> None:
    """The format of ``RECORDED_5_1``: ``@<seconds>`` before each block's ``key=value`` lines."""
    path.write_text("".join(f"@{r.seconds}\n" + "".join(f"{k}={v}\n" for k, v in r.block.items()) for r in reports))


def read_record(path: Path) -> list[Report]:
    reports: list[Report] = []
    for chunk in path.read_text().split("@")[1:]:
        seconds, *lines = chunk.strip().splitlines()
        reports.append(Report(float(seconds), dict(line.partition("=")[::2] for line in lines)))
    return reports


def version_of(binary: str) -> str:
    first_line = subprocess.run([binary, "-version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    return first_line.split()[2]  # "ffmpeg version 5.1.9-0+deb12u1 Copyright ..."


@functools.cache
def debian_ffmpeg() -> str | None:
    for candidate in (settings.FFMPEG_BINARY, shutil.which("ffmpeg"), "/usr/bin/ffmpeg"):
        if candidate and (found := shutil.which(candidate)) and version_of(found).startswith("5.1"):
            return found
    return None


@pytest.fixture(scope="module", params=["bundled", "debian-5.1"])
def reports(request, media, tmp_path_factory) -> list[Report]:
    """One run per build, shared by this module's checks."""
    if request.param == "bundled":
        binary = imageio_ffmpeg.get_ffmpeg_exe()
    elif (binary := debian_ffmpeg()) is None:
        return read_record(RECORDED_5_1)  # Debian's ffmpeg is not installed here: its recorded run
    output = tmp_path_factory.mktemp("progress") / "out.mp4"
    return capture_progress(binary, media.video(duration=CLIP_SECONDS), output)


def percents(reports: list[Report]) -> list[float | None]:
    return [ffmpeg._percent(report.block, CLIP_SECONDS) for report in reports]


def test_every_report_is_a_whole_block_and_the_last_one_says_end(reports):
    assert [r.block["progress"] for r in reports] == ["continue"] * (len(reports) - 1) + ["end"]
    for report in reports:
        assert {"frame", "out_time_us", "total_size", "speed"} <= report.block.keys()
    assert percents(reports)[-1] == 100


def test_progress_rises_while_the_encode_runs_not_only_at_its_end(reports):
    during = [(r.seconds, p) for r, p in zip(reports[:-1], percents(reports[:-1]), strict=True) if p is not None]
    # Several reports of real progress, the first well before the encode ended.
    assert len([p for _, p in during if 1 <= p < 100]) >= 3, reports
    first_real = next(seconds for seconds, p in during if p >= 1)
    assert first_real < reports[-1].seconds / 2, reports
    # Not always rising, though: out_time runs ahead on the copied audio, and the bundled build
    # stops counting that stream once its last packet is written (a 10 s clip: 9.01 s, then 7.32 s,
    # then 9.64 s). The progress tracker keeps the highest percentage it was given.
    assert max(p for _, p in during) >= 50, reports


def test_a_report_without_out_time_is_no_percentage(reports):
    # The bundled build may print out_time_us=N/A in its last reports before the end (seen on a
    # 30 s clip) while frame still counts: such a report is no percentage, and the stall watchdog
    # still sees the output grow through total_size.
    for report, percent in zip(reports, percents(reports), strict=True):
        if report.block["out_time_us"] == "N/A" and report.block["progress"] == "continue":
            assert percent is None
            assert ffmpeg._output_position(report.block)[0] == -1


def test_the_output_position_advances_for_the_stall_watchdog(reports):
    positions = [ffmpeg._output_position(r.block) for r in reports]
    sizes = [size for _, size in positions]
    assert sizes == sorted(sizes)
    assert sizes[-1] > sizes[0]
    assert max(time for time, _ in positions) >= CLIP_SECONDS * 1_000_000 * 0.99


def test_the_record_of_debian_5_1_is_a_capture_of_that_build():
    recorded = read_record(RECORDED_5_1)
    assert len(recorded) >= 5 and recorded[-1].block["progress"] == "end"
    # Debian's 5.1 reports from the first encoded frame (out_time running ahead of the video on
    # the copied audio), every half second or a little later: never silent until the end.
    gaps = [b.seconds - a.seconds for a, b in zip(recorded, recorded[1:-1], strict=False)]
    assert all(0.45 <= gap <= 1.5 for gap in gaps), gaps
