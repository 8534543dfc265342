"""The one source of truth for every operation Konvrt offers.

The API validates parameters against ``parameters_schema``, ``/operation-definitions/`` and the
OpenAPI schema publish it, the queue manager routes by ``queue``, and the worker runs
``processor``. Adding an operation means adding one entry here (and its processor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from apps.operations.enums import MediaType

VIDEO_INPUT_FORMATS = ("mp4", "mov", "avi", "mkv", "webm", "wmv", "flv")
IMAGE_INPUT_FORMATS = ("jpg", "jpeg", "png", "webp", "gif", "bmp")
AUDIO_INPUT_FORMATS = ("mp3", "wav", "aac", "m4a", "ogg", "flac", "opus")

VIDEO_OUTPUT_FORMATS = ("mp4", "webm", "mov")
IMAGE_OUTPUT_FORMATS = ("jpg", "png", "webp")
AUDIO_OUTPUT_FORMATS = ("mp3", "wav", "aac", "ogg", "flac")

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


@dataclass(frozen=True)
class OperationDefinition:
    name: str
    media_type: MediaType
    description: str
    parameters_schema: dict[str, Any]
    input_formats: tuple[str, ...]
    output_formats: tuple[str, ...]
    processor: str = field(repr=False)
    # Which WORKER_CONFIG entry runs it; the media type's own unless said otherwise.
    worker_group: str = ""

    @property
    def worker(self) -> dict[str, Any]:
        return settings.WORKER_CONFIG[self.worker_group or self.media_type]

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

    def load_processor(self):
        return import_string(self.processor)


OPERATIONS: dict[str, OperationDefinition] = {
    definition.name: definition
    for definition in (
        OperationDefinition(
            name="video_compress",
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
            processor="apps.processors.video_processing.compress_video",
        ),
        OperationDefinition(
            name="video_convert",
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
            processor="apps.processors.video_processing.convert_video",
        ),
        OperationDefinition(
            name="image_resize",
            media_type=MediaType.IMAGE,
            description=(
                "Resize an image. With maintain_aspect_ratio (the default) it fits inside width × height; "
                "without, it is stretched to exactly that size. Output keeps the input's format when it is "
                "JPEG, PNG or WebP, else PNG."
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
            processor="apps.processors.image_processing.resize_image",
        ),
        OperationDefinition(
            name="image_convert",
            media_type=MediaType.IMAGE,
            description="Convert an image to JPEG, PNG or WebP.",
            parameters_schema=_object_schema(
                {
                    "output_format": {"type": "string", "enum": list(IMAGE_OUTPUT_FORMATS)},
                    "quality": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 100,
                        "default": 85,
                        "description": "JPEG/WebP quality (ignored for PNG, which is lossless).",
                    },
                },
                required=["output_format"],
            ),
            input_formats=IMAGE_INPUT_FORMATS,
            output_formats=IMAGE_OUTPUT_FORMATS,
            processor="apps.processors.image_processing.convert_image",
        ),
        OperationDefinition(
            name="audio_convert",
            media_type=MediaType.AUDIO,
            description="Convert audio to MP3, WAV, AAC (ADTS), Ogg Vorbis or FLAC.",
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
            processor="apps.processors.audio_processing.convert_audio",
        ),
        OperationDefinition(
            name="audio_extract",
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
            processor="apps.processors.audio_processing.extract_audio",
            worker_group="audio",
        ),
    )
}


def get_operation(name: str) -> OperationDefinition | None:
    return OPERATIONS.get(name)
