"""image_resize and image_convert with Pillow: sizes, formats, orientation, transparency, quality, GIFs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageDraw

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


@pytest.mark.parametrize("output_format", ["png", "webp", "avif"])
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


# --- real media behaves: colour keys, 16 bits, profiles, animation timing, new formats ------------
def frames_of(path) -> list[tuple[Image.Image, int]]:
    """Every frame of an animation composited to RGBA, with its duration in ms."""
    image = Image.open(path)
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frame = image.convert("RGBA")  # decodes the frame, which sets a WebP frame's duration
        frames.append((frame, image.info.get("duration")))
    return frames


def colour_key_png(tmp_path) -> Path:
    """An RGB PNG whose transparency is a tRNS colour key: every pure green pixel is transparent."""
    path = tmp_path / "key.png"
    image = Image.new("RGB", (32, 32), (0, 255, 0))
    ImageDraw.Draw(image).rectangle([16, 0, 31, 31], fill=BLUE)
    image.save(path, transparency=(0, 255, 0))
    return path


@pytest.mark.parametrize(
    ("operation_name", "parameters"),
    [
        ("image_convert", {"output_format": "webp"}),
        ("image_convert", {"output_format": "png"}),
        ("image_convert", {"output_format": "avif"}),
        ("image_resize", {"width": 16}),
    ],
)
def test_a_png_colour_key_is_kept_as_transparency(run_operation, output_path, tmp_path, operation_name, parameters):
    operation = run_operation(operation_name, colour_key_png(tmp_path), parameters)

    assert_completed(operation)
    result = opened(output_path(operation)).convert("RGBA")
    width = result.width
    assert result.getpixel((width // 8, 8))[3] == 0
    assert result.getpixel((width - 2, 8))[3] == 255 and close_to(result.getpixel((width - 2, 8)), BLUE)


def test_a_16_bit_grey_png_with_a_colour_key_becomes_a_jpeg_flattened_on_white(run_operation, output_path, tmp_path):
    path = tmp_path / "grey16.png"
    image = Image.new("I;16", (32, 32), 40000)
    ImageDraw.Draw(image).rectangle([0, 0, 15, 31], fill=1234)
    image.save(path, transparency=1234)
    assert Image.open(path).mode == "I;16"

    operation = run_operation("image_convert", path, {"output_format": "jpg"})

    assert_completed(operation)
    result = opened(output_path(operation)).convert("RGB")
    assert close_to(result.getpixel((4, 16)), WHITE, tolerance=8)  # the keyed grey: transparent
    assert close_to(result.getpixel((28, 16)), (156, 156, 156), tolerance=8)  # 40000 / 256, not clipped


def test_the_colour_profile_survives_flattening_to_jpeg(media, run_operation, output_path, tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "profiled.png"
    Image.open(media.png(alpha=True)).save(path, icc_profile=profile)

    operation = run_operation("image_convert", path, {"output_format": "jpg"})

    assert_completed(operation)
    assert opened(output_path(operation)).info.get("icc_profile") == profile


def animated_gif(tmp_path, *, loop: int | None, durations=(100, 300, 50)) -> Path:
    """Three frames, each a colour on the right half; the left half transparent in every frame."""
    path = tmp_path / f"anim-{loop}.gif"
    frames = []
    for colour in (RED, (0, 255, 0), BLUE):
        frame = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
        ImageDraw.Draw(frame).rectangle([16, 0, 31, 31], fill=(*colour, 255))
        frames.append(frame)
    options = {} if loop is None else {"loop": loop}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=list(durations), disposal=2, **options)
    return path


@pytest.mark.parametrize(("loop", "plays"), [(None, 1), (0, 0), (2, 3)])
def test_a_gif_converted_to_webp_keeps_timing_loop_count_and_transparency(
    run_operation, output_path, tmp_path, loop, plays
):
    operation = run_operation("image_convert", animated_gif(tmp_path, loop=loop), {"output_format": "webp"})

    assert_completed(operation)
    output = output_path(operation)
    frames = frames_of(output)
    assert [duration for _, duration in frames] == [100, 300, 50]
    assert Image.open(output).info["loop"] == plays  # a GIF without a loop block plays once
    for frame, _ in frames:
        assert frame.getpixel((4, 16))[3] == 0  # still transparent, not black
        assert frame.getpixel((28, 16))[3] == 255


def test_an_apng_converted_to_webp_keeps_every_frame_and_its_duration(run_operation, output_path, tmp_path):
    path = tmp_path / "anim.png"
    frames = [Image.new("RGBA", (24, 24), (*colour, 255)) for colour in (RED, (0, 255, 0), BLUE, RED)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[40, 400, 40, 1000], loop=1)

    operation = run_operation("image_convert", path, {"output_format": "webp"})

    assert_completed(operation)
    output = output_path(operation)
    assert [duration for _, duration in frames_of(output)] == [40, 400, 40, 1000]
    assert Image.open(output).info["loop"] == 1


@pytest.mark.parametrize("kind", ["gif", "webp"])
def test_resizing_an_animation_keeps_it_animated_in_its_format(run_operation, output_path, tmp_path, kind):
    source = animated_gif(tmp_path, loop=None)
    if kind == "webp":
        source = tmp_path / "anim.webp"
        frames = [frame for frame, _ in frames_of(animated_gif(tmp_path, loop=None))]
        for frame in frames:
            # Opaque corners keep libwebp from cropping the frames, which would lose the alpha flag.
            frame.putpixel((0, 0), (*RED, 255))
            frame.putpixel((31, 31), (*RED, 255))
        frames[0].save(source, save_all=True, append_images=frames[1:], duration=[100, 300, 50], loop=1, lossless=True)
        assert Image.open(source).mode == "RGBA"

    operation = run_operation("image_resize", source, {"width": 16})

    assert_completed(operation)
    output = output_path(operation)
    assert Image.open(output).format == kind.upper()
    frames = frames_of(output)
    assert [frame.size for frame, _ in frames] == [(16, 16)] * 3
    assert [duration for _, duration in frames] == [100, 300, 50]
    colours = (RED, (0, 255, 0), BLUE)
    assert all(close_to(frame.getpixel((12, 8)), colour) for (frame, _), colour in zip(frames, colours, strict=True))
    assert all(frame.getpixel((2, 8))[3] == 0 for frame, _ in frames)
    assert "loop" not in Image.open(output).info if kind == "gif" else Image.open(output).info["loop"] == 1
    assert operation.files.get(file_type=FileType.OUTPUT).metadata["frames"] == 3


def test_resizing_an_animation_over_the_frames_budget_keeps_its_first_frame_and_says_so(
    settings, run_operation, output_path, tmp_path
):
    settings.PROCESSING_MAX_ANIMATION_FRAMES = 2

    operation = run_operation("image_resize", animated_gif(tmp_path, loop=0), {"width": 16})

    assert_completed(operation)
    assert getattr(opened(output_path(operation)), "n_frames", 1) == 1
    metadata = operation.files.get(file_type=FileType.OUTPUT).metadata
    assert metadata["frames_used"] == 1 and "only its first frame was kept" in metadata["notice"]


@pytest.mark.parametrize("kind", ["tif", "heic", "avif"])
def test_new_image_inputs_are_converted_to_jpeg(media, run_operation, output_path, kind):
    operation = run_operation("image_convert", getattr(media, kind)(), {"output_format": "jpg"})

    assert_completed(operation)
    result = opened(output_path(operation))
    assert result.format == "JPEG"
    assert close_to(result.getpixel((4, 4)), RED) and close_to(result.getpixel((result.width - 4, 4)), BLUE)
