"""Case "operations": the operations of issue 16 (trim, thumbnail, GIF, loudness, compress to a
size) processed as the worker processes them, against the FFmpeg commands a person would write by
hand for the same result on the same file; and how close compressing to a size lands.

The hand-written side is what a tutorial would give: an input seek and a re-encode (or ``-c copy``)
for a trim; the ``thumbnail`` filter alone (Konvrt also drops dark and blank frames); the usual
``split``/``palettegen``/``paletteuse`` one-liner for a GIF; loudnorm's two passes with the
measured values copied into the second; x264's two passes at the bitrate the target allows.
Konvrt's side includes everything the worker does around FFmpeg, and its own extra runs (the
loudness is measured once more to verify it; a target size may get a corrective pass).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import Bench
from bench.harness import SERVICE_SHARE, Result, Sample, interleave, report_service_share
from bench.warm import WarmProcess

# Konvrt's target for a one-pass operation against its hand-written command, and for a two-pass
# target size against a single quality-based pass (the issue's figures).
WALL_TARGET = 1.05
TWO_PASS_TARGET = 2.1

Baseline = Callable[[str, Path, Path], list[list[str]]]


@dataclass(frozen=True)
class OperationCase:
    name: str
    operation: str
    parameters: dict[str, Any]
    input_kind: str  # "video" or "wav"
    # (ffmpeg, input, output directory) → the commands typed by hand, run in order.
    baseline: Baseline


def _trim_accurate(ffmpeg: str, source: Path, out: Path) -> list[list[str]]:
    return [
        [ffmpeg, "-y", "-ss", "0.5", "-i", str(source), "-t", "1", "-c:v", "libx264", "-preset", "fast"]
        + ["-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(out / "trim.mp4")]
    ]


def _trim_copy(ffmpeg: str, source: Path, out: Path) -> list[list[str]]:
    return [[ffmpeg, "-y", "-i", str(source), "-t", "1", "-c", "copy", str(out / "copy.mp4")]]


def _thumbnail(ffmpeg: str, source: Path, out: Path) -> list[list[str]]:
    return [[ffmpeg, "-y", "-i", str(source), "-vf", "fps=2,thumbnail=100", "-frames:v", "1", str(out / "t.jpg")]]


def _gif(ffmpeg: str, source: Path, out: Path) -> list[list[str]]:
    graph = "fps=12,scale=480:-1:flags=lanczos,split[a][b];[a]palettegen[p];[b][p]paletteuse"
    return [[ffmpeg, "-y", "-t", "2", "-i", str(source), "-filter_complex", graph, "-loop", "0", str(out / "a.gif")]]


OPERATION_CASES = (
    OperationCase("video_trim accurate 1 s", "video_trim", {"start": 0.5, "duration": 1}, "video", _trim_accurate),
    OperationCase("video_trim copy", "video_trim", {"duration": 1, "accurate": False}, "video", _trim_copy),
    OperationCase("video_thumbnail automatic", "video_thumbnail", {}, "video", _thumbnail),
    OperationCase("video_to_gif 2 s", "video_to_gif", {"duration": 2}, "video", _gif),
)


def _input(bench: Bench, kind: str) -> Path:
    return bench.media.video() if kind == "video" else bench.media.audio(kind)


def _konvrt(warm: WarmProcess, operation: str, source: Path, parameters: dict[str, Any]) -> tuple[Sample, dict]:
    run = warm.call("bench.inside.run_operation", operation=operation, input_path=str(source), parameters=parameters)
    sample = Sample(wall=run["wall"], cpu=run["cpu"], peak_rss_mb=run["own_rss_mb"] + run["ffmpeg_rss_mb"])
    sample.extra[SERVICE_SHARE] = run[SERVICE_SHARE]
    return sample, run


def _commands(commands: list[list[str]]) -> tuple[Sample, list[str]]:
    """Run commands one after the other: summed wall and CPU, the largest RSS, each one's stderr."""
    total = Sample(wall=0.0)
    logs = []
    for command in commands:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        _, status, usage = os.wait4(process.pid, 0)
        if process.stderr:
            process.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{command} failed: {stderr[-2000:]}")
        total.wall += time.perf_counter() - started
        total.cpu += usage.ru_utime + usage.ru_stime
        total.peak_rss_mb = max(total.peak_rss_mb, usage.ru_maxrss / 1024)
        logs.append(stderr)
    return total, logs


