"""Verifying a processor's output before anyone can download it."""

from __future__ import annotations

from django.conf import settings

from apps.core.utils import human_size
from apps.processors.contract import ProcessingResult
from apps.processors.exceptions import ProbeError, ProcessingError
from apps.processors.formats import MediaType, get_format
from apps.processors.probe import ImageInfo, MediaInfo, probe_image, probe_media

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
    try:
        output = probe_media(result.path, format_name=get_format(result.extension).demuxer)
    except ProbeError as e:
        raise ProcessingError(_failed_check("the file cannot be read back"), operator_detail=str(e)) from e
    problems = []
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
        tolerance = max(DURATION_TOLERANCE_SECONDS, expected * DURATION_TOLERANCE_RATIO)
        if abs(output.duration - expected) > tolerance:
            problems.append(f"it lasts {output.duration:.1f} s instead of {expected:.1f} s")
    elif expected and output.duration is None:
        problems.append("its duration cannot be read")
    if problems:
        raise ProcessingError(_failed_check("; ".join(problems)), operator_detail=f"output probe: {output}")
    return output


def _failed_check(reason: str) -> str:
    return f"The processed file failed its final check ({reason}), so it was not delivered."
