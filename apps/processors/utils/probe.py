"""Inspecting media files: what streams a file holds, how long it is, how large its pictures are.

No ffprobe binary is guaranteed, so audio and video go through PyAV (FFmpeg's libraries, in
process) and images through Pillow. Results are dataclasses, never loose dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from apps.processors.exceptions import ProbeError

# Only local files: a container that points elsewhere (playlists, concat lists) fails to open
# instead of reaching the network or another file.
LOCAL_ONLY = {"protocol_whitelist": "file"}

# The FFmpeg demuxer that each accepted audio/video extension is opened with, and Pillow's format
# for each image extension: content is only ever decoded as the format it was accepted as.
DEMUXERS = {
    "mp4": "mov",
    "mov": "mov",
    "m4a": "mov",
    "mkv": "matroska",
    "webm": "matroska",
    "avi": "avi",
    "wmv": "asf",
    "flv": "flv",
    "mp3": "mp3",
    "wav": "wav",
    "aac": "aac",
    "ogg": "ogg",
    "opus": "ogg",
    "flac": "flac",
}
PILLOW_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # "video", "audio", "subtitle", "data", ...
    codec: str
    duration: float | None = None
    bit_rate: int | None = None
    width: int | None = None
    height: int | None = None
    pixel_format: str | None = None
    frame_rate: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    is_attached_picture: bool = False


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    size: int
    bit_rate: int | None
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def video_streams(self) -> list[StreamInfo]:
        # Cover art in audio files is a one-frame "video" stream; it is not a video.
        return [s for s in self.streams if s.kind == "video" and not s.is_attached_picture]

    @property
    def audio_streams(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "audio"]

    @property
    def video(self) -> StreamInfo | None:
        return next(iter(self.video_streams), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next(iter(self.audio_streams), None)

    def as_metadata(self) -> dict[str, Any]:
        """The flat summary stored in File.metadata and shown to API clients."""
        metadata: dict[str, Any] = {
            "format": self.format_name,
            "duration": round(self.duration, 3) if self.duration is not None else None,
            "bitrate": self.bit_rate,
        }
        if video := self.video:
            metadata.update(
                width=video.width,
                height=video.height,
                video_codec=video.codec,
                frame_rate=video.frame_rate,
                pixel_format=video.pixel_format,
            )
        if audio := self.audio:
            metadata.update(audio_codec=audio.codec, sample_rate=audio.sample_rate, channels=audio.channels)
        metadata["streams"] = [asdict(stream) for stream in self.streams]
        return metadata


@dataclass(frozen=True)
class ImageInfo:
    format_name: str
    width: int
    height: int
    mode: str
    frames: int
    size: int

    def as_metadata(self) -> dict[str, Any]:
        return {
            "format": self.format_name.lower(),
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "frames": self.frames,
        }


def probe_media(path: Path, *, format_name: str | None = None) -> MediaInfo:
    """Streams, duration and bitrate of an audio or video file.

    ``format_name`` pins FFmpeg's demuxer (e.g. ``"mov"``, ``"matroska"``) so that content
    sniffed as one format is never reinterpreted as another.
    """
    try:
        with av.open(str(path), format=format_name, options=LOCAL_ONLY, timeout=30) as container:
            streams = [_stream_info(stream) for stream in container.streams]
            duration = container.duration / av.time_base if container.duration else None
            if duration is None:
                durations = [s.duration for s in streams if s.duration]
                duration = max(durations) if durations else None
            return MediaInfo(
                format_name=container.format.name,
                duration=duration,
                size=path.stat().st_size,
                bit_rate=container.bit_rate or None,
                streams=streams,
            )
    except (av.FFmpegError, OSError, ValueError) as e:
        raise ProbeError(f"Could not read {path.name} as media: {e}") from e


def probe_image(path: Path, *, allowed_formats: tuple[str, ...]) -> ImageInfo:
    """Format, size and frame count of an image, decoding only the allowed formats
    (Pillow names such as ``"JPEG"``, ``"PNG"``)."""
    try:
        with Image.open(path, formats=list(allowed_formats)) as image:
            return ImageInfo(
                format_name=image.format or "",
                width=image.width,
                height=image.height,
                mode=image.mode,
                frames=getattr(image, "n_frames", 1),
                size=path.stat().st_size,
            )
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ProbeError(f"Could not read {path.name} as an image: {e}") from e


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    codec_context = stream.codec_context
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    info: dict[str, Any] = {
        "index": stream.index,
        "kind": stream.type,
        # The codec's canonical name ("mp3"), not the decoder's ("mp3float").
        "codec": codec_context.codec.canonical_name if codec_context and codec_context.codec else "unknown",
        "duration": duration,
        "bit_rate": (codec_context.bit_rate if codec_context else None) or None,
        "is_attached_picture": bool(stream.disposition & av.stream.Disposition.attached_pic),
    }
    if stream.type == "video":
        rate = stream.average_rate or stream.guessed_rate
        info.update(
            width=codec_context.width or None,
            height=codec_context.height or None,
            pixel_format=codec_context.format.name if codec_context.format else None,
            frame_rate=round(float(Fraction(rate)), 3) if rate else None,
        )
    elif stream.type == "audio":
        info.update(sample_rate=codec_context.sample_rate or None, channels=codec_context.channels or None)
    return StreamInfo(**info)
