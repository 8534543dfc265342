"""The picture size of an H.264 output: even dimensions (4:2:0 needs them), and at most a given
height without ever enlarging."""

from __future__ import annotations

EVEN_DIMENSIONS = "scale=trunc(iw/2)*2:trunc(ih/2)*2"
# The heights ``video_compress`` offers as ``max_height``.
MAX_HEIGHTS = (2160, 1440, 1080, 720, 480, 360)


def fit_height(max_height: int | None) -> str:
    """An FFmpeg scale filter: the input's size made even, or ``max_height`` lines (width in
    proportion, even) when the picture is taller. The height is the picture as shown: FFmpeg
    applies a phone video's rotation before this filter."""
    if max_height is None:
        return EVEN_DIMENSIONS
    height = max_height - max_height % 2
    # min() in the expression: the probed height is the coded one, before any rotation.
    return f"scale=-2:'trunc(min(ih\\,{height})/2)*2':flags=bicubic"


def yuv420_picture(picture: str = EVEN_DIMENSIONS) -> list[str]:
    """The video filter and colour-range options of a 4:2:0 output sized by ``picture``.

    Full-range ("yuvj", PC range) input such as an old camera's MJPEG is scaled to the limited (TV)
    range that yuv420p means and players expect; without ``out_range`` the picture is tagged yuvj420p."""
    return ["-vf", f"{picture}:out_range=tv,format=yuv420p", "-color_range", "tv"]
