"""audio_normalize: bring audio to a target integrated loudness (EBU R128), the way podcast and
streaming platforms ask for it (-16 LUFS for podcasts, -14 for music streaming, -23 for broadcast).

Two passes of FFmpeg's ``loudnorm``, as its author recommends: the first only measures the input
(integrated loudness, loudness range, true peak, gating threshold); the second applies the
correction with those measured values, which lets ``loudnorm`` use one linear gain for the whole
file (no pumping) whenever that gain keeps the true peak under the ceiling, and its dynamic mode
(a gentle compressor and limiter) only when it would not. The output is measured again and
refused unless its integrated loudness is within ``TOLERANCE_LU`` of the target. The three runs
share one progress: measuring 0-35 %, encoding 35-85 %, the final measurement the rest.
"""

from __future__ import annotations

from typing import Any

from apps.processors.audio import MP3_SAMPLE_RATES, _encoder_args
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.ffmpeg import input_args, output_args
from apps.processors.formats import MediaType, get_format
from apps.processors.stages import in_stage, last_json_object

TOLERANCE_LU = 1.0
# The loudness range loudnorm may keep: the measured one (so that linear mode is possible) within
# the filter's bounds; a wide range does not need compressing to reach an integrated loudness.
MIN_LRA, MAX_LRA = 1.0, 50.0
MAX_MEASURED_LUFS = 0.0
# loudnorm reports -70 LUFS (the absolute gate) for silence: nothing to bring up.
SILENCE_LUFS = -70.0
# loudnorm works at 192 kHz; the output goes back to the input's rate (or the nearest MP3 rate).
LOUDNORM_SAMPLE_RATE = 192000


def normalize_audio(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    target, peak = float(parameters["target_lufs"]), float(parameters["true_peak"])
    stream = context.audio_stream
    duration = stream.duration or context.media.duration
    output_format = parameters["output_format"]
    output = context.output_path(output_format)
    source = [*input_args(context.input_path, demuxer=context.demuxer), "-map", f"0:{stream.index}"]

    measured = _measure(in_stage(context, 0, 35), source, duration=duration, target=target, peak=peak)
    if measured["input_i"] <= SILENCE_LUFS:
        raise ProcessingError("This audio is silent, so there is no loudness to adjust.")
    lra = min(MAX_LRA, max(MIN_LRA, measured["input_lra"]))
    apply = _loudnorm(
        target,
        peak,
        lra,
        # loudnorm takes measured loudness up to 0 LUFS only; a clipped master measures above it.
        measured_I=min(MAX_MEASURED_LUFS, measured["input_i"]),
        measured_LRA=measured["input_lra"],
        measured_TP=measured["input_tp"],
        measured_thresh=min(MAX_MEASURED_LUFS, measured["input_thresh"]),
        offset=measured["target_offset"],
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
        *_encoder_args(target_format, stream, parameters["bitrate"], sample_rate, None),
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        *output_args(output, muxer=target_format.encoder),
    ]
    encoding = in_stage(context, 35, 85).run_ffmpeg(encode, duration=duration)

    result = _measure(
        in_stage(context, 85, 100),
        [*input_args(output, demuxer=target_format.demuxer), "-map", "0:a:0"],
        duration=duration,
        target=target,
        peak=peak,
    )
    reached = result["input_i"]
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
            "input_loudness_lufs": round(measured["input_i"], 2),
            "input_true_peak_dbtp": round(measured["input_tp"], 2),
            "input_loudness_range_lu": round(measured["input_lra"], 2),
            "loudness_lufs": round(reached, 2),
            "true_peak_dbtp": round(result["input_tp"], 2),
            # linear: one gain for the whole file; dynamic: loudnorm had to compress the peaks.
            "normalization": "linear" if measured["input_tp"] + (target - measured["input_i"]) <= peak else "dynamic",
        },
    )


def _loudnorm(target: float, peak: float, lra: float, **measured: Any) -> str:
    options = {"I": f"{target:g}", "TP": f"{peak:g}", "LRA": f"{lra:g}", **{k: str(v) for k, v in measured.items()}}
    return "loudnorm=" + ":".join(f"{key}={value}" for key, value in options.items())


def _measure(
    context: ProcessingContext, source: list[str], *, duration: float | None, target: float, peak: float
) -> dict[str, float]:
    """loudnorm's measurement of ``source`` (input_i, input_tp, input_lra, input_thresh,
    target_offset), printed as JSON at the end of the run, which needs FFmpeg's info log level."""
    args = [
        *source,
        "-loglevel",
        "info",
        "-af",
        _loudnorm(target, peak, MAX_LRA, print_format="json"),
        "-f",
        "null",
        "-",
    ]
    run = context.run_ffmpeg(args, duration=duration)
    found = last_json_object(run.stderr_tail) or {}
    try:
        return {key: float(found[key]) for key in ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")}
    except (KeyError, TypeError, ValueError) as e:
        raise ProcessingError(
            "The loudness of this audio could not be measured.", operator_detail=run.stderr_tail
        ) from e
