"""The one source of truth for every operation Konvrt offers.

The API validates parameters against ``parameters_schema``, ``/operation-definitions/`` and the
OpenAPI schema publish it (with its ``title`` for the web page), the queue manager routes by
``queue``, the worker runs ``processor``, checks the input for ``required_stream`` and names the
result with ``output_suffix``. Adding an operation means adding one entry here (and its
processor); the formats it names come from the catalog in ``formats.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

from apps.core.utils import MAX_FILENAME_LENGTH, sanitize_filename
from apps.processors.formats import MediaType, readable_formats, writable_formats

if TYPE_CHECKING:
    from apps.processors.contract import Processor
    from config.settings.rq_settings import WorkerGroup

VIDEO_INPUT_FORMATS = readable_formats(MediaType.VIDEO)
IMAGE_INPUT_FORMATS = readable_formats(MediaType.IMAGE)
AUDIO_INPUT_FORMATS = readable_formats(MediaType.AUDIO)

VIDEO_OUTPUT_FORMATS = writable_formats(MediaType.VIDEO)
IMAGE_OUTPUT_FORMATS = writable_formats(MediaType.IMAGE)
# GIF is written only to keep a resized GIF a GIF: a palette of 256 colours is no conversion target.
IMAGE_CONVERT_FORMATS = tuple(extension for extension in IMAGE_OUTPUT_FORMATS if extension != "gif")
AUDIO_OUTPUT_FORMATS = writable_formats(MediaType.AUDIO)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
AUDIO_BITRATES = ("64k", "96k", "128k", "160k", "192k", "256k", "320k")
SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)


def _object_schema(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


_VIDEO_QUALITY = {
    "type": "integer",
    "minimum": 18,
    "maximum": 28,
    "default": 23,
    "description": "Constant rate factor: lower is better quality and a larger file.",
}
_AUDIO_BITRATE = {"type": "string", "enum": list(AUDIO_BITRATES), "description": "Target audio bitrate."}


# What a worker group's files are called in messages ("the 30-minute limit for videos").
GROUP_NOUNS = {"video": "videos", "image": "images", "audio": "audio"}


class UnknownOperation(LookupError):
    """No operation of that name is offered (any more)."""


@dataclass(frozen=True)
class RequiredStream:
    """The track an operation cannot work without, and what its user reads when the input lacks it."""

    kind: str  # "video" or "audio"
    missing_message: str


@dataclass(frozen=True)
class OperationDefinition:
    name: str
    # A short name for people: "Compress video".
    title: str
    media_type: MediaType
    description: str
    parameters_schema: dict[str, Any]
    input_formats: tuple[str, ...]
    output_formats: tuple[str, ...]
    processor: str = field(repr=False)
    # holiday.mov → holiday_<output_suffix>.mp4
    output_suffix: str = "processed"
    required_stream: RequiredStream | None = None
    # Which WORKER_CONFIG entry runs it; the media type's own unless said otherwise.
    worker_group: str = ""

    @property
    def group(self) -> str:
        return self.worker_group or self.media_type

    @property
    def worker(self) -> WorkerGroup:
        return settings.WORKER_CONFIG[self.group]

    @property
    def queue(self) -> str:
        return self.worker["queue"]

    @property
    def timeout(self) -> int:
        return self.worker["timeout"]

    @property
    def max_file_size(self) -> int:
        return settings.MAX_FILE_SIZE[self.media_type]

    def accepts_extension(self, extension: str) -> bool:
        return extension.lower() in self.input_formats

    def load_processor(self) -> Processor:
        return import_string(self.processor)

    def output_file_name(self, *, original_name: str, extension: str) -> str:
        """The name the output is downloaded as, derived from the client's original name:
        ``holiday.mov`` → ``holiday_compressed.mp4``. It is stored on the output File and is the
        one name the download uses. A long stem is shortened so that what was done stays visible."""
        base = PurePosixPath(original_name.replace("\\", "/")).name
        stem, dot, _ = base.rpartition(".")
        stem = sanitize_filename(stem if dot else base, fallback="file")
        ending = f"_{self.output_suffix}.{extension}"
        return sanitize_filename(stem[: MAX_FILENAME_LENGTH - len(ending)].rstrip() + ending)


OPERATIONS: dict[str, OperationDefinition] = {
    definition.name: definition
    for definition in (
        OperationDefinition(
            name="video_compress",
            title="Compress video",
            output_suffix="compressed",
            required_stream=RequiredStream("video", "This file has no video track to compress."),
            media_type=MediaType.VIDEO,
            description=(
                "Compress a video with H.264 and AAC into an MP4 that starts playing before it has fully downloaded."
            ),
            parameters_schema=_object_schema(
                {
                    "quality": _VIDEO_QUALITY,
                    "preset": {
                        "type": "string",
                        "enum": list(X264_PRESETS),
                        "default": "medium",
                        "description": "x264 speed preset: slower presets make smaller files.",
                    },
                    "audio_bitrate": {**_AUDIO_BITRATE, "default": "128k"},
                }
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=("mp4",),
            processor="apps.processors.video.compress_video",
        ),
        OperationDefinition(
            name="video_convert",
            title="Convert video",
            output_suffix="converted",
            required_stream=RequiredStream("video", "This file has no video track to convert."),
            media_type=MediaType.VIDEO,
            description="Convert a video to MP4 or MOV (H.264 + AAC) or WebM (VP9 + Opus).",
            parameters_schema=_object_schema(
                {
                    "output_format": {"type": "string", "enum": list(VIDEO_OUTPUT_FORMATS)},
                    "quality": _VIDEO_QUALITY,
                },
                required=["output_format"],
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=VIDEO_OUTPUT_FORMATS,
            processor="apps.processors.video.convert_video",
        ),
        OperationDefinition(
            name="image_resize",
            title="Resize image",
            output_suffix="resized",
            media_type=MediaType.IMAGE,
            description=(
                "Resize an image. With maintain_aspect_ratio (the default) it fits inside width × height; "
                "without, it is stretched to exactly that size. The result keeps the input's format when "
                "Konvrt writes it (JPEG, PNG, WebP, AVIF, GIF; an animated GIF or WebP stays animated), "
                "else it is a PNG."
            ),
            parameters_schema=_object_schema(
                {
                    "width": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 10000,
                        "description": "Target width in pixels.",
                    },
                    "height": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 10000,
                        "description": "Target height in pixels.",
                    },
                    "maintain_aspect_ratio": {
                        "type": "boolean",
                        "default": True,
                        "description": "Fit inside the box instead of stretching to it.",
                    },
                },
                anyOf=[{"required": ["width"]}, {"required": ["height"]}],
            ),
            input_formats=IMAGE_INPUT_FORMATS,
            output_formats=IMAGE_OUTPUT_FORMATS,
            processor="apps.processors.image.resize_image",
        ),
        OperationDefinition(
            name="image_convert",
            title="Convert image",
            output_suffix="converted",
            media_type=MediaType.IMAGE,
            description="Convert an image to JPEG, PNG, WebP or AVIF (an animation to WebP stays animated).",
            parameters_schema=_object_schema(
                {
                    "output_format": {"type": "string", "enum": list(IMAGE_CONVERT_FORMATS)},
                    "quality": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 100,
                        "default": 85,
                        "description": "JPEG/WebP/AVIF quality (ignored for PNG, which is lossless).",
                    },
                },
                required=["output_format"],
            ),
            input_formats=IMAGE_INPUT_FORMATS,
            output_formats=IMAGE_CONVERT_FORMATS,
            processor="apps.processors.image.convert_image",
        ),
        OperationDefinition(
            name="audio_convert",
            title="Convert audio",
            output_suffix="converted",
            required_stream=RequiredStream("audio", "This file has no audio track to convert."),
            media_type=MediaType.AUDIO,
            description=(
                "Convert audio to MP3, WAV, AAC (ADTS), Ogg Vorbis or FLAC. A file that also carries a picture "
                "track (cover art, an M4A with video) gives its sound."
            ),
            parameters_schema=_object_schema(
                {
                    "output_format": {"type": "string", "enum": list(AUDIO_OUTPUT_FORMATS)},
                    "bitrate": {**_AUDIO_BITRATE, "default": "192k"},
                    "sample_rate": {
                        "type": "integer",
                        "enum": list(SAMPLE_RATES),
                        "description": "Output sample rate in Hz; the input's when omitted.",
                    },
                    "channels": {
                        "type": "integer",
                        "enum": [1, 2],
                        "description": "1 for mono, 2 for stereo; the input's when omitted.",
                    },
                },
                required=["output_format"],
            ),
            input_formats=AUDIO_INPUT_FORMATS,
            output_formats=AUDIO_OUTPUT_FORMATS,
            processor="apps.processors.audio.convert_audio",
        ),
        OperationDefinition(
            name="audio_extract",
            title="Extract audio",
            output_suffix="audio",
            required_stream=RequiredStream("audio", "This video has no audio track to extract."),
            # The input is a video: it is validated and size-limited as one.
            media_type=MediaType.VIDEO,
            description="Extract the audio track of a video.",
            parameters_schema=_object_schema(
                {
                    "output_format": {"type": "string", "enum": list(AUDIO_OUTPUT_FORMATS), "default": "mp3"},
                    "bitrate": {**_AUDIO_BITRATE, "default": "192k"},
                }
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=AUDIO_OUTPUT_FORMATS,
            processor="apps.processors.audio.extract_audio",
            worker_group="audio",
        ),
    )
}


def get_operation(name: str) -> OperationDefinition:
    """The operation called ``name``; ``UnknownOperation`` when none is (any more). Input from
    clients is checked with ``OPERATIONS.get`` instead, where an unknown name is a 400."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise UnknownOperation(f"No operation is called {name!r}.") from None