def run_operations(bench: Bench) -> list[Result]:
    """Each new operation against its hand-written command(s), then loudness and target size."""
    from apps.processors.ffmpeg import resolve_ffmpeg_binary

    ffmpeg = resolve_ffmpeg_binary()
    results = []
    with bench.warm() as warm:
        for case in OPERATION_CASES:
            source = _input(bench, case.input_kind)
            commands = case.baseline(ffmpeg, source, bench.output_dir())
            ours, theirs = interleave(
                lambda case=case, source=source: _konvrt(warm, case.operation, source, case.parameters)[0],
                lambda commands=commands: _commands(commands)[0],
                repeats=bench.repeats,
                warmup=bench.warmup,
            )
            result = Result(case=case.name, konvrt=ours, baseline=theirs)
            result.at_most(f"wall ratio ≤ {WALL_TARGET}", result.ratio("wall"), WALL_TARGET)
            result.report("CPU ratio", result.ratio("cpu"))
            report_service_share(result)
            results.append(result)
            bench.clean_outputs()
        results.append(_trim_copy_long(bench, warm, ffmpeg))
        results.append(_loudness(bench, warm, ffmpeg))
        results.append(_target_size_speed(bench, warm, ffmpeg))
        results.append(_target_size_accuracy(bench, warm))
    return results


# The long source of the second stream-copy case: the bench's 1080p clip, copied end to end this
# many times (a keyframe at the start of each copy).
LONG_SOURCE_LOOPS = 10


def _long_video(bench: Bench) -> tuple[Path, float]:
    """(the bench clip looped ``LONG_SOURCE_LOOPS`` times without re-encoding, the clip's length)."""
    from apps.processors.ffmpeg import resolve_ffmpeg_binary

    clip = bench.media.video()
    seconds = bench.media.sizes.video[2]
    path = bench.media.directory / f"long-{LONG_SOURCE_LOOPS}x-{clip.name}"
    if not path.exists():
        partial = path.with_name(f"partial-{path.name}")
        command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
        command += [
            "-stream_loop",
            str(LONG_SOURCE_LOOPS - 1),
            "-i",
            str(clip),
            "-c",
            "copy",
            "-f",
            "mp4",
            str(partial),
        ]
        subprocess.run(command, check=True, timeout=600)
        partial.rename(path)
    return path, seconds


def _trim_copy_long(bench: Bench, warm: WarmProcess, ffmpeg: str) -> Result:
    """A stream-copy trim where the copy itself is most of the work: most of a longer 1080p source,
    from just past its second keyframe (so the keyframe search has one to find)."""
    source, clip_seconds = _long_video(bench)
    start, duration = clip_seconds + 0.5, (LONG_SOURCE_LOOPS - 4) * clip_seconds
    parameters = {"start": start, "duration": duration, "accurate": False}
    by_hand = [[ffmpeg, "-y", "-ss", f"{start:g}", "-i", str(source), "-t", f"{duration:g}", "-c", "copy"]]
    by_hand[0].append(str(bench.output_dir() / "long-copy.mp4"))
    ours, theirs = interleave(
        lambda: _konvrt(warm, "video_trim", source, parameters)[0],
        lambda: _commands(by_hand)[0],
        repeats=bench.repeats,
        warmup=bench.warmup,
    )
    mb = source.stat().st_size / 1_000_000
    result = Result(case=f"video_trim copy {duration:g} s of {mb:.0f} MB", konvrt=ours, baseline=theirs)
    result.at_most(f"wall ratio ≤ {WALL_TARGET}", result.ratio("wall"), WALL_TARGET)
    result.report("CPU ratio", result.ratio("cpu"))
    report_service_share(result)
    bench.clean_outputs()
    return result


def _loudness(bench: Bench, warm: WarmProcess, ffmpeg: str) -> Result:
    """audio_normalize (measure, apply, verify) against loudnorm's two passes by hand."""
    source = bench.media.audio("wav")
    out = bench.output_dir()

    def by_hand() -> Sample:
        measure = [ffmpeg, "-i", str(source), "-af", "loudnorm=I=-16:TP=-1.5:print_format=json", "-f", "null", "-"]
        first, logs = _commands([measure])
        report = logs[0][logs[0].rindex("{") : logs[0].rindex("}") + 1]
        measured = json.loads(report)
        values = ":".join(
            f"{name}={min(0.0, float(measured[key])) if name in ('measured_I', 'measured_thresh') else measured[key]}"
            for name, key in (
                ("measured_I", "input_i"),
                ("measured_TP", "input_tp"),
                ("measured_LRA", "input_lra"),
                ("measured_thresh", "input_thresh"),
                ("offset", "target_offset"),
            )
        )
        apply = [ffmpeg, "-y", "-i", str(source), "-af", f"loudnorm=I=-16:TP=-1.5:{values}:linear=true"]
        second, _ = _commands([apply + ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "192k", str(out / "n.mp3")]])
        return Sample(wall=first.wall + second.wall, cpu=first.cpu + second.cpu, peak_rss_mb=second.peak_rss_mb)

    ours, theirs = interleave(
        lambda: _konvrt(warm, "audio_normalize", source, {})[0], by_hand, repeats=bench.repeats, warmup=bench.warmup
    )
    result = Result(case="audio_normalize (2 passes + check)", konvrt=ours, baseline=theirs)
    result.report("wall ratio (Konvrt also measures its output)", result.ratio("wall"))
    result.report("CPU ratio", result.ratio("cpu"))
    report_service_share(result)
    bench.clean_outputs()
    return result


