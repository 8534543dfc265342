"""The contract between the job and the processors, and what every processor shares.

A processor is a function ``(ProcessingContext) -> ProcessingResult`` named by its registry entry.
It reads the job's local copy of the input, writes one output file into the job's workspace and
says what the output should contain; the job (``rq_workers.process_operation``) does everything
around it: claiming, fetching, probing, verifying, storing and the status changes. Processors never
touch storage, the database or the queue, so each one can be tested on a file alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from PIL import Image

from apps.core.utils import MAX_FILENAME_LENGTH, human_size, sanitize_filename
from apps.operations.enums import MediaType
from apps.processors.exceptions import ProbeError, ProcessingError
from apps.processors.registry import OperationDefinition
from apps.processors.utils.ffmpeg import FFmpegResult, run_ffmpeg
from apps.processors.utils.probe import (
    DEMUXERS,
    PILLOW_FORMATS,
    ImageInfo,
    MediaInfo,
    StreamInfo,
    probe_image,
    probe_media,
)
from apps.processors.utils.track_progress import ProgressTracker

logger = logging.getLogger(__name__)

# How far an output's duration may drift from its input's before it is refused: encoders pad or
# trim a few frames and audio priming samples, never seconds.
DURATION_TOLERANCE_SECONDS = 1.0
DURATION_TOLERANCE_RATIO = 0.05

# holiday.mov → holiday_compressed.mp4
OUTPUT_NAME_SUFFIXES = {
    "video_compress": "compressed",
    "video_convert": "converted",
    "image_resize": "resized",
    "image_convert": "converted",
    "audio_convert": "converted",
    "audio_extract": "audio",
}

# What an operation cannot work without, and what the user reads when the input lacks it.
REQUIRED_STREAMS: dict[str, tuple[str, str]] = {
    "video_compress": ("video", "This file has no video track to compress."),
    "video_convert": ("video", "This file has no video track to convert."),
    "audio_convert": ("audio", "This file has no audio track to convert."),
    "audio_extract": ("audio", "This video has no audio track to extract."),
}


@dataclass(frozen=True)
class ProcessingContext:
    operation_id: uuid.UUID
    definition: OperationDefinition
    parameters: dict[str, Any]
    input_path: Path
    input_extension: str
    # The FFmpeg demuxer or Pillow format the input is decoded with (see ``input_decoder``).
    input_format: str
    input_info: MediaInfo | ImageInfo
    workspace: Path
    tracker: ProgressTracker
    # time.monotonic() by which processing must be over, leaving time to store the output.
    deadline: float
    # Every FFmpeg run of this job, for the operator details of a failed output check.
    ffmpeg_runs: list[FFmpegResult] = field(default_factory=list)

    @property
    def media(self) -> MediaInfo:
        if not isinstance(self.input_info, MediaInfo):
            raise TypeError(f"{self.definition.name} needs an audio or video input.")
        return self.input_info

    @property
    def image(self) -> ImageInfo:
        if not isinstance(self.input_info, ImageInfo):
            raise TypeError(f"{self.definition.name} needs an image input.")
        return self.input_info

    @property
    def demuxer(self) -> str:
        return self.input_format

    @property
    def pillow_format(self) -> str:
        return self.input_format

    def output_path(self, extension: str) -> Path:
        return self.workspace / f"output.{extension}"

    def seconds_left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def run_ffmpeg(self, args: list[str], *, duration: float | None) -> FFmpegResult:
        """Run FFmpeg within the job's time, reporting progress and stopping on a cancel."""
        result = run_ffmpeg(args, duration=duration, timeout=self.seconds_left(), on_progress=self.tracker.report)
        self.ffmpeg_runs.append(result)
        return result

    @property
    def ffmpeg_stderr_tail(self) -> str:
        return next((run.stderr_tail for run in reversed(self.ffmpeg_runs) if run.stderr_tail), "")


@dataclass(frozen=True)
class ProcessingResult:
    path: Path
    extension: str
    # The output's kind: audio_extract reads a video and writes audio.
    media_type: MediaType
    expect_video: bool = False
    expect_audio: bool = False
    expected_duration: float | None = None
    # What the processor decided (stream copy, first GIF frame, ...), shown in the output's metadata.
    details: dict[str, Any] = field(default_factory=dict)


Processor = Callable[[ProcessingContext], ProcessingResult]


def output_file_name(*, original_name: str, operation: str, extension: str) -> str:
    """The name the output is downloaded as, derived from the client's original name:
    ``holiday.mov`` → ``holiday_compressed.mp4``. It is stored on the output File and is the one
    name the download uses. A long stem is shortened so that what was done stays visible."""
    base = PurePosixPath(original_name.replace("\\", "/")).name
    stem, dot, _ = base.rpartition(".")
    stem = sanitize_filename(stem if dot else base, fallback="file")
    ending = f"_{OUTPUT_NAME_SUFFIXES.get(operation, 'processed')}.{extension}"
    return sanitize_filename(stem[: MAX_FILENAME_LENGTH - len(ending)].rstrip() + ending)


# --- the input ------------------------------------------------------------------------------------
def input_decoder(*, extension: str, media_type: MediaType, recorded: str | None) -> str:
    """The FFmpeg demuxer or Pillow format to decode an input with: the one the upload was
    accepted as (recorded by the API in the input File's metadata as ``container``), else the one
    its stored extension implies. Never anything outside those two tables."""
    table = PILLOW_FORMATS if media_type == MediaType.IMAGE else DEMUXERS
    if recorded and recorded in table.values():
        return recorded
    return table[extension]


