"""How much memory an image job may use: a budget from ``IMAGE_MEMORY_LIMIT``, checked before any
pixel is decoded, so that no image job can exceed it (FFmpeg's runs have their address-space limit;
Pillow runs inside the worker, where such a limit would also cut off the worker's own memory).

Pillow holds every picture uncompressed (4 bytes a pixel for RGB and RGBA alike), and a job holds
several at once: the decoded input, its EXIF-rotated copy, a converted or flattened one, the
encoder's own buffers. What that costs per pixel was measured (peak resident memory above the
process's own, ``tests/processors/test_image_memory.py`` keeps it honest) for each output, with and
without transparency; a 49-megapixel PNG to WebP takes ~650 MB without transparency, ~1 GB with.
"""

from __future__ import annotations

from django.conf import settings

from apps.processors.exceptions import ProcessingError
from apps.processors.probe import ImageInfo

# Bytes per input pixel of a conversion, by output format: (opaque, transparent).
CONVERT_BYTES_PER_PIXEL = {"webp": (14.0, 22.5), "jpg": (11.0, 17.0), "png": (8.0, 8.0)}
# A resize holds the decoded input and its copies (per input pixel), then the resized picture and
# the encoder's buffers (per output pixel: a conversion's cost less the input's copies).
RESIZE_INPUT_BYTES_PER_PIXEL = (9.0, 13.0)
RESIZE_OUTPUT_BYTES_PER_PIXEL = {"webp": (10.0, 18.5), "jpg": (7.0, 13.0), "png": (4.0, 4.0)}
# Headroom over the measurements (content, encoder settings and allocator all vary a little).
MARGIN = 1.1
_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La", "P"}  # a palette may hold transparency


def image_work_bytes(info: ImageInfo, *, output_format: str, output_size: tuple[int, int] | None = None) -> int:
    """The memory an image job needs, estimated from the input's header. ``output_size`` for a
    resize (``None`` for a conversion)."""
    transparent = int(info.mode in _TRANSPARENT_MODES)
    pixels = max(info.canvas_width, info.width) * max(info.canvas_height, info.height)
    fmt = output_format if output_format in CONVERT_BYTES_PER_PIXEL else "png"
    if output_size is None:
        cost = pixels * CONVERT_BYTES_PER_PIXEL[fmt][transparent]
    else:
        width, height = output_size
        decoded = pixels / _jpeg_draft_scale(info, output_size) ** 2
        cost = (
            decoded * RESIZE_INPUT_BYTES_PER_PIXEL[transparent]
            + width * height * RESIZE_OUTPUT_BYTES_PER_PIXEL[fmt][transparent]
        )
    return int(cost * MARGIN)


def check_image_memory(info: ImageInfo, *, output_format: str, output_size: tuple[int, int] | None = None) -> None:
    """``ProcessingError`` with a sentence when the job would need more than ``IMAGE_MEMORY_LIMIT``."""
    limit = settings.IMAGE_MEMORY_LIMIT
    needed = image_work_bytes(info, output_format=output_format, output_size=output_size)
    if needed > limit:
        verb = "resize" if output_size is not None else f"convert to {output_format.upper()}"
        raise ProcessingError(
            f"This image ({info.width}×{info.height} pixels) is too large to {verb} within the memory one job "
            f"may use: it would need about {needed // 2**20} MB, and the limit is {limit // 2**20} MB. "
            "Try a smaller image.",
            operator_detail=f"estimated {needed} bytes > IMAGE_MEMORY_LIMIT {limit}",
        )


def _jpeg_draft_scale(info: ImageInfo, output_size: tuple[int, int]) -> int:
    """The reduction a JPEG is decoded at for a resize (``Image.draft``: 1, 2, 4 or 8, the largest
    that still gives at least the output size; either orientation of the output, to be safe)."""
    if info.format_name.upper() != "JPEG":
        return 1
    largest_side, smallest_side = max(output_size), min(output_size)
    scale = 1
    while scale < 8 and (
        max(info.width, info.height) // (scale * 2) >= largest_side
        and min(info.width, info.height) // (scale * 2) >= smallest_side
    ):
        scale *= 2
    return scale