def _target_size_speed(bench: Bench, warm: WarmProcess, ffmpeg: str) -> Result:
    """video_compress to a size (two passes) against one quality-based pass by hand."""
    source = bench.media.video()
    size = source.stat().st_size
    target_mb = round(size * 0.4 / 1_000_000, 2)
    single = [
        [ffmpeg, "-y", "-i", str(source), "-c:v", "libx264", "-preset", "medium", "-crf", "23"]
        + ["-pix_fmt", "yuv420p", "-c:a", "copy", "-movflags", "+faststart", str(bench.output_dir() / "one.mp4")]
    ]
    ours, theirs = interleave(
        lambda: _konvrt(warm, "video_compress", source, {"target_size_mb": target_mb})[0],
        lambda: _commands(single)[0],
        repeats=bench.repeats,
        warmup=bench.warmup,
    )
    result = Result(case=f"video_compress to {target_mb:g} MB vs one pass", konvrt=ours, baseline=theirs)
    result.at_most(f"wall ratio ≤ {TWO_PASS_TARGET} (two passes)", result.ratio("wall"), TWO_PASS_TARGET)
    result.report("CPU ratio", result.ratio("cpu"))
    report_service_share(result)
    bench.clean_outputs()
    return result


# Sources for the accuracy figure: grain (hard to compress), a fractal zoom (smooth motion, fine
# detail) and a cellular automaton (sharp edges changing everywhere), each kept near-lossless so
# that every target is well under the source.
ACCURACY_SOURCES = {
    "grain": "testsrc2=size=640x360:rate=25,noise=alls=20:allf=t",
    "fractal": "mandelbrot=size=640x360:rate=25",
    "automaton": "life=size=640x360:rate=25:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00",
}
# Average bitrates (video and audio) the targets stand for, whatever the sources' length.
ACCURACY_BITRATES = (500_000, 1_000_000, 2_000_000)


def _accuracy_source(bench: Bench, name: str, seconds: float) -> Path:
    from apps.processors.ffmpeg import resolve_ffmpeg_binary

    path = bench.media.directory / f"accuracy-{name}-{seconds:g}s.mp4"
    if not path.exists():
        partial = path.with_name(f"partial-{path.name}")
        command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
        command += ["-f", "lavfi", "-i", ACCURACY_SOURCES[name], "-f", "lavfi", "-i", "sine=frequency=440:r=48000"]
        command += ["-t", f"{seconds:g}", "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12"]
        command += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "mp4", str(partial)]
        subprocess.run(command, check=True, timeout=600)
        partial.rename(path)
    return path


def _target_size_accuracy(bench: Bench, warm: WarmProcess) -> Result:
    """Achieved size / target over sources and targets: min, median, max (band 0.85-1.0)."""
    seconds = 2.0 if bench.smoke else 10.0
    ratios: list[float] = []
    samples: list[Sample] = []
    skipped: list[str] = []
    for name in ACCURACY_SOURCES:
        source = _accuracy_source(bench, name, seconds)
        for bitrate in ACCURACY_BITRATES:
            target_mb = round(bitrate * seconds / 8 / 1_000_000, 2)
            parameters = {"target_size_mb": target_mb, "preset": "veryfast"}
            try:
                sample, run = _konvrt(warm, "video_compress", source, parameters)
            except RuntimeError as e:
                if "too small" not in str(e):
                    raise
                skipped.append(f"{target_mb:g} MB for {name} (refused as too small)")
                continue
            ratios.append(run["details"]["size_ratio"])
            samples.append(sample)
    bench.clean_outputs()
    result = Result(case="target size: achieved / target", konvrt=samples, baseline=[])
    result.at_least("min ratio ≥ 0.85", min(ratios, default=float("nan")), 0.85)
    result.report("median ratio", statistics.median(ratios) if ratios else float("nan"))
    result.at_most("max ratio ≤ 1.0", max(ratios, default=float("nan")), 1.0)
    result.notes.append(
        f"{len(ratios)} encodes, {seconds:g} s 640×360 sources ({', '.join(ACCURACY_SOURCES)}) at "
        f"{', '.join(f'{b // 1000} kb/s' for b in ACCURACY_BITRATES)}: " + ", ".join(f"{ratio:.3f}" for ratio in ratios)
    )
    if skipped:
        result.notes.append("skipped: " + "; ".join(skipped))
    return result
