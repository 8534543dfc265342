"""Image work stays within IMAGE_MEMORY_LIMIT: measured on real, generated large images in a fresh
process (peak resident memory above what the process held before the work), the largest image the
budget admits stays under the limit, and a 49-megapixel PNG to WebP fails with a sentence at the
default limit instead of taking ~650 MB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.processors.exceptions import ProcessingError
from apps.processors.memory import check_image_memory
from apps.processors.probe import ImageInfo, probe_image

BASE_DIR = Path(__file__).resolve().parents[2]
MB = 1024 * 1024

pytestmark = pytest.mark.slow


def run_in_child(operation: str, parameters: dict, source: Path, workspace: Path, *, limit: int | None = None) -> dict:
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    if limit is not None:
        env["IMAGE_MEMORY_LIMIT"] = str(limit)
    finished = subprocess.run(
        [sys.executable, "-m", "tests.processors.image_memory_child", operation, json.dumps(parameters)]
        + [str(source), str(workspace)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def admitted(info: ImageInfo, *, output_format: str, output_size: tuple[int, int] | None = None) -> bool:
    try:
        check_image_memory(info, output_format=output_format, output_size=output_size)
    except ProcessingError:
        return False
    return True


def largest_admitted_side(
    settings, limit: int, *, mode: str, output_format: str, output_size: tuple[int, int] | None
) -> int:
    settings.IMAGE_MEMORY_LIMIT = limit
    low, high = 16, 20_000
    while low < high:
        side = (low + high + 1) // 2
        info = ImageInfo(format_name="PNG", width=side, height=side, mode=mode, frames=1, size=0)
        fits = admitted(info, output_format=output_format, output_size=output_size)
        low, high = (side, high) if fits else (low, side - 1)
    return low


def test_a_49_megapixel_png_to_webp_fails_with_a_sentence_before_decoding(media, tmp_path):
    source = media.png(width=7000, height=7000, alpha=False)

    outcome = run_in_child("image_convert", {"output_format": "webp", "quality": 85}, source, tmp_path / "work")

    assert outcome["error"] == (
        "This image (7000×7000 pixels) is too large to convert to WEBP within the memory one job may use: "
        "it would need about 719 MB, and the limit is 512 MB. Try a smaller image."
    )
    assert outcome["work_mb"] < 32  # refused from the header: nothing decoded


@pytest.mark.parametrize(
    ("alpha", "operation", "parameters", "output_format"),
    [
        (True, "image_convert", {"output_format": "webp", "quality": 85}, "webp"),
        (False, "image_convert", {"output_format": "webp", "quality": 85}, "webp"),
        (True, "image_resize", {"width": 640, "maintain_aspect_ratio": True}, "png"),
    ],
    ids=["webp-transparent", "webp-opaque", "resize-transparent"],
)
def test_the_largest_image_the_budget_admits_stays_under_the_limit(
    settings, media, tmp_path, alpha, operation, parameters, output_format
):
    limit = 96 * MB
    mode = "RGBA" if alpha else "RGB"
    output_size = (640, 640) if operation == "image_resize" else None
    side = largest_admitted_side(settings, limit, mode=mode, output_format=output_format, output_size=output_size)
    source = media.png(width=side, height=side, alpha=alpha)
    info = probe_image(source, allowed_formats=("PNG",))
    assert info.mode == mode

    outcome = run_in_child(operation, parameters, source, tmp_path / "work", limit=limit)

    assert outcome["error"] is None
    assert outcome["work_mb"] * MB <= limit, (side, outcome)
    # And one size up is refused.
    bigger = ImageInfo(format_name="PNG", width=side + 8, height=side + 8, mode=mode, frames=1, size=0)
    assert not admitted(bigger, output_format=output_format, output_size=output_size)


def test_a_resize_counts_its_output_too(settings):
    settings.IMAGE_MEMORY_LIMIT = 512 * MB
    small = ImageInfo(format_name="PNG", width=100, height=100, mode="RGBA", frames=1, size=0)

    assert admitted(small, output_format="webp", output_size=(1000, 1000))
    assert not admitted(small, output_format="webp", output_size=(7000, 7000))


def test_a_large_jpeg_resized_down_is_decoded_at_a_reduced_scale(settings):
    settings.IMAGE_MEMORY_LIMIT = 512 * MB
    photo = ImageInfo(format_name="JPEG", width=8000, height=6000, mode="RGB", frames=1, size=0)
    scan = ImageInfo(format_name="PNG", width=8000, height=6000, mode="RGB", frames=1, size=0)

    # 48 MP decoded at 1/8 scale for a 640-wide thumbnail; a PNG has no such shortcut.
    assert admitted(photo, output_format="jpg", output_size=(640, 480))
    assert not admitted(scan, output_format="png", output_size=(6000, 4500))


@pytest.mark.django_db(transaction=True)
def test_through_a_worker_the_operation_fails_with_the_sentence_and_the_worker_goes_on(media, run_operation):
    too_large = run_operation(
        "image_convert", media.png(width=7000, height=7000, alpha=False), {"output_format": "webp"}
    )
    fine = run_operation("image_convert", media.png(), {"output_format": "webp"})

    assert too_large.status == "failed"
    assert too_large.error_message.startswith("This image (7000×7000 pixels) is too large to convert to WEBP")
    assert fine.status == "completed"
