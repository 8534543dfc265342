"""Copying a span of a video's streams into a new container in process (a stream-copy trim).

What ``ffmpeg -ss <keyframe> -i in -t <length> -map … -c copy -avoid_negative_ts make_zero
-map_metadata -1 -map_chapters -1 [-movflags +faststart] out`` does, through PyAV (FFmpeg's own
libraries, already loaded for the probes), without starting the FFmpeg program: a copy of a short
clip takes a few tens of milliseconds, which starting a large static FFmpeg build and letting it
analyse the input again would double.

The packets written are the command's (the tests compare the two on the same inputs): the seek is
the demuxer's own (backward, to the keyframe at or before ``start``), video packets before that
keyframe are dropped, each stream ends at its first packet whose decoding time is past ``end``,
the muxer shifts the timestamps so that the clip starts at zero, the container's metadata and
chapters are not carried over (the codec parameters, rotation included, are), and MP4/MOV get
``faststart``.

Only inputs whose container indexes its keyframes and declares its streams in a header are copied
this way (``REMUXED_DEMUXERS``: MP4/MOV/M4V/3GP and Matroska/WebM, cues or not; MOV edit lists
are applied by the demuxer exactly as for the command). MPEG-TS/PS and FLV can carry timestamp
jumps that the FFmpeg program smooths over while copying and a plain remux would write as they
are, and AVI often carries no presentation times at all; those inputs keep the FFmpeg command
(``trim.py``).

The loop gives what ``ffmpeg.run_ffmpeg`` gives a command: progress (by packet time across the
span) through the caller's callback, which can stop the work (``OperationStopped``) and is asked
at least every ``CHECK_EVERY_PACKETS`` packets; the job's deadline; a stall watchdog (each read of
the input may block for at most ``STALL_TIMEOUT_SECONDS``: PyAV's read timeout interrupts it); and
the output size cap. A file that cannot be read or written fails with a sentence for the user;
like the probes, libav runs inside the worker's forked work-horse, so even a crash in it ends only
that job.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from django.conf import settings

from apps.core.utils import human_size
from apps.processors.exceptions import FFmpegTimeout, OperationStopped, ProcessingError
from apps.processors.probe import local_url, safe_input_options, stream_start_time

logger = logging.getLogger(__name__)

# Containers whose keyframes the demuxer finds from an index and whose streams are declared in a
# header, so that neither the seek nor the codec parameters depend on decoding (see the module's
# docstring for the others).
REMUXED_DEMUXERS = frozenset({"mov", "matroska"})
# How often the loop asks the progress callback (which also notices a cancel) and the clock: a
# packet of a 1080p stream takes microseconds to copy, so this is well under a second.
CHECK_EVERY_PACKETS = 32
# Packets (and their bytes) read after the seek while looking for the first video keyframe: beyond
# either the video has no keyframe where its index says, and the copy fails rather than holding
# the file in memory. Past the keyframe each packet is written as it is read.
MAX_PACKETS_BEFORE_KEYFRAME = 10_000
MAX_BYTES_BEFORE_KEYFRAME = 64 * 1024 * 1024
# A packet ``end`` or later (its decoding time) ends its stream; the command's ``-ss`` was past
# the keyframe by this much, so that FFmpeg's seek found that keyframe, and its ``-t`` counted
# from there.
END_EPSILON = 0.001
# Header-only opening: no picture is decoded to analyse the streams (both containers declare
# their streams' parameters), as in ``probe.keyframe_at_or_before``.
_SKIP_PICTURES = {"skip_frame": "all"}
_OPEN_TIMEOUT_SECONDS = 30

UNREADABLE = "The file could not be read. It may be damaged, incomplete or not what its name says."
NO_DISK_SPACE = "The server ran out of disk space while processing this file."


@dataclass(frozen=True)
class _Streams:
    video: int
    audio: int | None
    # An MP4/MOV input's sample entries (hvc1 rather than hev1, which Apple players need) are
    # valid in an MP4/MOV output, and the command kept them; elsewhere the muxer picks its own.
    keep_tags: bool


@dataclass(frozen=True)
class CopiedSpan:
    # Where the copy starts, in seconds from the start of the input's video stream: the keyframe
    # at or before the requested start (0.0 when the seek found none before it).
    keyframe: float
    packets: int
    bytes_written: int


def copy_span(
    *,
    input_path: Path,
    demuxer: str,
    video_index: int,
    audio_index: int | None,
    output: Path,
    muxer: str,
    start: float,
    end: float,
    deadline: float,
    on_progress: Callable[[float | None], bool],
) -> CopiedSpan:
    """Copy the streams ``video_index`` (and ``audio_index``) of ``input_path`` from the keyframe
    at or before ``start`` to ``end`` (seconds from the video stream's start) into ``output``.

    Raises ``OperationStopped`` when ``on_progress`` says stop, ``FFmpegTimeout`` past
    ``deadline`` (``time.monotonic()``), and a ``ProcessingError`` with a message for the user
    when the input cannot be read, the output cannot be written or would exceed
    ``PROCESSING_MAX_OUTPUT_SIZE``."""
    if demuxer not in REMUXED_DEMUXERS:
        raise ValueError(f"A {demuxer} input is copied by the FFmpeg command, not remuxed.")
    streams = _Streams(video=video_index, audio=audio_index, keep_tags=demuxer == "mov" and muxer in ("mp4", "mov"))
    try:
        with _open_input(input_path, demuxer) as source:
            packets, keyframe = _packets_from_keyframe(source, video_index, audio_index, start)
            if keyframe > start + END_EPSILON:
                # The demuxer's seek landed past ``start`` (no usable index there): copy from
                # the beginning, as the command did when the keyframe search found nothing.
                source.close()
                with _open_input(input_path, demuxer) as again:
                    packets, keyframe = _packets_from_keyframe(again, video_index, audio_index, 0.0)
                    return _write(again, packets, keyframe, streams, output, muxer, end, deadline, on_progress)
            return _write(source, packets, keyframe, streams, output, muxer, end, deadline, on_progress)
    except av.ExitError as e:
        # PyAV's read timeout interrupted a read that blocked (a stuck disk): retryable, as a
        # stalled FFmpeg is.
        raise ProcessingError(
            "Processing stalled: reading the file stopped making progress.",
            permanent=False,
            operator_detail=f"remux of {input_path.name}: {e}",
        ) from e
    except av.FFmpegError as e:
        if e.errno == errno.ENOSPC:
            raise ProcessingError(NO_DISK_SPACE, permanent=False, operator_detail=str(e)) from e
        raise ProcessingError(UNREADABLE, operator_detail=f"remux of {input_path.name}: {e}") from e
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ProcessingError(NO_DISK_SPACE, permanent=False, operator_detail=str(e)) from e
        raise


def _open_input(path: Path, demuxer: str) -> Any:
    return av.open(
        local_url(path),
        format=demuxer,
        options=safe_input_options(demuxer) | _SKIP_PICTURES,
        timeout=(_OPEN_TIMEOUT_SECONDS, settings.STALL_TIMEOUT_SECONDS),
    )


def _packets_from_keyframe(source: Any, video_index: int, audio_index: int | None, start: float) -> tuple[Any, float]:
    """(an iterator of the mapped streams' packets from the first video keyframe on, with the
    audio read before it; that keyframe's time), after a backward seek to ``start``."""
    video = source.streams[video_index]
    offset = stream_start_time(source, video)
    if start > 0 and video.time_base:
        source.seek(int((start + offset) / video.time_base), stream=video, backward=True, any_frame=False)
    streams = [video] if audio_index is None else [video, source.streams[audio_index]]
    demuxed = source.demux(streams)
    held = []
    held_bytes = 0
    for count, packet in enumerate(demuxed):
        if count >= MAX_PACKETS_BEFORE_KEYFRAME or held_bytes >= MAX_BYTES_BEFORE_KEYFRAME:
            break
        if packet.size == 0:
            continue
        held_bytes += packet.size
        if packet.stream.index != video_index:
            # Audio the demuxer gives before the keyframe: the command copies it too.
            held.append(packet)
            continue
        if not packet.is_keyframe or packet.pts is None:
            continue  # the command drops video before its first keyframe as well
        held.append(packet)
        keyframe = max(0.0, float(packet.pts * video.time_base) - offset)
        return _chain(held, demuxed), keyframe
    raise ProcessingError(
        "The video has no keyframe to start a copy from; try an accurate trim instead.",
        operator_detail=f"no keyframe within {MAX_PACKETS_BEFORE_KEYFRAME} packets after seeking to {start:.3f} s",
    )


def _chain(held: list[Any], rest: Any) -> Any:
    yield from held
    yield from rest


def _write(
    source: Any,
    packets: Any,
    keyframe: float,
    streams: _Streams,
    output: Path,
    muxer: str,
    end: float,
    deadline: float,
    on_progress: Callable[[float | None], bool],
) -> CopiedSpan:
    video = source.streams[streams.video]
    offset = stream_start_time(source, video)
    # The command's -ss was past the keyframe by END_EPSILON (none from 0) and its -t counted
    # from there.
    limit = end + (END_EPSILON if keyframe > 0 else 0.0)
    span = max(limit - keyframe, 1e-6)
    cap = settings.PROCESSING_MAX_OUTPUT_SIZE
    options = {"avoid_negative_ts": "make_zero"}
    if muxer in ("mp4", "mov"):
        options["movflags"] = "+faststart"
    with av.open(str(output), "w", format=muxer, container_options=options) as target:
        mapping = {streams.video: _add_stream(target, video, keep_tag=streams.keep_tags)}
        if streams.audio is not None:
            mapping[streams.audio] = _add_stream(target, source.streams[streams.audio], keep_tag=streams.keep_tags)
        ended: set[int] = set()
        written = size = 0
        for packet in packets:
            index = packet.stream.index
            if packet.size == 0 or index in ended:
                continue
            time_base = packet.time_base or packet.stream.time_base
            stamp = packet.dts if packet.dts is not None else packet.pts
            at = float(stamp * time_base) - offset if stamp is not None and time_base else None
            if at is not None and at >= limit:
                ended.add(index)
                if len(ended) == len(mapping):
                    break
                continue
            size += packet.size
            if size >= cap:
                raise ProcessingError(
                    f"The result would be larger than {human_size(cap)}, the most Konvrt delivers, so it was not kept.",
                    operator_detail=f"remux reached PROCESSING_MAX_OUTPUT_SIZE after {size} bytes",
                )
            packet.stream = mapping[index]
            target.mux(packet)
            written += 1
            if written % CHECK_EVERY_PACKETS == 0:
                _check(at, keyframe, span, deadline, on_progress)
    return CopiedSpan(keyframe=keyframe, packets=written, bytes_written=size)


def _add_stream(target: Any, template: Any, *, keep_tag: bool) -> Any:
    # The codec's parameters as they are (extradata, rotation and other side data), from the
    # decoder's own description rather than an encoder looked up by name.
    stream = target.add_stream_from_template(template, opaque=True)
    if keep_tag:
        stream.codec_context.codec_tag = template.codec_context.codec_tag
    return stream


def _check(
    at: float | None, keyframe: float, span: float, deadline: float, on_progress: Callable[[float | None], bool]
) -> None:
    percent = None if at is None else max(0.0, min(100.0, (at - keyframe) / span * 100))
    if not on_progress(percent):
        raise OperationStopped("The operation no longer wants this work.")
    if time.monotonic() > deadline:
        raise FFmpegTimeout("The copy was stopped when the time allowed for it ran out.")
