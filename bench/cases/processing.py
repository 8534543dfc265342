"""Cases 1, 3 and the FFmpeg build comparison: an operation processed as the worker processes it
(the processing service: fetch, probe, the processor, verify, store) against the identical FFmpeg
command, and one FFmpeg build against another on the same commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import Bench
from bench.harness import KONVRT, SERVICE_SHARE, Result, Sample, interleave, measure_command, report_service_share
from bench.inside import by_hand
from bench.warm import WarmProcess


@dataclass(frozen=True)
class ProcessingCase:
    name: str
    operation: str
    parameters: dict[str, Any]
    input_kind: str  # "video", "wav", "mp3"
    # Whether Konvrt should copy the audio stream instead of re-encoding it.
    expect_copy: bool = False


VIDEO_CASES = (
    ProcessingCase("video_compress mp4", "video_compress", {}, "video"),
    ProcessingCase("video_convert mp4", "video_convert", {"output_format": "mp4"}, "video"),
    ProcessingCase("video_convert webm", "video_convert", {"output_format": "webm"}, "video"),
)
AUDIO_CASES = (
    ProcessingCase("audio_convert wav→mp3", "audio_convert", {"output_format": "mp3"}, "wav"),
    ProcessingCase("audio_convert wav→aac", "audio_convert", {"output_format": "aac"}, "wav"),
    ProcessingCase("audio_convert wav→ogg", "audio_convert", {"output_format": "ogg"}, "wav"),
    ProcessingCase("audio_convert wav→flac", "audio_convert", {"output_format": "flac"}, "wav"),
    ProcessingCase("audio_convert mp3 128k→mp3 192k (copy)", "audio_convert", {"output_format": "mp3"}, "mp3", True),
    ProcessingCase("audio_extract mp4→mp3", "audio_extract", {}, "video"),
    ProcessingCase("audio_extract mp4 aac→aac (copy)", "audio_extract", {"output_format": "aac"}, "video", True),
)


def _input(bench: Bench, kind: str) -> Path:
    return bench.media.video() if kind == "video" else bench.media.audio(kind)


def _replace_output(command: list[str], old: str, new: Path) -> list[str]:
    return [str(new) if part == old else part for part in command]


class _ProcessorRuns:
    """Konvrt's side in one warm process; the first run (a warm-up) gives the command."""

    def __init__(self, bench: Bench, warm: WarmProcess, case: ProcessingCase) -> None:
        self.bench = bench
        self.warm = warm
        self.case = case
        self.input = _input(bench, case.input_kind)
        first = self.run()
        if len(first["commands"]) != 1:
            raise RuntimeError(f"{case.name}: expected one FFmpeg command, Konvrt ran {first['commands']}.")
        self.ran = first["commands"][0]
        self.command = self.raw_command()
        self.details = first["details"]

    def run(self) -> dict[str, Any]:
        return self.warm.call(
            "bench.inside.run_operation",
            operation=self.case.operation,
            input_path=str(self.input),
            parameters=self.case.parameters,
        )

    def sample(self) -> Sample:
        run = self.run()
        return Sample(
            wall=run["wall"],
            cpu=run["cpu"],
            peak_rss_mb=run["own_rss_mb"] + run["ffmpeg_rss_mb"],
            extra={
                "process_rss_mb": run["own_rss_mb"],
                "ffmpeg_rss_mb": run["ffmpeg_rss_mb"],
                SERVICE_SHARE: run[SERVICE_SHARE],
            },
        )

    def raw_command(self) -> list[str]:
        """The command Konvrt ran, typed by hand on the same input, into a fresh output folder."""
        output = self.bench.output_dir() / Path(self.ran[-1]).name
        return by_hand(self.ran, input_path=self.input, output_path=output)


def _measure_case(bench: Bench, case: ProcessingCase) -> tuple[Result, list[str]]:
    with bench.warm() as warm:
        runs = _ProcessorRuns(bench, warm, case)
        ours, theirs = interleave(
            runs.sample, lambda: measure_command(runs.raw_command()), repeats=bench.repeats, warmup=False
        )
    result = Result(case=case.name, konvrt=ours, baseline=theirs)
    copied = runs.details.get("stream_copied", runs.details.get("audio_copied"))
    if case.expect_copy:
        result.at_least("audio stream copied (1 = yes)", float(bool(copied)), 1.0)
    elif copied is not None:
        result.notes.append(f"audio {'copied' if copied else 're-encoded'}")
    bench.commands[case.name] = runs.command
    bench.clean_outputs()
    return result, runs.command


