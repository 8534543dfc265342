"""video_thumbnail: one frame of a video as a JPEG, PNG or WebP image.

At a ``time`` given, the frame shown at that time. Without one, a representative frame: FFmpeg's
``thumbnail`` filter picks, among frames sampled from a bounded window of the video (two a
second, from the frames other frames refer to: the rest need not be decoded), the one closest to
the window's average picture, after frames that are nearly black (``signalstats``'
average luma) or blank (``entropy``: a flat picture of any colour, such as a white title card or a
fade) have been dropped. A video whose window holds nothing else (an all-black video) still gets
its most representative frame, and the output's metadata says the frame may be dark or blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import FFmpegError, FFmpegTimeout, ProcessingError
from apps.processors.ffmpeg import input_args, output_args
from apps.processors.formats import MediaType
from apps.processors.input_checks import ParameterMismatch, seconds
from apps.processors.probe import MediaInfo
from apps.processors.stages import in_stage

# The automatic choice looks at most this much of the video, from 10 % in (past most intros)
# but never so far in that the window would run past the end...
WINDOW_SECONDS = 30.0
WINDOW_START_SHARE = 0.10
# ...at this many frames a second: 60 candidates, each analysed at its full size.
SAMPLES_PER_SECOND = 2
# The candidates are decoded from the frames other frames refer to only (FFmpeg's ``skip_frame``):
# a frame nothing refers to (most B-frames) can be skipped without harming any other, and among two
# samples a second it only moves a sample by a frame or two, for about a third less decoding.
REFERENCE_FRAMES_ONLY = ["-skip_frame", "noref"]
# Limited-range black is luma 16: an average under 32 is a frame nobody would call a picture.
MIN_AVERAGE_LUMA = 32
# Normalised entropy of the luma (0: one flat colour, 1: noise); titles on a flat card and
# gradients sit around 0.3-0.5, pictures above.
MIN_ENTROPY = 0.2
# What FFmpeg says when no frame reached an output's encoder.
NOTHING_PICKED = "Could not open encoder before EOF"
ENCODERS = {
    "jpg": ["-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p"],
    "png": ["-c:v", "png"],
    "webp": ["-c:v", "libwebp", "-quality", "85"],
}


def check_thumbnail(parameters: dict[str, Any], info: MediaInfo) -> None:
    time = parameters.get("time")
    if time is not None and info.duration is not None and time >= info.duration:
        raise ParameterMismatch(
            "time", f"time ({seconds(time)}) is at or after the end of this video ({seconds(info.duration)})."
        )


def video_thumbnail(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    check_thumbnail(parameters, context.media)
    output_format = parameters["output_format"]
    output = context.output_path(output_format)
    scale = [f"scale={parameters['width']}:-1:flags=lanczos"] if parameters.get("width") else []
    details: dict[str, Any]
    if parameters.get("time") is not None:
        time = _last_frame_at_most(parameters["time"], context.media)
        _grab(context, output, output_format, start=time, length=None, filters=scale)
        details = {"time": round(time, 3), "automatic": False}
    else:
        details = _representative(context, output, output_format, scale)
    if not output.is_file() or output.stat().st_size == 0:
        raise ProcessingError("No frame could be read from this video at that point.")
    return ProcessingResult(path=output, extension=output_format, media_type=MediaType.IMAGE, details=details)


def _representative(context: ProcessingContext, output: Path, output_format: str, scale: list[str]) -> dict[str, Any]:
    duration = context.media.duration or WINDOW_SECONDS
    start = max(0.0, min(duration * WINDOW_START_SHARE, duration - WINDOW_SECONDS))
    length = min(WINDOW_SECONDS, duration - start)
    rate = context.video_stream.frame_rate or SAMPLES_PER_SECOND
    sample = [f"fps={min(SAMPLES_PER_SECOND, rate):g}"]
    pick = [f"thumbnail={round(length * SAMPLES_PER_SECOND) + 1}"]
    skip_dark_and_blank = [
        "signalstats",
        f"metadata=select:key=lavfi.signalstats.YAVG:value={MIN_AVERAGE_LUMA}:function=greater",
        "entropy",
        f"metadata=select:key=lavfi.entropy.normalized_entropy.normal.Y:value={MIN_ENTROPY}:function=greater",
    ]
    window = {"window_start": round(start, 3), "window_seconds": round(length, 3), "automatic": True}
    try:
        _grab(
            in_stage(context, 0, 80),
            output,
            output_format,
            start=start,
            length=length,
            sample=sample,
            filters=[*skip_dark_and_blank, *pick, *scale],
            decoding=REFERENCE_FRAMES_ONLY,
        )
    except FFmpegError as e:
        # No frame came through the filters, so the image encoder never opened: FFmpeg calls
        # that an error (the null output did get frames). Anything else is a real failure.
        if isinstance(e, FFmpegTimeout) or not e.permanent or NOTHING_PICKED not in e.stderr_tail:
            raise
    if output.is_file() and output.stat().st_size > 0:
        return window
    # Every sampled frame was dark or blank: the most representative of them is still the answer.
    # Every frame is decoded this time, so that a window without a single reference frame (which a
    # valid stream never has: its keyframes are references) would still give its picture.
    _grab(
        in_stage(context, 80, 100),
        output,
        output_format,
        start=start,
        length=length,
        sample=sample,
        filters=[*pick, *scale],
    )
    return {**window, "notice": "Every frame looked at is dark or blank; the most typical of them was taken."}


def _grab(
    context: ProcessingContext,
    output: Path,
    output_format: str,
    *,
    start: float,
    length: float | None,
    filters: list[str],
    sample: list[str] | None = None,
    decoding: list[str] | None = None,
) -> None:
    """One frame into ``output``. With ``sample``, the sampled frames also flow to a null output:
    the thumbnail filter writes nothing until it has seen the whole window, and without them
    FFmpeg's progress (and the stall watchdog) would see no output advance meanwhile. ``decoding``:
    options of the input's decoder."""
    video = f"0:{context.video_stream.index}"
    if sample:
        graph = f"[{video}]{','.join(sample)},split[pick][seen];[pick]{','.join(filters) or 'null'}[still]"
        picture, watched = ["-filter_complex", graph, "-map", "[still]"], ["-map", "[seen]", "-f", "null", "-"]
    else:
        picture, watched = ["-map", video, *(["-vf", ",".join(filters)] if filters else [])], []
    args = [
        *(decoding or []),
        *(["-ss", f"{start:.3f}"] if start > 0 else []),
        *(["-t", f"{length:.3f}"] if length is not None else []),
        *input_args(context.input_path, demuxer=context.demuxer),
        *picture,
        "-frames:v",
        "1",
        *ENCODERS[output_format],
        "-map_metadata",
        "-1",
        "-update",
        "1",
        *output_args(output, muxer="image2"),
        *watched,
    ]
    context.run_ffmpeg(args, duration=length or 1.0)


def _last_frame_at_most(time: float, info: MediaInfo) -> float:
    """``time``, or the last frame's when ``time`` falls in the last frame's span (a seek past the
    last frame's start finds nothing to show)."""
    if info.duration is None:
        return time
    frame = 1 / (info.video.frame_rate if info.video and info.video.frame_rate else 25)
    return max(0.0, min(time, info.duration - frame))
