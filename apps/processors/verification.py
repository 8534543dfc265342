"""Verifying a processor's output before anyone can download it."""

from __future__ import annotations

import logging
from dataclasses import replace

from django.conf import settings

from apps.core.utils import human_size
from apps.processors.contract import ProcessingResult, StreamSource
from apps.processors.exceptions import ProbeError, ProcessingError
from apps.processors.formats import MediaType, get_format
from apps.processors.probe import (
    ImageInfo,
    MediaInfo,
    measure_stream_duration,
    opens_on_keyframe,
    probe_image,
    probe_media,
)

logger = logging.getLogger(__name__)

# How far an output's duration may drift from its input's before it is refused: encoders pad or
# trim a few frames and audio priming samples, never seconds.
DURATION_TOLERANCE_SECONDS = 1.0
DURATION_TOLERANCE_RATIO = 0.05


def verify_output(*, result: ProcessingResult, input_info: MediaInfo | ImageInfo) -> MediaInfo | ImageInfo:
    """Probe the output and check it holds what the operation promised, before anyone can
    download it. A failed check is a permanent error with a message for the user."""
    if not result.path.is_file() or result.path.stat().st_size == 0:
        raise ProcessingError(_failed_check("no output was written"), operator_detail=str(result.path))
    if result.path.stat().st_size >= settings.PROCESSING_MAX_OUTPUT_SIZE:
        # FFmpeg stopped writing at the cap (-fs): what is there is a truncated result.
        limit = human_size(settings.PROCESSING_MAX_OUTPUT_SIZE)
        raise ProcessingError(
            f"The result would be larger than {limit}, the most Konvrt delivers, so it was not kept.",
            operator_detail=f"output reached PROCESSING_MAX_OUTPUT_SIZE: {result.path.stat().st_size} bytes",
        )
    if result.media_type == MediaType.IMAGE:
        try:
            return probe_image(result.path, allowed_formats=(get_format(result.extension).pillow_format,))
        except ProbeError as e:
            raise ProcessingError(_failed_check("the image cannot be read back"), operator_detail=str(e)) from e
    demuxer = get_format(result.extension).demuxer
    try:
        output = probe_media(result.path, format_name=demuxer, decode_pictures=not result.video_copied)
        problems = _copy_problems(result, output, demuxer=demuxer) if result.video_copied else []
    except ProbeError as e:
        raise ProcessingError(_failed_check("the file cannot be read back"), operator_detail=str(e)) from e
    if result.video_copied:
        output = _with_copied_pixel_format(output, input_info)
    if result.expect_video and output.video is None:
        problems.append("its video track is missing")
    if not result.expect_video and output.video is not None:
        problems.append("it has a video track it should not have")
    if result.expect_audio and output.audio is None:
        problems.append("its audio track is missing")
    if not result.expect_audio and output.audio is not None:
        problems.append("it has an audio track it should not have")
    expected = result.expected_duration
    if expected and output.duration is not None:
        lasts = output.duration
        if not _close(lasts, expected) and result.duration_source is not None:
            expected, lasts = _measured(result, output, source=result.duration_source, expected=expected, lasts=lasts)
        if not _close(lasts, expected):
            problems.append(f"it lasts {lasts:.1f} s instead of {expected:.1f} s")
    elif expected and output.duration is None:
        problems.append("its duration cannot be read")
    if problems:
        raise ProcessingError(_failed_check("; ".join(problems)), operator_detail=f"output probe: {output}")
    return output


def _copy_problems(result: ProcessingResult, output: MediaInfo, *, demuxer: str) -> list[str]:
    # The copy's own failure: a clip that opens between keyframes has no picture to start with.
    video = output.video
    if video is not None and not opens_on_keyframe(result.path, format_name=demuxer, stream_index=video.index):
        return ["its video does not start on a keyframe"]
    return []


def _with_copied_pixel_format(output: MediaInfo, input_info: MediaInfo | ImageInfo) -> MediaInfo:
    """A copied video stream's pixel format is its input's (the headers alone do not say it for
    H.264 or HEVC)."""
    video, source = output.video, input_info.video if isinstance(input_info, MediaInfo) else None
    if video is None or video.pixel_format is not None or source is None or source.codec != video.codec:
        return output
    copied = replace(video, pixel_format=source.pixel_format)
    return replace(output, streams=[copied if stream is video else stream for stream in output.streams])


def _close(lasts: float, expected: float) -> bool:
    return abs(lasts - expected) <= max(DURATION_TOLERANCE_SECONDS, expected * DURATION_TOLERANCE_RATIO)


def _measured(
    result: ProcessingResult, output: MediaInfo, *, source: StreamSource, expected: float, lasts: float
) -> tuple[float, float]:
    """The lengths of the input stream worked on and of the output's stream of its kind, measured
    from their packets, where the headers disagree: a header can overstate (an MP3's Xing frame
    count, a FLAC's sample count) and a container lasts as long as its longest track. Each header
    figure is kept where its stream cannot be measured."""
    stream = output.audio if source.kind == "audio" else output.video
    try:
        measured_input = measure_stream_duration(
            source.path, format_name=source.demuxer, stream_index=source.stream_index
        )
        measured_output = (
            measure_stream_duration(
                result.path, format_name=get_format(result.extension).demuxer, stream_index=stream.index
            )
            if stream is not None
            else None
        )
    except ProbeError as e:
        logger.warning("Could not measure the durations of %s: %s", result.path.name, e)
        return expected, lasts
    logger.info(
        "Header durations disagree (input %.3f s, output %.3f s); measured input %s s, output %s s",
        expected,
        lasts,
        measured_input,
        measured_output,
    )
    return measured_input or expected, measured_output or lasts


def _failed_check(reason: str) -> str:
    return f"The processed file failed its final check ({reason}), so it was not delivered."
