"""audio_normalize: bring audio to a target integrated loudness (EBU R128), the way podcast and
streaming platforms ask for it (-16 LUFS for podcasts, -14 for music streaming, -23 for broadcast).

Two passes, as ``loudnorm``'s author recommends: the first only measures the input (integrated
loudness, its gating threshold, loudness range, true peak); the second runs ``loudnorm`` with those
measured values, which lets it use one linear gain for the whole file (no pumping) whenever that
gain keeps the true peak under the ceiling, and its dynamic mode (a gentle compressor and limiter)
only when it would not. The output is measured again and refused unless its integrated loudness is
within ``TOLERANCE_LU`` of the target. Measuring uses FFmpeg's ``ebur128`` scanner, the same
quantities as ``loudnorm``'s own first pass for a fraction of its cost (``loudnorm`` resamples
everything to 192 kHz). The three runs share one progress: measuring 0-25 %, encoding 25-90 %,
the final measurement the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from apps.processors.audio import MP3_SAMPLE_RATES, audio_encoder_args
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.ffmpeg import input_args, output_args
from apps.processors.formats import MediaType, get_format
from apps.processors.stages import in_stage

TOLERANCE_LU = 1.0
# The loudness range loudnorm may keep: the measured one (so that linear mode is possible) within
# the filter's bounds; a wide range does not need compressing to reach an integrated loudness.
MIN_LRA, MAX_LRA = 1.0, 50.0
# loudnorm takes measured loudness up to 0 LUFS and true peaks within ±99 dBTP.
MAX_MEASURED_LUFS = 0.0
PEAK_BOUND = 99.0
# The scanner reports -70 LUFS (the absolute gate) for silence: nothing to bring up.
SILENCE_LUFS = -70.0
MEASURE = "ebur128=peak=true"
# The scanner's summary, printed when it closes.
_SUMMARY = re.compile(
    r"Integrated loudness:\s+I:\s+(?P<i>\S+) LUFS\s+Threshold:\s+(?P<thresh>\S+) LUFS"
    r".*?LRA:\s+(?P<lra>\S+) LU"
    r".*?Peak:\s+(?P<tp>\S+) dBFS",
    re.DOTALL,
)


@dataclass(frozen=True)
class Loudness:
    integrated: float  # LUFS
    threshold: float  # LUFS, the relative gate of the integrated loudness
    range: float  # LU
    true_peak: float  # dBTP


def normalize_audio(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    target, peak = float(parameters["target_lufs"]), float(parameters["true_peak"])
    stream = context.audio_stream
    duration = stream.duration or context.media.duration
    output_format = parameters["output_format"]
    output = context.output_path(output_format)
    source = [*input_args(context.input_path, demuxer=context.demuxer), "-map", f"0:{stream.index}"]

    measured = _measure(in_stage(context, 0, 25), source, duration=duration)
    if measured.integrated <= SILENCE_LUFS:
        raise ProcessingError("This audio is silent, so there is no loudness to adjust.")
    # A clipped master can measure above 0 LUFS, more than loudnorm takes: it is turned down
    # first by as much, and the measurement with it.
    shift = measured.integrated - MAX_MEASURED_LUFS + 1 if measured.integrated > MAX_MEASURED_LUFS else 0.0
    apply = (f"volume={-shift:.2f}dB," if shift else "") + _loudnorm(
        target,
        peak,
        min(MAX_LRA, max(MIN_LRA, measured.range)),
        measured_I=f"{measured.integrated - shift:.2f}",
        measured_LRA=min(MAX_LRA, measured.range),
        measured_TP=f"{min(PEAK_BOUND, max(-PEAK_BOUND, measured.true_peak - shift)):.2f}",
        measured_thresh=f"{min(MAX_MEASURED_LUFS, measured.threshold - shift):.2f}",
        linear="true",
    )
    target_format = get_format(output_format)
    sample_rate = stream.sample_rate or 48000
    if target_format.audio_codec == "mp3" and sample_rate not in MP3_SAMPLE_RATES:
        sample_rate = 48000 if sample_rate > 48000 else 44100
    encode = [
        *source,
        "-vn",
        "-sn",
        "-dn",
        "-af",
        apply,
        *audio_encoder_args(target_format, stream, parameters["bitrate"], sample_rate, None),
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        *output_args(output, muxer=target_format.encoder),
    ]
    encoding = in_stage(context, 25, 90).run_ffmpeg(encode, duration=duration)

    result = _measure(
        in_stage(context, 90, 100),
        [*input_args(output, demuxer=target_format.demuxer), "-map", "0:a:0"],
        duration=duration,
    )
    reached = result.integrated
    if abs(reached - target) > TOLERANCE_LU:
        raise ProcessingError(
            f"The loudness could not be brought to {target:g} LUFS (it reached {reached:.1f} LUFS) without the "
            f"peaks going over {peak:g} dBTP. A lower target or a higher true_peak would work.",
            operator_detail=f"measured input {measured}; output {result}; {encoding.stderr_tail}",
        )
    return ProcessingResult(
        path=output,
        extension=output_format,
        media_type=MediaType.AUDIO,
        expect_audio=True,
        expected_duration=duration,
        details={
            "input_loudness_lufs": measured.integrated,
            "input_true_peak_dbtp": measured.true_peak,
            "input_loudness_range_lu": measured.range,
            "loudness_lufs": reached,
            "true_peak_dbtp": result.true_peak,
            # linear: one gain for the whole file; dynamic: loudnorm had to compress the peaks.
            "normalization": "linear" if measured.true_peak + (target - measured.integrated) <= peak else "dynamic",
        },
    )


def _loudnorm(target: float, peak: float, lra: float, **measured: Any) -> str:
    options = {"I": f"{target:g}", "TP": f"{peak:g}", "LRA": f"{lra:g}", **{k: str(v) for k, v in measured.items()}}
    return "loudnorm=" + ":".join(f"{key}={value}" for key, value in options.items())


def _measure(context: ProcessingContext, source: list[str], *, duration: float | None) -> Loudness:
    """The EBU R128 scanner's summary of ``source``, which FFmpeg prints at its info log level."""
    args = [*source, "-loglevel", "info", "-af", MEASURE, "-f", "null", "-"]
    run = context.run_ffmpeg(args, duration=duration)
    summary = run.stderr_tail[run.stderr_tail.rfind("Summary:") :]
    found = _SUMMARY.search(summary) if "Summary:" in run.stderr_tail else None
    try:
        if found is None:
            raise ValueError("no summary")
        return Loudness(
            integrated=float(found["i"]),
            threshold=float(found["thresh"]),
            range=float(found["lra"]),
            true_peak=float(found["tp"]),
        )
    except ValueError as e:
        raise ProcessingError(
            "The loudness of this audio could not be measured.", operator_detail=run.stderr_tail
        ) from e
