"""Inspecting an input before it is processed: decode it only as the format it was accepted as,
check it holds the stream the operation needs, and keep it within the worker's caps.

The same caps are checked by the API at upload (``sniffing.py``), with the same sentences, so that
media over them is never stored.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from PIL import Image

from apps.processors.exceptions import ProbeError, ProcessingError
from apps.processors.formats import MediaType, decoders
from apps.processors.probe import ImageInfo, MediaInfo, probe_image, probe_media
from apps.processors.registry import OperationDefinition


def input_decoder(*, extension: str, media_type: MediaType, recorded: str | None) -> str:
    """The FFmpeg demuxer or Pillow format to decode an input with: the one the upload was
    accepted as (recorded by the API in the input File's metadata as ``container``), else the one
    its stored extension implies. Never anything outside those two tables."""
    table = decoders(media_type)
    if recorded and recorded in table.values():
        return recorded
    return table[extension]


def inspect_input(
    *,
    path: Path,
    extension: str,
    definition: OperationDefinition,
    input_format: str | None = None,
    recorded_streams: list[dict[str, Any]] | None = None,
) -> MediaInfo | ImageInfo:
    """Probe the input as the format it was accepted as and check it against the worker's caps.

    ``recorded_streams`` are the streams the upload's content check recorded (the input File's
    ``metadata["streams"]``): the pixel formats that check decoded fill in those a header-only probe
    cannot tell. Raises a permanent ``ProcessingError`` with a message for the user when the file is
    not readable, lacks the stream the operation works on, or is too large to process safely.
    """
    decoder = input_format or input_decoder(extension=extension, media_type=definition.media_type, recorded=None)
    if definition.media_type == MediaType.IMAGE:
        return _inspect_image(path=path, extension=extension, pillow_format=decoder)
    info = _inspect_media(path=path, extension=extension, demuxer=decoder, definition=definition)
    return with_recorded_pixel_formats(info, recorded_streams if isinstance(recorded_streams, list) else [])


def with_recorded_pixel_formats(info: MediaInfo, recorded_streams: list[dict[str, Any]]) -> MediaInfo:
    """``info`` with the pixel format recorded for each stream whose probe left it unknown, where the
    record is of the same stream (same index, kind and codec)."""
    recorded = {
        stream.get("index"): stream
        for stream in recorded_streams
        if isinstance(stream, dict) and stream.get("pixel_format")
    }
    streams = []
    for stream in info.streams:
        record = recorded.get(stream.index)
        if (
            stream.pixel_format is None
            and record is not None
            and (record.get("kind"), record.get("codec")) == (stream.kind, stream.codec)
        ):
            stream = replace(stream, pixel_format=str(record["pixel_format"]))
        streams.append(stream)
    return replace(info, streams=streams)


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
        # Headers only: the upload's content check (``sniffing.inspect_upload``, the one way an
        # input gets stored) has decoded this file with this demuxer already. What the worker needs
        # again is the container read as what it was accepted as, its streams and the caps.
        info = probe_media(path, format_name=demuxer, decode_pictures=False)
    except ProbeError as e:
        raise ProbeError(
            f"This file could not be read as {extension.upper()}. It may be damaged or not what its name says.",
            operator_detail=str(e),
        ) from e
    required = definition.required_stream
    if required is not None and (info.video if required.kind == "video" else info.audio) is None:
        raise ProcessingError(required.missing_message)
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