def run_video(bench: Bench) -> list[Result]:
    """Case 1: ≤ 1.05× wall, ≤ 1.02× CPU, peak RSS ≤ FFmpeg's + 80 MB."""
    results = []
    for case in VIDEO_CASES:
        result, command = _measure_case(bench, case)
        result.case = f"{case.name} ({_video_label(bench)})"
        result.at_most("wall ratio ≤ 1.05", result.ratio("wall"), 1.05)
        result.at_most("CPU ratio ≤ 1.02", result.ratio("cpu"), 1.02)
        result.at_most("peak RSS − FFmpeg's ≤ 80 MB", result.peak_rss(KONVRT) - result.peak_rss("baseline"), 80.0)
        report_service_share(result)
        result.notes.append("command: " + _shown(command))
        results.append(result)
    return results


def run_audio(bench: Bench) -> list[Result]:
    """Case 3: ≤ 1.10× the raw command + 0.15 s; copies where the codec already fits."""
    results = []
    for case in AUDIO_CASES:
        result, command = _measure_case(bench, case)
        limit = 1.10 * result.median("baseline") + 0.15
        result.at_most(f"wall (s) ≤ 1.10 × raw + 0.15 s = {limit:.3f}", result.median(KONVRT), limit)
        result.report("CPU ratio", result.ratio("cpu"))
        report_service_share(result)
        result.notes.append("command: " + _shown(command))
        results.append(result)
    return results


def _shown(command: list[str]) -> str:
    """The command without the binary and with file names instead of paths."""

    def shown(part: str) -> str:
        if part.startswith(("/", "file:/")):
            return ("file:" if part.startswith("file:") else "") + part.rsplit("/", 1)[-1]
        return part

    return " ".join(shown(part) for part in command[1:])


def _video_label(bench: Bench) -> str:
    width, height, seconds = bench.media.sizes.video
    return f"{width}×{height}, {seconds:g} s"


# --- FFmpeg builds --------------------------------------------------------------------------------
BUILD_CASES = {
    "H.264 (libx264 medium) + AAC": "video_compress mp4",
    "VP9 (libvpx good/4) + Opus": "video_convert webm",
    "MP3 (libmp3lame)": "audio_convert wav→mp3",
    "AAC (native)": "audio_convert wav→aac",
    "Vorbis (libvorbis)": "audio_convert wav→ogg",
    "FLAC": "audio_convert wav→flac",
}


def run_ffmpeg_builds(bench: Bench) -> list[Result]:
    """The FFmpeg Konvrt resolved (konvrt column) against another build (baseline column), on the
    commands the processing cases captured. Reported, not judged."""
    from apps.processors.ffmpeg import resolve_ffmpeg_binary

    if not bench.other_ffmpeg:
        return []
    ours = resolve_ffmpeg_binary()
    results = []
    for label, case_name in BUILD_CASES.items():
        command = bench.commands.get(case_name)
        if command is None:
            continue
        output = command[-1]

        def run(binary: str, command: list[str] = command, output: str = output) -> Sample:
            return measure_command(
                [binary, *_replace_output(command, output, bench.output_dir() / Path(output).name)[1:]]
            )

        try:
            konvrt, other = interleave(
                lambda: run(ours), lambda: run(bench.other_ffmpeg), repeats=max(1, bench.repeats - 1), warmup=False
            )
        except RuntimeError as e:
            bench.notes.append(f"{label}: the other FFmpeg could not run the command: {e}")
            continue
        result = Result(case=f"ffmpeg build: {label}", konvrt=konvrt, baseline=other)
        result.report("wall ratio (resolved / other)", result.ratio("wall"))
        result.report("CPU ratio (resolved / other)", result.ratio("cpu"))
        result.notes.append(f"resolved: {ours}; other: {bench.other_ffmpeg}")
        results.append(result)
        bench.clean_outputs()
    return results
