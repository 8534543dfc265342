"""video_compress and video_convert: FFmpeg encodes into MP4/MOV (H.264 + AAC) or WebM (VP9 + Opus).

Common to both: only the probed video stream and the first audio stream are mapped (subtitles,
data tracks, chapters and the input's metadata such as GPS tags are dropped for privacy); the
picture is made yuv420p with even dimensions (H.264 and VP9 in 4:2:0 need them, and it is what
every player supports); MP4 and MOV get ``+faststart`` so playback starts before the download ends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from apps.processors.audio_codecs import can_copy_audio
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.ffmpeg import input_args, output_args
from apps.processors.formats import MediaType, get_format
from apps.processors.probe import MediaInfo, StreamInfo
from apps.processors.registry import X264_PRESETS
from apps.processors.scaling import EVEN_DIMENSIONS, fit_height, yuv420_picture

logger = logging.getLogger(__name__)

# Conversion is about the container and codecs, not the smallest file: "fast" costs a few percent
# of size against "medium" for a clearly shorter wait.
CONVERT_X264_PRESET = "fast"
CONVERT_AUDIO_BITRATE = "128k"
# The highest (smallest-file) quality number the API takes.
MAX_QUALITY_NUMBER = 28
# VP9's CRF scale (0-63) is not x264's (0-51): this maps the API's 18-28 onto VP9's usual range,
# 23 (the default) → 32, close to libvpx's recommended quality for web video.
VP9_CRF_PER_QUALITY = 1.4
# "good" with cpu-used 4 and row multithreading is libvpx's recommended speed/quality balance for
# file encodes; the default (cpu-used 0/1) is several times slower for little gain.
VP9_SPEED = ["-deadline", "good", "-cpu-used", "4", "-row-mt", "1"]


def compress_video(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    info = context.media
    output = context.output_path("mp4")
    audio_args, audio_copied = aac_audio_args(info, bitrate=parameters["audio_bitrate"])
    args = [
        *input_args(context.input_path, demuxer=context.demuxer),
        *map_streams(video=context.video_stream, audio=info.audio),
        *h264_video_args(
            quality=parameters["quality"],
            preset=parameters["preset"],
            picture=fit_height(parameters.get("max_height")),
        ),
        *audio_args,
        *container_args("mp4", output),
    ]
    context.run_ffmpeg(args, duration=info.duration)
    details: dict[str, Any] = {"audio_copied": audio_copied}
    input_size, output_size = context.input_path.stat().st_size, output.stat().st_size
    if output_size > input_size:
        # Delivered anyway (the user may still want H.264/faststart), but never passed off as a
        # compression: the flag and the notice travel in the output's metadata.
        details["larger_than_input"] = True
        details["notice"] = (
            f"The compressed video ({_megabytes(output_size)}) came out larger than the original "
            f"({_megabytes(input_size)}): the original was already efficiently encoded. "
            f"{_smaller_file_hint(parameters['quality'], parameters['preset'])}"
        )
    return _result(output, "mp4", info, details)


def convert_video(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    info = context.media
    output_format = parameters["output_format"]
    output = context.output_path(output_format)
    if output_format == "webm":
        video_args = vp9_video_args(quality=parameters["quality"])
        audio_args, audio_copied = _opus_audio(info)
    else:
        video_args = h264_video_args(quality=parameters["quality"], preset=CONVERT_X264_PRESET)
        audio_args, audio_copied = aac_audio_args(info, bitrate=CONVERT_AUDIO_BITRATE)
    args = [
        *input_args(context.input_path, demuxer=context.demuxer),
        *map_streams(video=context.video_stream, audio=info.audio),
        *video_args,
        *audio_args,
        *container_args(output_format, output),
    ]
    context.run_ffmpeg(args, duration=info.duration)
    return _result(output, output_format, info, {"audio_copied": audio_copied})


def _smaller_file_hint(quality: int, preset: str) -> str:
    """What could still make the file smaller: only the settings not already at their limit."""
    hints = []
    if quality < MAX_QUALITY_NUMBER:
        hints.append(f"a higher quality number (up to {MAX_QUALITY_NUMBER})")
    if preset != X264_PRESETS[-1]:
        hints.append("a slower preset")
    if not hints:
        return "Every setting is already at its smallest; the original may be the better file to keep."
    sentence = " or ".join(hints)
    return f"{sentence[0].upper()}{sentence[1:]} makes smaller files."


# --- argument builders ----------------------------------------------------------------------------
def map_streams(*, video: StreamInfo, audio: StreamInfo | None) -> list[str]:
    # The probed stream indexes, not "0:v:0": a video's first "video" stream can be cover art.
    args = ["-map", f"0:{video.index}"]
    if audio is not None:
        args += ["-map", f"0:{audio.index}"]
    return args


def h264_video_args(*, quality: int, preset: str, picture: str = EVEN_DIMENSIONS) -> list[str]:
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(quality), *yuv420_picture(picture)]


def vp9_video_args(*, quality: int) -> list[str]:
    crf = round(quality * VP9_CRF_PER_QUALITY)
    return ["-c:v", "libvpx-vp9", "-crf", str(crf), "-b:v", "0", *VP9_SPEED, *yuv420_picture()]


def aac_audio_args(info: MediaInfo, *, bitrate: str) -> tuple[list[str], bool]:
    if info.audio is None:
        return ["-an"], False
    if can_copy_audio(info.audio, codec="aac", bitrate=bitrate):
        return ["-c:a", "copy"], True
    return ["-c:a", "aac", "-b:a", bitrate], False


def _opus_audio(info: MediaInfo) -> tuple[list[str], bool]:
    if info.audio is None:
        return ["-an"], False
    if can_copy_audio(info.audio, codec="opus", bitrate=None):
        return ["-c:a", "copy"], True
    args = ["-c:a", "libopus", "-b:a", CONVERT_AUDIO_BITRATE]
    if (info.audio.channels or 0) > 2:
        # libopus needs an explicit surround mapping for more than two channels; stereo plays
        # everywhere a WebM does.
        args += ["-ac", "2"]
    return args, False


def container_args(output_format: str, output: Path) -> list[str]:
    args = ["-map_metadata", "-1", "-map_chapters", "-1", "-max_muxing_queue_size", "1024"]
    if output_format in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    return [*args, *output_args(output, muxer=get_format(output_format).encoder)]


def _result(output: Path, extension: str, info: MediaInfo, details: dict[str, Any]) -> ProcessingResult:
    return ProcessingResult(
        path=output,
        extension=extension,
        media_type=MediaType.VIDEO,
        expect_video=True,
        expect_audio=info.audio is not None,
        expected_duration=info.duration,
        details=details,
    )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.0f} KB"
