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

The copy gives what ``ffmpeg.run_ffmpeg`` gives a command. It runs in a thread of its own,
supervised from the job's thread: progress (by packet time across the span) through the caller's
callback, at least every ``POLL_SECONDS``, which can stop the work (``OperationStopped``); the
job's deadline; a stall watchdog (no packet copied for ``STALL_TIMEOUT_SECONDS``: the job stops
waiting and the error is retryable, even when the read is stuck in the kernel; PyAV's read
timeout also cuts a single read that goes on that long, a demuxer scanning a hostile file); and
the output size cap. A file that cannot be read or written fails with a sentence for the user;
like the probes, libav runs inside the worker's forked work-horse, so even a crash in it ends
only that job.
"""

from __future__ import annotations

import errno
import logging
import threading
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
# How often the supervisor looks at the copy (and asks the progress callback, which also notices
# a cancel) while it runs; the copy itself checks for a stop at every packet.
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 3.0
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
STALLED = "Processing stalled: reading the file stopped making progress."


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
    stall_timeout: float | None = None,
) -> CopiedSpan:
    """Copy the streams ``video_index`` (and ``audio_index``) of ``input_path`` from the keyframe
    at or before ``start`` to ``end`` (seconds from the video stream's start) into ``output``.

    The copy runs in a thread of its own, supervised from the calling thread as ``run_ffmpeg``
    supervises FFmpeg: ``on_progress`` is called from here (where the job's database connection
    lives) at least every ``POLL_SECONDS``. Raises ``OperationStopped`` when it says stop,
    ``FFmpegTimeout`` past ``deadline`` (``time.monotonic()``), a retryable ``ProcessingError``
    when no packet was copied for ``stall_timeout`` seconds (default ``STALL_TIMEOUT_SECONDS``),
    and a ``ProcessingError`` with a message for the user when the input cannot be read, the
    output cannot be written or would exceed ``PROCESSING_MAX_OUTPUT_SIZE``."""
    if demuxer not in REMUXED_DEMUXERS:
        raise ValueError(f"A {demuxer} input is copied by the FFmpeg command, not remuxed.")
    stall_timeout = settings.STALL_TIMEOUT_SECONDS if stall_timeout is None else stall_timeout
    copier = _Copier(
        input_path=input_path,
        demuxer=demuxer,
        streams=_Streams(video=video_index, audio=audio_index, keep_tags=demuxer == "mov" and muxer in ("mp4", "mov")),
        output=output,
        muxer=muxer,
        start=start,
        end=end,
        read_timeout=stall_timeout,
    )
    thread = threading.Thread(target=copier.run, name=f"remux-{output.name}", daemon=True)
    thread.start()
    try:
        _supervise(thread, copier, deadline=deadline, stall_timeout=stall_timeout, on_progress=on_progress)
    finally:
        # However this is left (a stop, an error, RQ's job timeout raised in here), the copy stops
        # at its next packet and closes its files before the job's workspace goes. A thread stuck
        # in a read the kernel never returns from is left behind: it is a daemon, and the
        # work-horse it lives in exits after the job.
        copier.stopping.set()
        thread.join(timeout=STOP_GRACE_SECONDS)
    if copier.error is not None:
        raise copier.error
    if copier.result is None:  # the thread ended without a word: nothing to deliver
        raise ProcessingError(UNREADABLE, operator_detail=f"remux of {input_path.name} ended without a result")
    return copier.result


def _supervise(
    thread: threading.Thread,
    copier: _Copier,
    *,
    deadline: float,
    stall_timeout: float,
    on_progress: Callable[[float | None], bool],
) -> None:
    furthest = -1
    advanced_at = time.monotonic()
    while True:
        thread.join(timeout=POLL_SECONDS)
        if not thread.is_alive():
            return
        now = time.monotonic()
        if copier.packets > furthest:
            furthest, advanced_at = copier.packets, now
        if not on_progress(copier.percent):
            raise OperationStopped("The operation no longer wants this work.")
        if now > deadline:
            raise FFmpegTimeout("The copy was stopped when the time allowed for it ran out.")
        if now - advanced_at > stall_timeout:
            logger.warning("The copy has not advanced for %.0f seconds; stopping it", now - advanced_at)
            raise ProcessingError(STALLED, permanent=False, operator_detail=f"no packet copied for {stall_timeout} s")


class _Copier:
    """The copy itself, run in its own thread: what it reached (``packets``, ``percent``) for the
    supervisor, and its ``result`` or ``error`` once it ends."""

    def __init__(
        self,
        *,
        input_path: Path,
        demuxer: str,
        streams: _Streams,
        output: Path,
        muxer: str,
        start: float,
        end: float,
        read_timeout: float,
    ) -> None:
        self.input_path = input_path
        self.demuxer = demuxer
        self.streams = streams
        self.output = output
        self.muxer = muxer
        self.start = start
        self.end = end
        self.read_timeout = read_timeout
        self.stopping = threading.Event()
        self.packets = 0
        self.percent: float | None = None
        self.result: CopiedSpan | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._copy()
        except av.ExitError as e:
            # PyAV's read timeout cut a read that went on too long (a demuxer scanning a hostile
            # file): retryable, as a stalled FFmpeg is.
            self.error = ProcessingError(STALLED, permanent=False, operator_detail=f"remux: {e}")
        except av.FFmpegError as e:
            if e.errno == errno.ENOSPC:
                self.error = ProcessingError(NO_DISK_SPACE, permanent=False, operator_detail=str(e))
            else:
                self.error = ProcessingError(UNREADABLE, operator_detail=f"remux of {self.input_path.name}: {e}")
        except OSError as e:
            permanent = e.errno != errno.ENOSPC
            message = NO_DISK_SPACE if not permanent else UNREADABLE
            self.error = ProcessingError(message, permanent=permanent, operator_detail=f"remux: {e}")
        except Exception as e:  # noqa: BLE001 - handed to the supervising thread, which raises it
            self.error = e

    def _copy(self) -> CopiedSpan:
        streams = self.streams
        with _open_input(self.input_path, self.demuxer, self.read_timeout) as source:
            packets, keyframe = _packets_from_keyframe(source, streams.video, streams.audio, self.start)
            if keyframe <= self.start + END_EPSILON:
                return self._write(source, packets, keyframe)
        # The demuxer's seek landed past ``start`` (no usable index there): copy from the
        # beginning, as the command did when the keyframe search found nothing.
        with _open_input(self.input_path, self.demuxer, self.read_timeout) as source:
            packets, keyframe = _packets_from_keyframe(source, streams.video, streams.audio, 0.0)
            return self._write(source, packets, keyframe)

    def _write(self, source: Any, packets: Any, keyframe: float) -> CopiedSpan:
        streams = self.streams
        video = source.streams[streams.video]
        offset = stream_start_time(source, video)
        # The command's -ss was past the keyframe by END_EPSILON (none from 0) and its -t counted
        # from there.
        limit = self.end + (END_EPSILON if keyframe > 0 else 0.0)
        span = max(limit - keyframe, 1e-6)
        cap = settings.PROCESSING_MAX_OUTPUT_SIZE
        options = {"avoid_negative_ts": "make_zero"}
        if self.muxer in ("mp4", "mov"):
            options["movflags"] = "+faststart"
        with av.open(str(self.output), "w", format=self.muxer, container_options=options) as target:
            mapping = {streams.video: _add_stream(target, video, keep_tag=streams.keep_tags)}
            if streams.audio is not None:
                audio = source.streams[streams.audio]
                mapping[streams.audio] = _add_stream(target, audio, keep_tag=streams.keep_tags)
            ended: set[int] = set()
            size = 0
            for packet in packets:
                if self.stopping.is_set():
                    raise OperationStopped("The copy was stopped.")
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
                        f"The result would be larger than {human_size(cap)}, the most Konvrt delivers, "
                        "so it was not kept.",
                        operator_detail=f"remux reached PROCESSING_MAX_OUTPUT_SIZE after {size} bytes",
                    )
                packet.stream = mapping[index]
                target.mux(packet)
                self.packets += 1
                if at is not None:
                    self.percent = max(0.0, min(100.0, (at - keyframe) / span * 100))
        return CopiedSpan(keyframe=keyframe, packets=self.packets, bytes_written=size)


def _open_input(path: Path, demuxer: str, read_timeout: float) -> Any:
    return av.open(
        local_url(path),
        format=demuxer,
        options=safe_input_options(demuxer) | _SKIP_PICTURES,
        timeout=(_OPEN_TIMEOUT_SECONDS, read_timeout),
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


def _add_stream(target: Any, template: Any, *, keep_tag: bool) -> Any:
    # The codec's parameters as they are (extradata, rotation and other side data), from the
    # decoder's own description rather than an encoder looked up by name.
    stream = target.add_stream_from_template(template, opaque=True)
    if keep_tag:
        stream.codec_context.codec_tag = template.codec_context.codec_tag
    return stream
