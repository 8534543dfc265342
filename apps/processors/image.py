"""image_resize and image_convert with Pillow.

- Images are opened with their accepted format only (``Image.open(..., formats=[...])``) and
  refused above ``PROCESSING_MAX_IMAGE_PIXELS`` before any pixel is decoded.
- EXIF orientation is applied, so the output looks the way the photo looked on the phone; EXIF,
  XMP and comments are not copied (privacy). The ICC colour profile is kept, also when transparency
  is flattened for JPEG.
- Transparency is kept where the output can hold it (PNG, WebP, AVIF, GIF), including a PNG's
  colour key (tRNS) and a 16-bit grey PNG's. Saved as JPEG it is flattened onto white (JPEG has no
  alpha; black would be Pillow's default and looks like a bug).
- Large JPEGs are decoded at a reduced scale with ``draft()`` when the target is much smaller: the
  decoder skips work instead of decoding every pixel only to throw most of them away.
- Animations (GIF, APNG, WebP): converting to WebP keeps every frame, each frame's timing, the loop
  count and transparency, up to ``PROCESSING_MAX_ANIMATION_FRAMES`` frames and
  ``PROCESSING_MAX_ANIMATION_PIXELS`` decoded pixels; image_resize keeps an animated GIF or WebP
  animated in its own format, within the same budget. Every other output is the first frame, and
  the output's metadata says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from PIL import Image, ImageMath, ImageOps

from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.formats import FORMATS, MediaType, get_format
from apps.processors.inspection import check_image_pixels
from apps.processors.memory import check_image_memory
from apps.processors.probe import ImageInfo

logger = logging.getLogger(__name__)

# A resized image keeps its input's format when Konvrt writes it ("jpeg" is written as "jpg");
# anything else (BMP, TIFF, HEIC) becomes PNG.
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
# Outputs that keep an animation: image_convert writes animated WebP, image_resize keeps GIF and WebP.
CONVERT_ANIMATES = frozenset({"webp"})
RESIZE_ANIMATES = frozenset({"gif", "webp"})
# A frame without a delay is shown for this long, as browsers show such a GIF frame; written as 0
# an encoder merges it into the next frame and it is lost.
DEFAULT_FRAME_MS = 100
# Pillow's 16-bit greyscale modes (a 16-bit PNG or TIFF).
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


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
        frames = getattr(image, "n_frames", 1)
        try:
            if frames > 1 and extension in RESIZE_ANIMATES and _within_budget(context.image, target=target):
                _save_resized_animation(image, output, extension, target=target)
                details: dict[str, Any] = {"animated": True, "frames": frames}
            else:
                if image.format == "JPEG":
                    stored_target = (target[1], target[0]) if orientation in _SIDEWAYS else target
                    image.draft(None, stored_target)
                details = _first_frame_details(image)
                if frames > 1 and extension in RESIZE_ANIMATES:
                    details["notice"] = _over_budget_notice(context.image)
                picture = _resized(ImageOps.exif_transpose(image), target)
                _save(picture, output, extension, quality=RESIZE_QUALITY, source=image)
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
            if frames > 1 and extension in CONVERT_ANIMATES and image.format != "HEIF":
                _check_animation_budget(context.image)
                _save_animation(image, output, quality=quality)
                details: dict[str, Any] = {"animated": True, "frames": frames}
            else:
                details = _first_frame_details(image)
                _save(ImageOps.exif_transpose(image), output, extension, quality=quality, source=image)
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


def _save(image: Image.Image, path: Path, extension: str, *, quality: int, source: Image.Image) -> None:
    """Save one picture. ``source`` is the opened input: its colour profile is what the picture's
    colours mean, whatever conversions (orientation, resizing, flattening) made ``image``."""
    icc_profile = source.info.get("icc_profile") or image.info.get("icc_profile")
    image = _for_format(image, extension)
    # Only the colour profile and a palette's transparent index travel: EXIF (GPS, camera
    # serials), XMP and comments do not.
    transparency = image.info.get("transparency")
    image.info = {}
    options: dict[str, Any] = {"icc_profile": icc_profile} if icc_profile else {}
    if extension in ("png", "gif") and transparency is not None:
        options["transparency"] = transparency
    if extension == "jpg":
        options.update(quality=quality, optimize=True)
    elif extension == "webp":
        options.update(quality=quality, method=4)
    elif extension == "avif":
        options.update(quality=quality)
    image.save(path, get_format(extension).encoder, **options)


def _resized(picture: Image.Image, target: tuple[int, int]) -> Image.Image:
    picture = _full_colour(picture)
    return picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _full_colour(picture: Image.Image) -> Image.Image:
    """The picture in a mode that resizes and converts faithfully: palettes, single bits and colour
    keys to RGB(A) (Pillow resizes a palette with nearest-neighbour only, and a colour key means
    nothing once pixels are blended), 16 bits to 8 (see ``_eight_bit``)."""
    if picture.mode in _SIXTEEN_BIT:
        return _eight_bit(picture)
    if picture.mode in ("1", "P") or (picture.mode in ("L", "RGB") and picture.has_transparency_data):
        if picture.mode == "L":
            return picture.convert("LA")
        return picture.convert("RGBA" if picture.has_transparency_data else "RGB")
    return picture


def _eight_bit(picture: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (not clipped to white), its colour key (a tRNS grey
    value) kept as an alpha channel."""
    grey = picture.point(lambda value: value / 256).convert("L")
    key = picture.info.get("transparency")
    if isinstance(key, int):
        # Compared on the 16-bit values: Pillow's own conversion to RGBA clips them to 8 bits first
        # and so misses any key above 255.
        alpha = ImageMath.lambda_eval(lambda args: (args["grey"] != key) * 255, grey=picture.convert("I"))
        grey.putalpha(alpha.convert("L"))
    return grey


