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
from apps.processors.scaling import MAX_HEIGHTS

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
    # Dotted path of a check of the parameters against the probed input (a trim past the end),
    # run at upload and by the worker: see ``input_checks.py``.
    input_check: str = ""

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


# The longest time a parameter in seconds may name: longer than any input the duration cap lets in.
_MAX_SECONDS = 24 * 60 * 60


def _seconds(description: str, *, minimum: float = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "minimum": minimum, "maximum": _MAX_SECONDS, "description": description, **extra}


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
                    "max_height": {
                        "type": "integer",
                        "enum": list(MAX_HEIGHTS),
                        "description": "At most this many lines, width in proportion; never enlarged.",
                    },
                    "target_size_mb": {
                        "type": "number",
                        "minimum": 0.1,
                        "maximum": 10000,
                        "description": (
                            "Fit the output in this many megabytes (1 MB = 1,000,000 bytes) and use at least 85 % "
                            "of it, by two-pass encoding; quality is then ignored. Too small a target for the "
                            "video's length is refused, naming the smallest that works."
                        ),
                    },
                }
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=("mp4",),
            processor="apps.processors.target_size.compress",
            input_check="apps.processors.target_size.check_target_size",
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
        OperationDefinition(
            name="video_trim",
            title="Trim video",
            output_suffix="trimmed",
            required_stream=RequiredStream("video", "This file has no video track to trim."),
            media_type=MediaType.VIDEO,
            description=(
                "Keep the part of a video from start to end (or for duration) seconds. accurate (the default) "
                "re-encodes at the exact times; accurate=false copies the streams as they are, from the keyframe at "
                "or before start. MP4, MOV and WebM stay what they are; other inputs become MP4."
            ),
            parameters_schema=_object_schema(
                {
                    "start": _seconds("Where the clip starts, in seconds.", default=0),
                    "end": _seconds(
                        "Where the clip ends, in seconds; the video's end when neither end nor duration is given.",
                        minimum=0.1,
                    ),
                    "duration": _seconds("How long the clip lasts, in seconds (instead of end).", minimum=0.1),
                    "accurate": {
                        "type": "boolean",
                        "default": True,
                        "description": "Re-encode at the exact times; false: copy from the keyframe before start.",
                    },
                },
                **{"not": {"required": ["end", "duration"]}},
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=("mp4", "mov", "webm"),
            processor="apps.processors.trim.trim_video",
            input_check="apps.processors.trim.check_trim",
        ),
        OperationDefinition(
            name="video_thumbnail",
            title="Video thumbnail",
            output_suffix="thumbnail",
            required_stream=RequiredStream("video", "This file has no video track to take a picture from."),
            media_type=MediaType.VIDEO,
            description=(
                "One frame of a video as an image: the frame at time, or without time a representative frame chosen "
                "automatically (never a black or blank one when the video has another)."
            ),
            parameters_schema=_object_schema(
                {
                    "time": _seconds("The moment to take, in seconds; omitted: chosen automatically."),
                    "width": {
                        "type": "integer",
                        "minimum": 16,
                        "maximum": 7680,
                        "description": "Image width in pixels (height in proportion); the video's own when omitted.",
                    },
                    "output_format": {"type": "string", "enum": ["jpg", "png", "webp"], "default": "jpg"},
                }
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=("jpg", "png", "webp"),
            processor="apps.processors.thumbnail.video_thumbnail",
            input_check="apps.processors.thumbnail.check_thumbnail",
        ),
        OperationDefinition(
            name="video_to_gif",
            title="Video to GIF",
            output_suffix="animation",
            required_stream=RequiredStream("video", "This file has no video track to animate."),
            media_type=MediaType.VIDEO,
            description=(
                "A clip of up to 30 seconds as a looping animated GIF (with a palette made for the clip) or animated "
                "WebP. Never larger or faster than the video itself."
            ),
            parameters_schema=_object_schema(
                {
                    "start": _seconds("Where the clip starts, in seconds.", default=0),
                    "duration": {
                        "type": "number",
                        "minimum": 0.1,
                        "maximum": 30,
                        "default": 5,
                        "description": "How long the clip lasts, in seconds.",
                    },
                    "fps": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 30,
                        "default": 12,
                        "description": "Frames per second.",
                    },
                    "width": {
                        "type": "integer",
                        "minimum": 16,
                        "maximum": 1280,
                        "default": 480,
                        "description": "Width in pixels (height in proportion).",
                    },
                    "output_format": {"type": "string", "enum": ["gif", "webp"], "default": "gif"},
                }
            ),
            input_formats=VIDEO_INPUT_FORMATS,
            output_formats=("gif", "webp"),
            processor="apps.processors.gif.video_to_gif",
            input_check="apps.processors.gif.check_gif",
        ),
        OperationDefinition(
            name="audio_normalize",
            title="Normalize loudness",
            output_suffix="normalized",
            required_stream=RequiredStream("audio", "This file has no audio track to normalize."),
            media_type=MediaType.AUDIO,
            description=(
                "Bring audio to a target integrated loudness (EBU R128, two passes: measure, then apply), "
                "e.g. -16 LUFS for podcasts, with true peaks under a ceiling. The result is measured and is "
                "within 1 LU of the target."
            ),
            parameters_schema=_object_schema(
                {
                    "target_lufs": {
                        "type": "number",
                        "minimum": -30,
                        "maximum": -5,
                        "default": -16,
                        "description": "Integrated loudness to reach, in LUFS.",
                    },
                    "true_peak": {
                        "type": "number",
                        "minimum": -9,
                        "maximum": 0,
                        "default": -1.5,
                        "description": "Highest true peak allowed, in dBTP.",
                    },
                    "output_format": {"type": "string", "enum": list(AUDIO_OUTPUT_FORMATS), "default": "mp3"},
                    "bitrate": {**_AUDIO_BITRATE, "default": "192k"},
                }
            ),
            input_formats=AUDIO_INPUT_FORMATS,
            output_formats=AUDIO_OUTPUT_FORMATS,
            processor="apps.processors.loudness.normalize_audio",
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
