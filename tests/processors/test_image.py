"""image_resize and image_convert with Pillow: sizes, formats, orientation, transparency, quality, GIFs."""

from __future__ import annotations

import pytest
from PIL import Image

from apps.operations.enums import FileType
from apps.processors.image import target_size
from tests.processors.conftest import assert_completed, assert_failed_keeping_input

pytestmark = pytest.mark.django_db

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def close_to(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def opened(path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


@pytest.fixture
def noisy_png(tmp_path):
    """A photo-like image: noise compresses badly, so JPEG quality shows in the file size."""
    path = tmp_path / "noise.png"
    Image.merge("RGB", [Image.effect_noise((256, 192), sigma) for sigma in (40, 60, 80)]).save(path)
    return path


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"width": 32, "height": 32}, (32, 16)),  # fits inside the box
        ({"height": 16}, (32, 16)),
        ({"width": 128}, (128, 64)),  # scaled up too
        ({"width": 20, "height": 50, "maintain_aspect_ratio": False}, (20, 50)),
        ({"width": 20, "maintain_aspect_ratio": False}, (20, 32)),
    ],
)
def test_resize_gives_the_size_asked_for(media, run_operation, output_path, parameters, expected):
    operation = run_operation("image_resize", media.jpeg(width=64, height=32), parameters, name="photo.jpeg")

    assert_completed(operation)
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert opened(output_path(operation)).size == expected
    assert (result.metadata["width"], result.metadata["height"]) == expected
    assert result.file_name == "photo_resized.jpg"


@pytest.mark.parametrize(
    ("kind", "pillow_format", "extension"),
    [
        ("jpeg", "JPEG", "jpg"),
        ("png", "PNG", "png"),
        ("webp", "WEBP", "webp"),
        ("gif", "GIF", "gif"),
        ("bmp", "PNG", "png"),
    ],
)
def test_resize_keeps_the_formats_konvrt_writes_and_writes_png_otherwise(
    media, run_operation, output_path, kind, pillow_format, extension
):
    operation = run_operation("image_resize", getattr(media, kind)(), {"width": 16})

    assert_completed(operation)
    assert opened(output_path(operation)).format == pillow_format
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert result.file_path.endswith(f".{extension}")
    assert result.mime_type == Image.MIME[pillow_format]


def test_resize_of_a_large_jpeg_keeps_its_picture(run_operation, output_path, tmp_path):
    # Big enough that the decoder reads it at a reduced scale (draft) before the final resize.
    path = tmp_path / "large.jpg"
    image = Image.new("RGB", (1600, 800), RED)
    image.paste(BLUE, (800, 0, 1600, 800))
    image.save(path, quality=90)

    operation = run_operation("image_resize", path, {"width": 100})

    assert_completed(operation)
    result = opened(output_path(operation))
    assert result.size == (100, 50)
    assert close_to(result.getpixel((10, 25)), RED)
    assert close_to(result.getpixel((90, 25)), BLUE)


@pytest.mark.parametrize("operation_name", ["image_resize", "image_convert"])
def test_exif_orientation_is_applied_and_not_copied(media, run_operation, output_path, operation_name):
    # Stored 64×32 red-left/blue-right; orientation 6 means "turn 90° clockwise to show".
    source = media.jpeg(width=64, height=32, orientation=6)
    parameters = {"height": 64} if operation_name == "image_resize" else {"output_format": "jpg"}

    operation = run_operation(operation_name, source, parameters)

    assert_completed(operation)
    result = opened(output_path(operation))
    assert result.size == (32, 64)
    assert close_to(result.getpixel((16, 8)), RED)  # the stored left is now the top
    assert close_to(result.getpixel((16, 56)), BLUE)
    assert dict(result.getexif()) == {}


def test_transparency_saved_as_jpeg_is_flattened_on_white(media, run_operation, output_path):
    operation = run_operation("image_convert", media.png(alpha=True), {"output_format": "jpg"})

    assert_completed(operation)
    result = opened(output_path(operation))
    assert result.mode == "RGB"
    assert close_to(result.getpixel((8, 32)), WHITE, tolerance=10)  # the transparent left half
    assert close_to(result.getpixel((56, 32)), BLUE)


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_transparency_is_kept_where_the_format_has_it(media, run_operation, output_path, output_format):
    operation = run_operation("image_convert", media.png(alpha=True), {"output_format": output_format})

    assert_completed(operation)
    result = opened(output_path(operation)).convert("RGBA")
    assert result.getpixel((8, 32))[3] == 0
    assert result.getpixel((56, 32))[3] == 255


