"""Inspecting media files: what streams a file holds, how long it is, how large its pictures are.

No ffprobe binary is guaranteed, so audio and video go through PyAV (FFmpeg's libraries, in
process) and images through Pillow. Results are dataclasses, never loose dicts.

Every file is treated as hostile. FFmpeg opens it with the demuxer it was accepted as, may not
hand any part of it to another demuxer (``format_whitelist``), and reads only local files
(``protocol_whitelist``): ``safe_input_options`` is the one place those options are decided, for
PyAV here and for the FFmpeg command line in ``ffmpeg.input_args``. Pillow decodes only the
formats it is told to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image
from pillow_heif import register_heif_opener

from apps.processors.exceptions import ProbeError
from apps.processors.formats import MediaType, decoders

# HEIC/HEIF (iPhone photos) through pillow-heif's Pillow plugin, registered as Pillow's "HEIF"
# format; like every format it is only decoded where the catalog's decoder names it. Embedded
# thumbnails are never decoded: only the main picture is.
register_heif_opener(thumbnails=False)

# A bound on the packets read to measure a stream (``measure_stream_duration``): four hours of
# 60 fps video or of 20 ms Opus frames are under a million.
MEASURE_MAX_PACKETS = 2_000_000

# Decoder option for a probe that reads headers only: FFmpeg's stream analysis decodes a picture
# or more of each video stream (only for its pixel format and decoding delay), which for a 1080p
# H.264 keyframe costs more than reading the whole header.
_SKIP_PICTURES = {"skip_frame": "all"}

# Options FFmpeg's defaults already give, pinned so that a different FFmpeg build (FFMPEG_BINARY,
# an older distribution package) cannot quietly turn them back on: QuickTime "data references"
# make the mov demuxer open other files next to the input.
_DEMUXER_HARDENING = {"mov": {"enable_drefs": "0", "use_absolute_path": "0"}}


def safe_input_options(demuxer: str | None) -> dict[str, str]:
    """FFmpeg input options that keep a hostile file to itself.

    - ``format_whitelist``: only ``demuxer`` may read the file or anything inside it. Some
      demuxers probe embedded data and open a second demuxer on it (an AVI's GAB2 subtitles);
      with the whitelist that nested demuxer cannot be a playlist (HLS), a concat script or any
      other format that follows references. Without a pinned demuxer (trusted files only, e.g.
      our own outputs in tests) detection is limited to the accepted demuxers.
    - ``protocol_whitelist``: ``file`` only, so no network protocol can be opened.

    None of the accepted demuxers needs a nested demuxer for the streams Konvrt processes (an
    AVI's subtitle track is dropped, never decoded), so the whitelist is the pinned demuxer alone.
    """
    allowed = demuxer or ",".join(sorted(set(decoders(MediaType.VIDEO).values())))
    return {"protocol_whitelist": "file", "format_whitelist": allowed, **_DEMUXER_HARDENING.get(demuxer or "", {})}


def local_url(path: Path) -> str:
    """The URL FFmpeg opens for a local file: always absolute and always through the ``file``
    protocol, so a name can never be read as another protocol's URL (``http:``, ``concat:``)."""
    return f"file:{Path(path).absolute()}"


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
    # The picture Pillow composites every frame onto. A GIF frame may reach beyond the size its
    # header declares and Pillow then enlarges the canvas: these are the largest it will get.
    canvas_width: int = 0
    canvas_height: int = 0

    @property
    def canvas_pixels(self) -> int:
        return max(self.canvas_width, self.width) * max(self.canvas_height, self.height)

    @property
    def decoded_pixels(self) -> int:
        """Pixels decoded to read every frame: what an animation costs to convert."""
        return self.frames * self.canvas_pixels

    def as_metadata(self) -> dict[str, Any]:
        return {
            "format": self.format_name.lower(),
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "frames": self.frames,
        }


def probe_media(path: Path, *, format_name: str | None = None, decode_pictures: bool = True) -> MediaInfo:
    """Streams, duration and bitrate of an audio or video file.

    ``format_name`` pins FFmpeg's demuxer (e.g. ``"mov"``, ``"matroska"``) so that content
    sniffed as one format is never reinterpreted as another. Without ``decode_pictures`` no
    picture is decoded: everything comes from the container and the codecs' headers, except the
    pixel format of a codec that only tells it in a decoded picture (H.264, HEVC: then ``None``).
    """
    options = safe_input_options(format_name) | ({} if decode_pictures else _SKIP_PICTURES)
    try:
        with av.open(local_url(path), format=format_name, options=options, timeout=30) as container:
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


def measure_stream_duration(
    path: Path, *, format_name: str | None, stream_index: int, max_packets: int = MEASURE_MAX_PACKETS
) -> float | None:
    """How long stream ``stream_index`` really lasts: an audio stream's decoded samples, a video
    stream's span of packet timestamps.

    The durations a probe reports come from headers, which can be wrong: an MP3's Xing/VBRI
    header or a FLAC's STREAMINFO may count far more samples than the file holds, an Ogg Opus
    file's last granule position may lie past its last sample, and a container's duration is its
    longest track's, not the one worked on. Audio is decoded (in process, like the probe, and
    fast: no picture is touched) because even packet timestamps come from such headers in Ogg.
    ``None`` when the stream yields nothing or has more than ``max_packets`` packets (the caller
    keeps the header's figure then).
    """
    try:
        with av.open(
            local_url(path), format=format_name, options=safe_input_options(format_name), timeout=30
        ) as container:
            stream = container.streams[stream_index]
            if isinstance(stream, av.AudioStream):
                return _decoded_seconds(container, stream, max_packets)
            return _packet_span(container, stream, max_packets)
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise ProbeError(f"Could not measure stream {stream_index} of {path.name}: {e}") from e


def _decoded_seconds(container: Any, stream: av.AudioStream, max_packets: int) -> float | None:
    seconds = 0.0
    for count, packet in enumerate(container.demux(stream)):
        if count >= max_packets:
            return None
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            continue  # FFmpeg skips a damaged packet too, so the output lacks it as well
        for frame in frames:
            seconds += frame.samples / frame.sample_rate
    return seconds or None


def _packet_span(container: Any, stream: av.stream.Stream, max_packets: int) -> float | None:
    first = last = None
    for count, packet in enumerate(container.demux(stream)):
        if count >= max_packets:
            return None
        if packet.pts is None:  # the demuxer's empty flush packet at the end
            continue
        start, end = packet.pts, packet.pts + (packet.duration or 0)
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    if first is None or last is None or stream.time_base is None:
        return None
    return float((last - first) * stream.time_base)


def probe_image(path: Path, *, allowed_formats: tuple[str, ...]) -> ImageInfo:
    """Format, size and frame count of an image, decoding only the allowed formats
    (Pillow names such as ``"JPEG"``, ``"PNG"``). Only headers are read, never pixels.

    Raises ``ImageTooLarge`` when Pillow's own decompression-bomb check refuses the size (the
    caller's pixel cap, lower, is checked by the caller on the returned numbers).
    """
    try:
        with Image.open(path, formats=list(allowed_formats)) as image:
            if image.format == "GIF":
                frames, canvas_width, canvas_height = gif_layout(path)
            else:
                frames, canvas_width, canvas_height = getattr(image, "n_frames", 1), image.width, image.height
            return ImageInfo(
                format_name=image.format or "",
                width=image.width,
                height=image.height,
                mode=image.mode,
                frames=frames,
                size=path.stat().st_size,
                canvas_width=canvas_width,
                canvas_height=canvas_height,
            )
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"Pillow refused {path.name}: {e}") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise ProbeError(f"Could not read {path.name} as an image: {e}") from e


class ImageTooLarge(ProbeError):
    """The image declares more pixels than Pillow's decompression-bomb check lets it decode."""


def gif_layout(path: Path) -> tuple[int, int, int]:
    """``(frames, canvas width, canvas height)`` of a GIF, from its block structure alone.

    Pillow counts GIF frames by walking them too, but only learns that a frame enlarges the
    canvas when it decodes it; a 1×1 GIF whose later frames are 8000×8000 would pass any check
    made on the opened image. Walking the blocks costs no decoding and sees every frame's extent.
    Stops quietly at a truncated end or the trailer, as Pillow does.
    """
    data = memoryview(path.read_bytes())
    width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    position = 13 + (3 << ((data[10] & 0x07) + 1) if data[10] & 0x80 else 0)
    frames = 0
    end = len(data)
    while position < end:
        marker = data[position]
        if marker == 0x3B:  # trailer
            break
        if marker == 0x21:  # extension: label, then data sub-blocks
            position = _skip_sub_blocks(data, position + 2)
        elif marker == 0x2C:  # image descriptor
            if position + 10 > end:
                break
            descriptor = data[position + 1 : position + 10]
            left, top = int.from_bytes(descriptor[0:2], "little"), int.from_bytes(descriptor[2:4], "little")
            frame_width, frame_height = (
                int.from_bytes(descriptor[4:6], "little"),
                int.from_bytes(descriptor[6:8], "little"),
            )
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            frames += 1
            flags = descriptor[8]
            position += 10 + (3 << ((flags & 0x07) + 1) if flags & 0x80 else 0)
            position = _skip_sub_blocks(data, position + 1)  # after the LZW minimum code size
        else:
            position += 1  # stray byte between blocks: Pillow skips it too
    return max(frames, 1), width, height


def _skip_sub_blocks(data: memoryview, position: int) -> int:
    end = len(data)
    while position < end:
        size = data[position]
        position += 1 + size
        if size == 0:
            break
    return position


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
    # PyAV builds a VideoStream or AudioStream exactly for the "video" and "audio" stream types;
    # only their codec contexts have picture and sound attributes.
    if isinstance(stream, av.VideoStream):
        video_context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        info.update(
            width=video_context.width or None,
            height=video_context.height or None,
            pixel_format=video_context.format.name if video_context.format else None,
            frame_rate=round(float(Fraction(rate)), 3) if rate else None,
        )
    elif isinstance(stream, av.AudioStream):
        audio_context = stream.codec_context
        info.update(sample_rate=audio_context.sample_rate or None, channels=audio_context.channels or None)
    return StreamInfo(**info)


def keyframe_at_or_before(path: Path, *, format_name: str, stream_index: int, seconds: float) -> float:
    """The time (s) of the last keyframe of stream ``stream_index`` at or before ``seconds``: where
    a stream copy that starts at ``seconds`` really starts. 0.0 when the file says nothing better.

    Only the index and the packets from the seek on are read: no picture is decoded, not even by
    the stream analysis when the file is opened."""
    if seconds <= 0:
        return 0.0
    options = safe_input_options(format_name) | _SKIP_PICTURES
    try:
        with av.open(local_url(path), format=format_name, options=options, timeout=30) as container:
            stream = container.streams[stream_index]
            if not stream.time_base:
                return 0.0
            start = stream_start_time(container, stream)
            container.seek(int((seconds + start) / stream.time_base), stream=stream, backward=True, any_frame=False)
            for packet in container.demux(stream):
                if packet.pts is not None and packet.is_keyframe:
                    found = float(packet.pts * stream.time_base) - start
                    return max(0.0, found) if found <= seconds + 1e-3 else 0.0
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise ProbeError(f"Could not find a keyframe in {path.name}: {e}") from e
    return 0.0


def opens_on_keyframe(path: Path, *, format_name: str, stream_index: int) -> bool:
    """Whether the first packet of stream ``stream_index`` is a keyframe: a stream copy that opens
    on anything else shows no picture, or a broken one, until its first keyframe.

    For containers that declare their streams in a header (MP4, MOV, WebM): the stream analysis is
    cut to the minimum, since nothing but the first packet is wanted."""
    options = safe_input_options(format_name) | _SKIP_PICTURES | {"probesize": "32", "analyzeduration": "0"}
    try:
        with av.open(local_url(path), format=format_name, options=options, timeout=30) as container:
            for packet in container.demux(container.streams[stream_index]):
                if packet.size:
                    return bool(packet.is_keyframe)
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise ProbeError(f"Could not read the first packet of {path.name}: {e}") from e
    return False


def stream_start_time(container: Any, stream: Any) -> float:
    """Where the timestamps of ``stream`` start, in seconds (the file's start where it says nothing)."""
    # Timestamps count from the file's start time (an MPEG-TS clock rarely starts at 0).
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return container.start_time / av.time_base if container.start_time else 0.0
