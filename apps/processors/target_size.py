"""video_compress with ``target_size_mb``: an MP4 that fits a size (10 MB for Discord, 25 MB for
email), and uses most of it.

The bitrate is planned from the probed duration: the target (1 MB = 1,000,000 bytes), aimed at
``AIM`` of it, less the MP4's own bytes and the audio's share (the AAC bitrate asked for, or the
copied track's own), spread over the video. x264 then encodes in two passes (the first only
analyses, the second spends the bits where the first found they matter), which lands within a few
percent of a planned average. The result is checked: at most the target and at least
``MIN_SHARE`` of it; a miss gets one corrective second pass at a bitrate scaled by how far it
missed (x264's first-pass statistics do not depend on the bitrate, so they are reused).

Quality has a floor: ``MIN_BITS_PER_PIXEL`` bits per pixel per frame, below which H.264 turns to
blocks. When the bitrate is under that floor at the picture's height (or ``max_height``), the
picture is made smaller step by step (1080, 720, 480, 360 lines, never enlarged); when it is
under the floor even at the smallest step, the target cannot be met at a watchable quality: the
API refuses it at upload (400, on ``target_size_mb``) when the upload's probe gives the duration,
and the worker fails it otherwise, both saying the smallest target that works. A video that needs
fewer bits than the target allows is encoded at its own bitrate, not padded to the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from apps.processors.audio_codecs import bitrate_bits
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.ffmpeg import input_args
from apps.processors.formats import MediaType
from apps.processors.input_checks import ParameterMismatch
from apps.processors.probe import MediaInfo, StreamInfo
from apps.processors.scaling import EVEN_DIMENSIONS, yuv420_picture
from apps.processors.stages import in_stage
from apps.processors.video import aac_audio_args, compress_video, container_args, map_streams

BYTES_PER_MB = 1_000_000
AIM = 0.95
MIN_SHARE = 0.85
MIN_BITS_PER_PIXEL = 0.03
# The heights tried, largest first, when the bitrate is too low for the picture's own.
LADDER = (1080, 720, 480, 360)
# MP4 indexes every video frame and audio packet (about 16 bytes each) plus a fixed header.
MP4_BYTES_PER_SAMPLE = 16
MP4_FIXED_BYTES = 4000
AAC_PACKETS_PER_SECOND = 47  # 1024 samples a packet at 48 kHz; 43 at 44.1 kHz
DEFAULT_FRAME_RATE = 30.0


@dataclass(frozen=True)
class SizePlan:
    video_bits_per_second: int
    audio_bits_per_second: int
    height: int  # the output picture's height (even)
    target_bytes: int
    # What the plan expects besides the video: the audio track and the MP4's own bytes.
    other_bytes: int
    # True when the video needs fewer bits than the target allows: no lower bound then.
    capped: bool


def compress(context: ProcessingContext) -> ProcessingResult:
    """video_compress's processor: by quality (CRF), or to a size when ``target_size_mb`` is given."""
    if context.parameters.get("target_size_mb") is None:
        return compress_video(context)
    return compress_to_size(context)


def check_target_size(parameters: dict[str, Any], info: MediaInfo) -> None:
    if parameters.get("target_size_mb") is not None and info.duration:
        plan_size(parameters, info)


def plan_size(parameters: dict[str, Any], info: MediaInfo) -> SizePlan:
    """The bitrates and picture height that fit ``target_size_mb``; ``ParameterMismatch`` when no
    watchable plan fits."""
    video = info.video
    duration = info.duration
    if video is None or not duration:
        raise ParameterMismatch(
            "target_size_mb", "The length of this video cannot be read, so no size can be planned for it."
        )
    target_mb = float(parameters["target_size_mb"])
    audio_bps = _audio_bits_per_second(info.audio, parameters["audio_bitrate"])
    fps = video.frame_rate or DEFAULT_FRAME_RATE
    overhead_bytes = MP4_FIXED_BYTES + MP4_BYTES_PER_SAMPLE * duration * (
        fps + (AAC_PACKETS_PER_SECOND if audio_bps else 0)
    )
    budget_bits = target_mb * BYTES_PER_MB * 8 * AIM - overhead_bytes * 8
    video_bps = (budget_bits - audio_bps * duration) / duration
    heights = _heights(video, parameters.get("max_height"))
    for height in heights:
        if video_bps >= _floor(video, height, fps):
            own = _own_video_bits_per_second(info)
            capped = own is not None and height == heights[0] and video_bps > own
            return SizePlan(
                video_bits_per_second=int(min(video_bps, own) if capped and own else video_bps),
                audio_bits_per_second=audio_bps,
                height=height,
                target_bytes=int(target_mb * BYTES_PER_MB),
                other_bytes=int(overhead_bytes + audio_bps * duration / 8),
                capped=capped,
            )
    smallest_bits = (_floor(video, heights[-1], fps) + audio_bps) * duration + overhead_bytes * 8
    smallest_mb = math.ceil(smallest_bits / 8 / AIM / BYTES_PER_MB * 10) / 10
    raise ParameterMismatch(
        "target_size_mb",
        f"{target_mb:g} MB is too small for this {_length(duration)} video to stay watchable: "
        f"even at {heights[-1]} lines it needs at least {smallest_mb:g} MB. Choose a target of "
        f"{smallest_mb:g} MB or more.",
    )


