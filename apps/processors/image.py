"""image_resize and image_convert with Pillow.

- Images are opened with their accepted format only (``Image.open(..., formats=[...])``) and
  refused above ``PROCESSING_MAX_IMAGE_PIXELS`` before any pixel is decoded.
- EXIF orientation is applied, so the output looks the way the photo looked on the phone; EXIF,
  XMP and comments are not copied (privacy). The ICC colour profile is kept.
- Transparency saved as JPEG is flattened onto white (JPEG has no alpha; black would be Pillow's
  default and looks like a bug).
- Large JPEGs are decoded at a reduced scale with ``draft()`` when the target is much smaller: the
  decoder skips work instead of decoding every pixel only to throw most of them away.
- Animated GIFs: converting to WebP keeps the animation (every frame, its timing and looping, up to
  ``PROCESSING_MAX_ANIMATION_FRAMES``); every other output (JPEG, PNG, and image_resize, whose
  output for a GIF is PNG) is the first frame, and the output's metadata says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from PIL import Image, ImageOps

from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.formats import FORMATS, MediaType, get_format
from apps.processors.inspection import check_image_pixels
from apps.processors.memory import check_image_memory
from apps.processors.probe import ImageInfo

logger = logging.getLogger(__name__)

# image_resize keeps these formats; anything else (GIF, BMP) becomes PNG.
# A resized image keeps its input's format when Konvrt writes it ("jpeg" is written as "jpg").
RESIZE_KEEPS = {
    entry.extension: entry.alias_of or entry.extension
    for entry in FORMATS.values()
    if entry.media_type == MediaType.IMAGE and get_format(entry.alias_of or entry.extension).writable
}
RESIZE_QUALITY = 90
_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 rotate by 90°: the stored picture is the displayed one turned on its side.
_SIDEWAYS = {5, 6, 7, 8}
# Decode errors Pillow raises on damaged files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def resize_image(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    extension = RESIZE_KEEPS.get(context.input_extension, "png")
    output = context.output_path(extension)
    with _open(context) as image:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        shown_size = (image.height, image.width) if orientation in _SIDEWAYS else image.size
        target = target_size(
            shown_size,
            width=parameters.get("width"),
            height=parameters.get("height"),
            maintain_aspect_ratio=parameters.get("maintain_aspect_ratio", True),
        )
        check_image_pixels(*target)
        check_image_memory(context.image, output_format=extension, output_size=target)
        if image.format == "JPEG":
            stored_target = (target[1], target[0]) if orientation in _SIDEWAYS else target
            image.draft(None, stored_target)
        details = _first_frame_details(image)
        try:
            picture = ImageOps.exif_transpose(image)
            if picture.mode in ("1", "P"):
                # Pillow resizes palette images with nearest-neighbour only: go to full colour first.
                picture = picture.convert("RGBA" if picture.has_transparency_data else "RGB")
            picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            _save(picture, output, extension, quality=RESIZE_QUALITY)
        except _DECODE_ERRORS as e:
            raise _unreadable(e) from e
    return ProcessingResult(path=output, extension=extension, media_type=MediaType.IMAGE, details=details)


def convert_image(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    extension = parameters["output_format"]
    quality = parameters["quality"]
    output = context.output_path(extension)
    check_image_memory(context.image, output_format=extension)
    with _open(context) as image:
        frames = getattr(image, "n_frames", 1)
        try:
            if frames > 1 and extension == "webp":
                _save_animation(image, output, info=context.image, quality=quality)
                details: dict[str, Any] = {"animated": True, "frames": frames}
            else:
                details = _first_frame_details(image)
                _save(ImageOps.exif_transpose(image), output, extension, quality=quality)
        except _DECODE_ERRORS as e:
            raise _unreadable(e) from e
    return ProcessingResult(path=output, extension=extension, media_type=MediaType.IMAGE, details=details)


def target_size(
    size: tuple[int, int], *, width: int | None, height: int | None, maintain_aspect_ratio: bool
) -> tuple[int, int]:
    """The output size for a resize of ``size`` (as displayed).

    Keeping the aspect ratio, the image is scaled to fit inside width × height (only one given:
    to that width or height), up or down. Without it, the image is stretched to exactly the given
    width and height; a side not given keeps its length.
    """
    original_width, original_height = size
    if not maintain_aspect_ratio:
        return (width or original_width, height or original_height)
    scales = []
    if width:
        scales.append(width / original_width)
    if height:
        scales.append(height / original_height)
    scale = min(scales)
    return (max(1, round(original_width * scale)), max(1, round(original_height * scale)))


# --- opening and saving ---------------------------------------------------------------------------
def _open(context: ProcessingContext) -> Image.Image:
    try:
        image = Image.open(context.input_path, formats=[context.pillow_format])
    except _DECODE_ERRORS as e:
        raise _unreadable(e) from e
    # Checked again on the file actually decoded, not only on the probe's numbers.
    try:
        check_image_pixels(image.width, image.height)
    except ProcessingError:
        image.close()
        raise
    return image


def _unreadable(error: Exception) -> ProcessingError:
    return ProcessingError(
        "This image could not be decoded. It may be damaged or incomplete.", operator_detail=repr(error)
    )


def _first_frame_details(image: Image.Image) -> dict[str, Any]:
    frames = getattr(image, "n_frames", 1)
    return {"animated_source": True, "frames_used": 1, "source_frames": frames} if frames > 1 else {}


def _save(image: Image.Image, path: Path, extension: str, *, quality: int) -> None:
    image = _for_format(image, extension)
    # Only the colour profile and a palette's transparent index travel: EXIF (GPS, camera
    # serials), XMP and comments do not.
    icc_profile, transparency = image.info.get("icc_profile"), image.info.get("transparency")
    image.info = {}
    options: dict[str, Any] = {"icc_profile": icc_profile} if icc_profile else {}
    if extension == "png" and transparency is not None:
        options["transparency"] = transparency
    if extension == "jpg":
        options.update(quality=quality, optimize=True)
    elif extension == "webp":
        options.update(quality=quality, method=4)
    image.save(path, get_format(extension).encoder, **options)


def _save_animation(image: Image.Image, path: Path, *, info: ImageInfo, quality: int) -> None:
    frames, limit = info.frames, settings.PROCESSING_MAX_ANIMATION_FRAMES
    if frames > limit:
        raise ProcessingError(
            f"This animated GIF has {frames} frames; at most {limit} can be kept in an animated WebP. "
            "Convert it to PNG or JPEG to keep its first frame."
        )
    # Every frame is decoded onto the whole canvas, so a few frames of a huge canvas cost as much
    # as many small ones: the budget is on their product.
    budget = settings.PROCESSING_MAX_ANIMATION_PIXELS
    if info.decoded_pixels > budget:
        raise ProcessingError(
            f"This animation has {frames} frames of {info.canvas_pixels / 1_000_000:.1f} megapixels; converting it "
            f"would decode more than the {budget / 1_000_000:g} megapixels allowed for an animated WebP. "
            "Convert it to PNG or JPEG to keep its first frame."
        )
    # Pillow's WebP writer walks the GIF's frames one at a time and reads each frame's duration
    # and the loop count from it, so the animation is encoded without holding every frame.
    image.save(path, "WEBP", save_all=True, quality=quality, method=4)


def _for_format(image: Image.Image, extension: str) -> Image.Image:
    """The image in a mode the output format can store, transparency flattened for JPEG."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting values above 255 clip to white.
        image = image.point(lambda value: value / 256).convert("L")
    has_alpha = image.has_transparency_data
    if extension == "jpg":
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image if image.mode in ("RGB", "L") else image.convert("RGB")
    if extension == "png":
        return image if image.mode in ("RGB", "RGBA", "L", "LA", "P") else image.convert("RGBA" if has_alpha else "RGB")
    return image if image.mode in ("RGB", "RGBA") else image.convert("RGBA" if has_alpha else "RGB")
