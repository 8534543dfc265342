"""video_trim: a part of a video, from ``start`` to ``end`` (or for ``duration``) seconds.

``accurate`` (the default) re-encodes, so the clip starts and ends on the exact times asked for.
Without it the streams are copied as they are, which is fast and loses nothing, but a copy can only
start on a keyframe: it starts at the last keyframe at or before ``start`` (the output's metadata
says where, ``start_keyframe``). A copy is made only when the codecs fit the output container;
otherwise the clip is re-encoded and the metadata says why.

A copy from an MP4/MOV or Matroska/WebM input is made in process (``remux.copy_span``: the same
packets as FFmpeg's ``-c copy`` command, without starting the FFmpeg program); other containers
(MPEG-TS/PS, AVI, FLV, ...) are copied by the FFmpeg command, which also corrects their timestamp
jumps.

The output keeps the input's family (MP4, MOV or WebM); any other input becomes an MP4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.ffmpeg import input_args
from apps.processors.formats import MediaType, get_format
from apps.processors.input_checks import ParameterMismatch, seconds
from apps.processors.probe import MediaInfo, keyframe_at_or_before
from apps.processors.remux import REMUXED_DEMUXERS, copy_span

# The encoders, stream mapping and container settings are video_convert's: a trimmed clip is
# encoded the way a converted one is (H.264 + AAC, or VP9 + Opus for WebM).
from apps.processors.video import (
    CONVERT_AUDIO_BITRATE,
    CONVERT_X264_PRESET,
    container_args,
    h264_video_args,
    map_streams,
    vp9_video_args,
)

SAME_FAMILY = ("mp4", "mov", "webm")
# A re-encoded clip stays close to its source: a little better than video_convert's default.
TRIM_QUALITY = 20
# What each output container can carry as it is, by the probe's codec names.
COPYABLE = {
    "mp4": ({"h264", "hevc", "mpeg4", "av1", "vp9"}, {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}),
    "mov": ({"h264", "hevc", "mpeg4", "av1", "prores", "mjpeg"}, {"aac", "mp3", "alac", "pcm_s16le", "ac3"}),
    "webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
SEEK_EPSILON = 0.001


def check_trim(parameters: dict[str, Any], info: MediaInfo) -> None:
    start = parameters["start"]
    end = parameters.get("end")
    if end is not None and end <= start:
        raise ParameterMismatch("end", f"end ({seconds(end)}) must be after start ({seconds(start)}).")
    if info.duration is not None and start >= info.duration:
        raise ParameterMismatch(
            "start", f"start ({seconds(start)}) is at or after the end of this video ({seconds(info.duration)})."
        )


def trim_video(context: ProcessingContext) -> ProcessingResult:
    info = context.media
    check_trim(context.parameters, info)
    start, end = _span(context.parameters, info)
    output_format = context.input_extension if context.input_extension in SAME_FAMILY else "mp4"
    output = context.output_path(output_format)
    details: dict[str, Any] = {"accurate": context.parameters["accurate"]}
    refused = None if context.parameters["accurate"] else _copy_refused(info, output_format)
    if not context.parameters["accurate"] and not refused and context.demuxer in REMUXED_DEMUXERS:
        return _remux(context, start=start, end=end, output_format=output_format, details=details)
    if context.parameters["accurate"] or refused:
        if refused:
            details["stream_copy_refused"] = refused
        codec_args, audio_copied = _encode(info, output_format), False
        seek, length = start, end - start
        details["stream_copied"] = False
    else:
        keyframe = keyframe_at_or_before(
            context.input_path, format_name=context.demuxer, stream_index=context.video_stream.index, seconds=start
        )
        codec_args, audio_copied = ["-c", "copy", "-avoid_negative_ts", "make_zero"], True
        # Past the keyframe, so that FFmpeg's seek (to the keyframe at or before) finds this one.
        seek, length = keyframe + SEEK_EPSILON if keyframe > 0 else 0.0, end - keyframe
        details.update(stream_copied=True, start_keyframe=round(keyframe, 3))
    args = [
        *(["-ss", f"{seek:.3f}"] if seek > 0 else []),
        *input_args(context.input_path, demuxer=context.demuxer),
        "-t",
        f"{length:.3f}",
        *map_streams(video=context.video_stream, audio=info.audio),
        *codec_args,
        *container_args(output_format, output),
    ]
    context.run_ffmpeg(args, duration=length)
    details["audio_copied"] = audio_copied and info.audio is not None
    return _clip(context, output, output_format, duration=length, copied=details["stream_copied"], details=details)


def _remux(
    context: ProcessingContext, *, start: float, end: float, output_format: str, details: dict[str, Any]
) -> ProcessingResult:
    info = context.media
    output = context.output_path(output_format)
    copied = copy_span(
        input_path=context.input_path,
        demuxer=context.demuxer,
        video_index=context.video_stream.index,
        audio_index=info.audio.index if info.audio is not None else None,
        output=output,
        muxer=get_format(output_format).encoder,
        start=start,
        end=end,
        deadline=context.deadline,
        on_progress=context.report_progress,
    )
    details.update(stream_copied=True, start_keyframe=round(copied.keyframe, 3), audio_copied=info.audio is not None)
    return _clip(context, output, output_format, duration=end - copied.keyframe, copied=True, details=details)


def _clip(
    context: ProcessingContext, output: Path, output_format: str, *, duration: float, copied: bool, details: dict
) -> ProcessingResult:
    """The result of either way of trimming: a video clip of ``duration`` seconds, with the
    input's audio when it has some."""
    return ProcessingResult(
        path=output,
        extension=output_format,
        media_type=MediaType.VIDEO,
        expect_video=True,
        expect_audio=context.media.audio is not None,
        expected_duration=duration,
        video_copied=copied,
        details=details,
    )


def _span(parameters: dict[str, Any], info: MediaInfo) -> tuple[float, float]:
    """(start, end) in seconds, the end no later than the video's."""
    start = float(parameters["start"])
    if parameters.get("end") is not None:
        end = float(parameters["end"])
    elif parameters.get("duration") is not None:
        end = start + float(parameters["duration"])
    else:
        end = info.duration or start
    if info.duration is not None:
        end = min(end, info.duration)
    return start, end


def _encode(info: MediaInfo, output_format: str) -> list[str]:
    # The audio is re-encoded too, never copied: a copied track would start at the packet the
    # demuxer's seek found, which (in a WebM without an index) can be the file's first.
    if output_format == "webm":
        audio = ["-c:a", "libopus", "-b:a", CONVERT_AUDIO_BITRATE, "-ac", "2"]
        return [*vp9_video_args(quality=TRIM_QUALITY), *(audio if info.audio else ["-an"])]
    audio = ["-c:a", "aac", "-b:a", CONVERT_AUDIO_BITRATE]
    return [*h264_video_args(quality=TRIM_QUALITY, preset=CONVERT_X264_PRESET), *(audio if info.audio else ["-an"])]


def _copy_refused(info: MediaInfo, output_format: str) -> str | None:
    """Why the streams cannot be copied into ``output_format`` as they are, or None."""
    video_codecs, audio_codecs = COPYABLE[output_format]
    label = output_format.upper()
    if info.video is not None and info.video.codec not in video_codecs:
        return f"{info.video.codec} video cannot be copied into {label}; the clip was re-encoded."
    if info.audio is not None and info.audio.codec not in audio_codecs:
        return f"{info.audio.codec} audio cannot be copied into {label}; the clip was re-encoded."
    return None