@pytest.mark.parametrize("output_format", ["jpg", "webp"])
def test_a_lower_quality_makes_a_smaller_file(run_operation, noisy_png, output_format):
    low = run_operation("image_convert", noisy_png, {"output_format": output_format, "quality": 20})
    high = run_operation("image_convert", noisy_png, {"output_format": output_format, "quality": 95})

    assert_completed(low)
    assert_completed(high)
    size = {op.id: op.files.get(file_type=FileType.OUTPUT).file_size for op in (low, high)}
    assert size[low.id] < size[high.id] * 0.7


@pytest.mark.parametrize(("output_format", "pillow_format"), [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_convert_writes_the_requested_format(media, run_operation, output_path, output_format, pillow_format):
    operation = run_operation(
        "image_convert", media.bmp(width=40, height=30), {"output_format": output_format}, name="scan.bmp"
    )

    assert_completed(operation)
    result = opened(output_path(operation))
    assert (result.format, result.size) == (pillow_format, (40, 30))
    assert operation.files.get(file_type=FileType.OUTPUT).file_name == f"scan_converted.{output_format}"


def test_an_animated_gif_converted_to_webp_stays_animated(media, run_operation, output_path):
    operation = run_operation("image_convert", media.gif(frames=3), {"output_format": "webp"})

    assert_completed(operation)
    result = Image.open(output_path(operation))
    assert result.format == "WEBP"
    assert result.n_frames == 3
    colours = []
    for index in range(3):
        result.seek(index)
        colours.append(result.convert("RGB").getpixel((16, 16)))
        assert result.info["duration"] == 100
    assert close_to(colours[0], RED) and close_to(colours[1], (0, 255, 0)) and close_to(colours[2], BLUE)
    assert operation.files.get(file_type=FileType.OUTPUT).metadata["frames"] == 3


@pytest.mark.parametrize(
    ("operation_name", "parameters"),
    [("image_convert", {"output_format": "png"}), ("image_convert", {"output_format": "avif"})],
)
def test_an_animated_gif_otherwise_becomes_its_first_frame(
    media, run_operation, output_path, operation_name, parameters
):
    operation = run_operation(operation_name, media.gif(frames=3), parameters)

    assert_completed(operation)
    result = opened(output_path(operation))
    assert getattr(result, "n_frames", 1) == 1
    assert close_to(result.convert("RGB").getpixel((4, 4)), RED)
    metadata = operation.files.get(file_type=FileType.OUTPUT).metadata
    assert (metadata["animated_source"], metadata["frames_used"], metadata["source_frames"]) == (True, 1, 3)


def test_a_gif_with_too_many_frames_for_webp_fails_clearly(settings, media, run_operation, storage_root):
    settings.PROCESSING_MAX_ANIMATION_FRAMES = 2

    operation = run_operation("image_convert", media.gif(frames=3), {"output_format": "webp"})

    assert_failed_keeping_input(operation, storage_root, "has 3 frames; at most 2")


def test_an_image_above_the_pixel_cap_is_refused_before_decoding(settings, media, run_operation, storage_root):
    settings.PROCESSING_MAX_IMAGE_PIXELS = 1000

    operation = run_operation("image_convert", media.jpeg(width=64, height=32), {"output_format": "png"}, inspect=False)

    assert_failed_keeping_input(operation, storage_root, "too large to process (64×32 pixels)")


def test_a_resize_target_above_the_pixel_cap_is_refused(media, run_operation, storage_root):
    operation = run_operation(
        "image_resize", media.png(), {"width": 10000, "height": 10000, "maintain_aspect_ratio": False}
    )

    assert_failed_keeping_input(operation, storage_root, "too large to process (10000×10000 pixels)")


def test_a_file_that_is_not_an_image_fails_clearly(media, run_operation, storage_root):
    operation = run_operation("image_resize", media.text(extension="png"), {"width": 10}, inspect=False)

    assert_failed_keeping_input(operation, storage_root, "could not be read as a PNG image")


def test_a_png_named_jpg_is_not_decoded_as_png(media, run_operation, storage_root, tmp_path):
    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes(media.png().read_bytes())

    operation = run_operation("image_convert", disguised, {"output_format": "webp"}, inspect=False)

    assert_failed_keeping_input(operation, storage_root, "could not be read as a JPG image")


def test_a_truncated_image_fails_clearly(run_operation, storage_root, noisy_png, tmp_path):
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(noisy_png.read_bytes()[:2000])

    operation = run_operation("image_convert", truncated, {"output_format": "jpg"})

    assert_failed_keeping_input(operation, storage_root, "could not be decoded")


def test_target_size_fits_inside_the_box_or_stretches():
    assert target_size((400, 300), width=200, height=200, maintain_aspect_ratio=True) == (200, 150)
    assert target_size((300, 400), width=200, height=200, maintain_aspect_ratio=True) == (150, 200)
    assert target_size((3, 1000), width=None, height=10, maintain_aspect_ratio=True) == (1, 10)
    assert target_size((400, 300), width=None, height=30, maintain_aspect_ratio=False) == (400, 30)