# --- animations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """An animation's frame durations (ms), how many times it plays (0: forever) and whether any
    frame has transparency."""

    durations: list[int]
    plays: int
    transparent: bool


def animation_timing(image: Image.Image) -> Timing:
    """Each frame's duration and the play count, as the input's format means them.

    A GIF without a NETSCAPE loop block plays once, and its loop count N means N repeats after
    the first play (N + 1 plays), as browsers show it; APNG's and WebP's counts are plays.
    """
    durations = []
    transparent = False
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        if image.format == "WEBP":
            image.load()  # WebP frames learn their duration when decoded
        durations.append(round(image.info.get("duration") or 0) or DEFAULT_FRAME_MS)
        transparent = transparent or image.has_transparency_data
    image.seek(0)
    loop = image.info.get("loop")
    if image.format == "GIF":
        plays = 1 if loop is None else (0 if loop == 0 else loop + 1)
    else:
        plays = loop or 0
    return Timing(durations=durations, plays=plays, transparent=transparent)


def _loop_option(extension: str, plays: int) -> dict[str, int]:
    if extension != "gif":
        return {"loop": plays}
    # GIF: no loop block plays once; loop=N repeats N times after the first play.
    return {} if plays == 1 else {"loop": 0 if plays == 0 else plays - 1}


def _save_animation(image: Image.Image, path: Path, *, quality: int) -> None:
    timing = animation_timing(image)
    # Pillow's WebP writer walks the source's frames one at a time (compositing each onto the
    # canvas), so the animation is encoded without holding every frame. The durations and the
    # play count are given explicitly: the writer would otherwise use the first frame's for all.
    # The canvas's background is transparent: browsers ignore a GIF's background colour.
    image.save(
        path,
        "WEBP",
        save_all=True,
        quality=quality,
        method=4,
        duration=timing.durations,
        background=(0, 0, 0, 0),
        **_loop_option("webp", timing.plays),
    )
    if timing.transparent:
        _mark_webp_alpha(path)


def _save_resized_animation(image: Image.Image, path: Path, extension: str, *, target: tuple[int, int]) -> None:
    timing = animation_timing(image)
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frames.append(_resized(image.convert("RGBA"), target))
    options: dict[str, Any] = {"duration": timing.durations, **_loop_option(extension, timing.plays)}
    if extension == "webp":
        options.update(quality=RESIZE_QUALITY, method=4, background=(0, 0, 0, 0))
    else:
        # Pillow quantises each RGBA frame to a palette, fully transparent pixels to one index.
        options.update(disposal=2, optimize=False)
    frames[0].save(path, get_format(extension).encoder, save_all=True, append_images=frames[1:], **options)
    if extension == "webp" and timing.transparent:
        _mark_webp_alpha(path)


def _mark_webp_alpha(path: Path) -> None:
    """Set the alpha flag of an animated WebP whose frames have transparency.

    libwebp crops each frame to the area that is not transparent and, when no cropped frame
    holds a transparent pixel, leaves the file's alpha flag (VP8X) unset, although the canvas
    around the frames is transparent: decoders then show that area black. The flag says "some
    frame has transparency", which is true of the source.
    """
    with path.open("r+b") as stream:
        header = bytearray(stream.read(21))
        if header[:4] != b"RIFF" or header[8:16] != b"WEBPVP8X":
            return
        stream.seek(20)
        stream.write(bytes([header[20] | _VP8X_ALPHA]))


_VP8X_ALPHA = 0x10


def _check_animation_budget(info: ImageInfo) -> None:
    frames, limit = info.frames, settings.PROCESSING_MAX_ANIMATION_FRAMES
    if frames > limit:
        raise ProcessingError(
            f"This animation has {frames} frames; at most {limit} can be kept in an animated WebP. "
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


def _within_budget(info: ImageInfo, *, target: tuple[int, int]) -> bool:
    """Whether a resized animation stays within the frames budget: its frame count, the pixels
    decoded, and the resized frames held until they are encoded (at most one image's pixels)."""
    return (
        info.frames <= settings.PROCESSING_MAX_ANIMATION_FRAMES
        and info.decoded_pixels <= settings.PROCESSING_MAX_ANIMATION_PIXELS
        and info.frames * target[0] * target[1] <= settings.PROCESSING_MAX_IMAGE_PIXELS
    )


def _over_budget_notice(info: ImageInfo) -> str:
    return (
        f"This animation has {info.frames} frames, more than can be resized within the limits; "
        "only its first frame was kept."
    )


def _for_format(image: Image.Image, extension: str) -> Image.Image:
    """The image in a mode the output format can store, transparency flattened for JPEG."""
    image = _full_colour(image) if image.mode in _SIXTEEN_BIT or image.mode in ("L", "RGB") else image
    has_alpha = image.has_transparency_data
    if extension == "jpg":
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image if image.mode in ("RGB", "L") else image.convert("RGB")
    if extension in ("png", "gif"):
        return image if image.mode in ("RGB", "RGBA", "L", "LA", "P") else image.convert("RGBA" if has_alpha else "RGB")
    # WebP and AVIF hold RGB or RGBA.
    return image if image.mode in ("RGB", "RGBA") else image.convert("RGBA" if has_alpha else "RGB")
