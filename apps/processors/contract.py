"""The contract between the operations layer and the processors.

A processor is a function ``(ProcessingContext) -> ProcessingResult`` named by its registry entry.
It reads a local copy of the input, writes one output file into its workspace and says what the
output should contain; the caller (``apps/operations/services/processing.py``) does everything
around it: claiming, fetching, inspecting, verifying, storing and the status changes. Processors
never touch storage, the database or the queue, so each one can be run on a file alone: a context
needs the operation's name and media type, its parameters, the paths and a progress callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.processors.ffmpeg import FFmpegResult, ProgressCallback, run_ffmpeg
from apps.processors.formats import MediaType
from apps.processors.probe import ImageInfo, MediaInfo, StreamInfo


def _keep_going(percent: float | None) -> bool:
    return True


@dataclass(frozen=True)
class ProcessingContext:
    operation: str  # the registry name: "video_compress"
    media_type: MediaType  # of the input
    parameters: dict[str, Any]
    input_path: Path
    input_extension: str
    # The FFmpeg demuxer or Pillow format the input is decoded with (see ``input_decoder``).
    input_format: str
    input_info: MediaInfo | ImageInfo
    workspace: Path
    # time.monotonic() by which processing must be over, leaving time to store the output.
    deadline: float
    # Told the percentage done (None: alive, amount unknown); returning False stops the work
    # (``OperationStopped``). Without one, the work runs to its end.
    report_progress: ProgressCallback = _keep_going
    # Every FFmpeg run of this job, for the operator details of a failed output check.
    ffmpeg_runs: list[FFmpegResult] = field(default_factory=list)

    @property
    def media(self) -> MediaInfo:
        if not isinstance(self.input_info, MediaInfo):
            raise TypeError(f"{self.operation} needs an audio or video input.")
        return self.input_info

    @property
    def image(self) -> ImageInfo:
        if not isinstance(self.input_info, ImageInfo):
            raise TypeError(f"{self.operation} needs an image input.")
        return self.input_info

    # An operation that needs a stream says so in its registry entry (``required_stream``) and
    # inspection refuses an input without it, so its processor can rely on these two.
    @property
    def video_stream(self) -> StreamInfo:
        stream = self.media.video
        if stream is None:
            raise TypeError(f"{self.operation} needs an input with a video stream.")
        return stream

    @property
    def audio_stream(self) -> StreamInfo:
        stream = self.media.audio
        if stream is None:
            raise TypeError(f"{self.operation} needs an input with an audio stream.")
        return stream

    @property
    def demuxer(self) -> str:
        return self.input_format

    def measured_from(self, stream: StreamInfo) -> StreamSource:
        """Where the final check measures the length the output must have: ``stream`` of the input."""
        return StreamSource(
            path=self.input_path, demuxer=self.input_format, stream_index=stream.index, kind=stream.kind
        )

    @property
    def pillow_format(self) -> str:
        return self.input_format

    def output_path(self, extension: str) -> Path:
        return self.workspace / f"output.{extension}"

    def seconds_left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def run_ffmpeg(self, args: list[str], *, duration: float | None) -> FFmpegResult:
        """Run FFmpeg within the job's time, reporting progress and stopping on a cancel."""
        result = run_ffmpeg(args, duration=duration, timeout=self.seconds_left(), on_progress=self.report_progress)
        self.ffmpeg_runs.append(result)
        return result

    @property
    def ffmpeg_stderr_tail(self) -> str:
        return next((run.stderr_tail for run in reversed(self.ffmpeg_runs) if run.stderr_tail), "")


@dataclass(frozen=True)
class StreamSource:
    """The input stream an output was made from, for the final check to measure when the headers'
    durations disagree (a track shorter than its container, a header that overstates its length)."""

    path: Path
    demuxer: str
    stream_index: int
    kind: str  # "audio" or "video": the output's stream of the same kind is measured against it


@dataclass(frozen=True)
class ProcessingResult:
    path: Path
    extension: str
    # The output's kind: audio_extract reads a video and writes audio.
    media_type: MediaType
    expect_video: bool = False
    expect_audio: bool = False
    expected_duration: float | None = None
    # The input stream ``expected_duration`` is the length of; when given and the output's header
    # disagrees with it, both streams are measured from their packets before the output is refused.
    duration_source: StreamSource | None = None
    # The output's video stream is the input's, copied packet for packet from a keyframe on (a
    # stream-copy trim): the final check reads the output's headers and checks that it opens on a
    # keyframe, instead of decoding a picture the upload's check decoded already.
    video_copied: bool = False
    # What the processor decided (stream copy, first GIF frame, ...), shown in the output's metadata.
    details: dict[str, Any] = field(default_factory=dict)


Processor = Callable[[ProcessingContext], ProcessingResult]