def compress_to_size(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    info = context.media
    plan = plan_size(parameters, info)
    output = context.output_path("mp4")
    passlog = context.workspace / "x264"
    video = context.video_stream
    picture = EVEN_DIMENSIONS if plan.height >= (video.height or 0) else f"scale=-2:{plan.height}:flags=bicubic"
    audio_args, audio_copied = aac_audio_args(info, bitrate=parameters["audio_bitrate"])
    source = input_args(context.input_path, demuxer=context.demuxer)

    def x264(bits_per_second: int, pass_number: int) -> list[str]:
        return [
            *["-c:v", "libx264", "-preset", parameters["preset"], "-b:v", str(bits_per_second)],
            *["-pass", str(pass_number), "-passlogfile", str(passlog), *yuv420_picture(picture)],
        ]

    first = [*source, "-map", f"0:{video.index}", *x264(plan.video_bits_per_second, 1), "-an", "-f", "null", "-"]
    in_stage(context, 0, 40).run_ffmpeg(first, duration=info.duration)

    def second_pass(bits_per_second: int, start: float, end: float) -> int:
        args = [
            *source,
            *map_streams(video=video, audio=info.audio),
            *x264(bits_per_second, 2),
            *audio_args,
            *container_args("mp4", output),
        ]
        in_stage(context, start, end).run_ffmpeg(args, duration=info.duration)
        return output.stat().st_size

    bitrate = plan.video_bits_per_second
    size = second_pass(bitrate, 40, 95)
    attempts = 1
    if not _in_band(size, plan):
        # Scale the video's bitrate by how far its share missed, aiming at the same point again.
        wanted_video_bytes = plan.target_bytes * AIM - plan.other_bytes
        missed_video_bytes = size - plan.other_bytes
        bitrate = max(1000, int(bitrate * wanted_video_bytes / max(1.0, missed_video_bytes)))
        size = second_pass(bitrate, 95, 100)
        attempts = 2
    if size > plan.target_bytes:
        raise ProcessingError(
            f"The video came out at {size / BYTES_PER_MB:.2f} MB and could not be made to fit "
            f"{plan.target_bytes / BYTES_PER_MB:g} MB. A slightly larger target would work.",
            operator_detail=f"plan {plan}, last video bitrate {bitrate}",
        )
    details: dict[str, Any] = {
        "audio_copied": audio_copied,
        "target_size_bytes": plan.target_bytes,
        "size_ratio": round(size / plan.target_bytes, 4),
        "video_bitrate": bitrate,
        "height": plan.height,
        "encodes": attempts,
    }
    if plan.capped:
        details["notice"] = (
            "This video needs fewer bits than the target allows, so it was encoded at its own bitrate "
            "and came out smaller than the target."
        )
    elif size < plan.target_bytes * MIN_SHARE:
        details["notice"] = "This video is simple enough that it came out smaller than the target."
    if size > context.input_path.stat().st_size:
        details["larger_than_input"] = True
    return ProcessingResult(
        path=output,
        extension="mp4",
        media_type=MediaType.VIDEO,
        expect_video=True,
        expect_audio=info.audio is not None,
        expected_duration=info.duration,
        details=details,
    )


def _in_band(size: int, plan: SizePlan) -> bool:
    if size > plan.target_bytes:
        return False
    return plan.capped or size >= plan.target_bytes * MIN_SHARE


def _heights(video: StreamInfo, max_height: int | None) -> list[int]:
    own = video.height or LADDER[-1]
    top = min(own, max_height) if max_height else own
    top -= top % 2
    return [top, *(step for step in LADDER if step < top)]


def _floor(video: StreamInfo, height: int, fps: float) -> float:
    """The fewest video bits a second that stay watchable at ``height`` lines."""
    width = height * (video.width or height * 16 / 9) / (video.height or height)
    return MIN_BITS_PER_PIXEL * width * height * fps


def _audio_bits_per_second(audio: StreamInfo | None, bitrate: str) -> int:
    if audio is None:
        return 0
    asked = bitrate_bits(bitrate)
    # A copied track (AAC at or under the bitrate asked for) keeps its own bitrate.
    if audio.codec == "aac" and audio.bit_rate and audio.bit_rate <= asked * 1.05:
        return audio.bit_rate
    return asked


def _own_video_bits_per_second(info: MediaInfo) -> int | None:
    video = info.video
    if video is not None and video.bit_rate:
        return video.bit_rate
    if info.bit_rate and info.audio is not None and info.audio.bit_rate:
        return max(0, info.bit_rate - info.audio.bit_rate)
    return info.bit_rate


def _length(duration: float) -> str:
    minutes, rest = divmod(round(duration), 60)
    if not minutes:
        return f"{rest}-second"
    return f"{minutes} min {rest} s" if rest else f"{minutes}-minute"
