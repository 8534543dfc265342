"""video_to_gif: a short clip of a video as an animated GIF or animated WebP that loops.

GIF holds 256 colours a frame, so the palette is made for the clip itself (``palettegen``, then
``paletteuse`` with error diffusion): a generic palette bands every gradient. Palette generation
needs the whole clip before the first frame can be written. When the clip's frames fit
``SINGLE_PASS_BUDGET_BYTES`` both happen in one FFmpeg run, the frames waiting in memory; a longer
or larger clip is read twice instead (the palette first, into the workspace), so memory stays
bounded whatever the caps allow (30 s at 30 fps and 1280 px would be over 3 GB of frames).
Animated WebP (libwebp) needs no palette and is written as the frames come.

The clip is never enlarged: a width above the video's own, or a frame rate above its own, is
lowered to it (the output's metadata says what was used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.ffmpeg import input_args, output_args
from apps.processors.formats import MediaType
from apps.processors.input_checks import ParameterMismatch, seconds
from apps.processors.probe import MediaInfo
from apps.processors.stages import in_stage

SINGLE_PASS_BUDGET_BYTES = 256 * 1024 * 1024
# Frames wait as 32-bit RGB between the scaler and the palette.
BYTES_PER_PIXEL = 4
PALETTE = "palettegen=stats_mode=diff"
# Error diffusion limited to the rectangle that changed, so still areas do not shimmer.
DITHER = "paletteuse=dither=sierra2_4a:diff_mode=rectangle"
WEBP_QUALITY = "75"


def check_gif(parameters: dict[str, Any], info: MediaInfo) -> None:
    start = parameters["start"]
    if info.duration is not None and start >= info.duration:
        raise ParameterMismatch(
            "start", f"start ({seconds(start)}) is at or after the end of this video ({seconds(info.duration)})."
        )


def video_to_gif(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    info = context.media
    check_gif(parameters, info)
    video = context.video_stream
    start = float(parameters["start"])
    length = float(parameters["duration"])
    if info.duration is not None:
        length = min(length, info.duration - start)
    fps = min(parameters["fps"], video.frame_rate) if video.frame_rate else parameters["fps"]
    width = min(parameters["width"], video.width) if video.width else parameters["width"]
    height = round(width * video.height / video.width) if video.width and video.height else width
    frames = f"fps={fps:g},scale={width}:-1:flags=lanczos"
    output_format = parameters["output_format"]
    output = context.output_path(output_format)
    clip = [
        *(["-ss", f"{start:.3f}"] if start > 0 else []),
        "-t",
        f"{length:.3f}",
        *input_args(context.input_path, demuxer=context.demuxer),
    ]
    details: dict[str, Any] = {"fps": fps, "width": width, "start": start, "duration": round(length, 3)}
    if output_format == "webp":
        codec = ["-c:v", "libwebp_anim", "-lossless", "0", "-quality", WEBP_QUALITY, "-loop", "0"]
        args = [*clip, "-map", f"0:{video.index}", "-vf", frames, *codec, *output_args(output, muxer="webp")]
        context.run_ffmpeg(args, duration=length)
    elif length * fps * width * height * BYTES_PER_PIXEL <= SINGLE_PASS_BUDGET_BYTES:
        graph = f"[0:{video.index}]{frames},split=3[a][b][c];[a]{PALETTE}[p];[b][p]{DITHER}[gif]"
        args = [
            *clip,
            "-filter_complex",
            graph,
            "-map",
            "[gif]",
            "-loop",
            "0",
            *output_args(output, muxer="gif"),
            # The frames also flow to a null output, so that FFmpeg's progress (and the stall
            # watchdog) sees the clip being read while the palette is still being made.
            "-map",
            "[c]",
            "-f",
            "null",
            "-",
        ]
        context.run_ffmpeg(args, duration=length)
        details["passes"] = 1
    else:
        palette = context.workspace / "palette.png"
        # As above, the frames also flow to a null output while the palette is made.
        graph = f"[0:{video.index}]{frames},split[a][c];[a]{PALETTE}[p]"
        first = [*clip, "-filter_complex", graph, "-map", "[p]", "-frames:v", "1", "-update", "1"]
        first += [*output_args(palette, muxer="image2"), "-map", "[c]", "-f", "null", "-"]
        in_stage(context, 0, 40).run_ffmpeg(first, duration=length)
        second = [
            *clip,
            *_palette_input(palette),
            "-filter_complex",
            f"[0:{video.index}]{frames}[x];[x][1:v]{DITHER}[gif]",
            "-map",
            "[gif]",
            "-loop",
            "0",
        ]
        in_stage(context, 40, 100).run_ffmpeg([*second, *output_args(output, muxer="gif")], duration=length)
        details["passes"] = 2
    return ProcessingResult(path=output, extension=output_format, media_type=MediaType.IMAGE, details=details)


def _palette_input(palette: Path) -> list[str]:
    # Our own file, written by the first pass: still opened only as a PNG, through ``file``.
    return ["-f", "png_pipe", "-protocol_whitelist", "file", "-i", f"file:{palette.absolute()}"]