def inspect_input(
    *, path: Path, extension: str, definition: OperationDefinition, input_format: str | None = None
) -> MediaInfo | ImageInfo:
    """Probe the input as the format it was accepted as and check it against the worker's caps.

    Raises a permanent ``ProcessingError`` with a message for the user when the file is not
    readable, lacks the stream the operation works on, or is too large to process safely.
    """
    decoder = input_format or input_decoder(extension=extension, media_type=definition.media_type, recorded=None)
    if definition.media_type == MediaType.IMAGE:
        return _inspect_image(path=path, extension=extension, pillow_format=decoder)
    return _inspect_media(path=path, extension=extension, demuxer=decoder, definition=definition)


def _inspect_image(*, path: Path, extension: str, pillow_format: str) -> ImageInfo:
    try:
        info = probe_image(path, allowed_formats=(pillow_format,))
    except ProbeError as e:
        if isinstance(e.__cause__, Image.DecompressionBombError):
            raise ProcessingError(too_many_pixels_message(), operator_detail=str(e)) from e
        raise ProbeError(
            f"This file could not be read as a {extension.upper()} image. It may be damaged or not what its name says.",
            operator_detail=str(e),
        ) from e
    check_image_limits(info)
    return info


def _inspect_media(*, path: Path, extension: str, demuxer: str, definition: OperationDefinition) -> MediaInfo:
    try:
        info = probe_media(path, format_name=demuxer)
    except ProbeError as e:
        raise ProbeError(
            f"This file could not be read as {extension.upper()}. It may be damaged or not what its name says.",
            operator_detail=str(e),
        ) from e
    required = REQUIRED_STREAMS.get(definition.name)
    if required is not None:
        kind, message = required
        if (info.video if kind == "video" else info.audio) is None:
            raise ProcessingError(message)
    if (audio := info.audio) is not None and not (audio.sample_rate and audio.channels):
        # Lenient demuxers (raw FLAC, MP3) "find" a stream in any bytes; a real one has a format.
        raise ProbeError(
            f"This file could not be read as {extension.upper()}. It may be damaged or not what its name says.",
            operator_detail=f"audio stream without sample rate or channels: {audio}",
        )
    check_media_limits(info)
    return info


def check_media_limits(info: MediaInfo) -> None:
    """The worker's caps on an audio or video input (duration, picture size), checked by the API at
    upload too; a ``ProcessingError`` with a message for the user when one is exceeded."""
    if info.duration is not None and info.duration > settings.PROCESSING_MAX_DURATION_SECONDS:
        limit = _human_duration(settings.PROCESSING_MAX_DURATION_SECONDS)
        raise ProcessingError(f"This file is {_human_duration(info.duration)} long; the limit is {limit}.")
    if (video := info.video) is not None and video.width and video.height:
        if video.width * video.height > settings.PROCESSING_MAX_VIDEO_PIXELS:
            raise ProcessingError(
                f"This video's picture ({video.width}×{video.height}) is larger than the 8K frames we can process."
            )


def check_image_limits(info: ImageInfo) -> None:
    """The pixel cap on an image input, on the largest canvas any of its frames makes Pillow
    decode (a GIF frame can reach beyond the size the header declares)."""
    check_image_pixels(max(info.canvas_width, info.width), max(info.canvas_height, info.height))


def check_image_pixels(width: int, height: int) -> None:
    if width * height > settings.PROCESSING_MAX_IMAGE_PIXELS:
        raise ProcessingError(too_many_pixels_message(width, height))


def too_many_pixels_message(width: int | None = None, height: int | None = None) -> str:
    limit = settings.PROCESSING_MAX_IMAGE_PIXELS / 1_000_000
    size = f" ({width}×{height} pixels)" if width and height else ""
    return f"This image is too large to process{size}; the limit is {limit:g} megapixels."


def _human_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} minutes"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


# --- audio stream choices shared by the audio and video processors --------------------------------
def bitrate_bits(bitrate: str) -> int:
    """``"192k"`` → 192000."""
    return int(bitrate.rstrip("k")) * 1000


def can_copy_audio(
    stream: StreamInfo,
    *,
    codec: str,
    bitrate: str | None,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> bool:
    """Whether the input's audio can be copied as it is instead of re-encoded: same codec, no
    sample rate or channel change asked for, and (for lossy codecs) a source bitrate no higher than
    the one asked for, since re-encoding to a higher bitrate only loses quality and time."""
    if stream.codec != codec:
        return False
    if sample_rate is not None and sample_rate != stream.sample_rate:
        return False
    if channels is not None and channels != stream.channels:
        return False
    if bitrate is None:
        return True
    return stream.bit_rate is not None and stream.bit_rate <= bitrate_bits(bitrate) * 1.05


# --- verifying the output -------------------------------------------------------------------------
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
            return probe_image(result.path, allowed_formats=(PILLOW_FORMATS[result.extension],))
        except ProbeError as e:
            raise ProcessingError(_failed_check("the image cannot be read back"), operator_detail=str(e)) from e
    try:
        output = probe_media(result.path, format_name=DEMUXERS[result.extension])
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
