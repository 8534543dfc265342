"""Pillow decodes by content, never by name, and never more pixels than Konvrt allows.

Images are opened with the one Pillow format they were accepted as, so PostScript/EPS (which
Pillow renders through Ghostscript) and SVG are never reached whatever they are named. Pixel caps
are Konvrt's own, enforced as errors before any pixel is decoded: on the largest canvas any frame
makes Pillow build (a GIF frame may reach beyond its header's size), and for animations on frames
× canvas pixels.
"""

from __future__ import annotations

import os
import stat
import subprocess
import warnings
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from apps.processors.probe import probe_image
from tests.api.conftest import upload
from tests.hostile import attacks

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_ghostscript(tmp_path, monkeypatch) -> Path:
    """A ``gs`` first on PATH that records every call (no Ghostscript is installed, nor should
    be); returns the file it writes to. Pillow looks for Ghostscript afresh."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ghostscript-calls.txt"
    script = bin_dir / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return calls


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / "attacks" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


# --- formats that need another decoder ------------------------------------------------------------
def test_control_pillow_left_to_guess_hands_eps_to_ghostscript(tmp_path, fake_ghostscript):
    eps = write(tmp_path, "photo.png", attacks.eps_document())

    with pytest.raises(subprocess.CalledProcessError), Image.open(eps) as image:
        image.load()  # Pillow runs "gs", ours exits 1

    assert fake_ghostscript.exists()


def test_eps_named_png_is_refused_at_upload_and_ghostscript_never_runs(client, tmp_path, fake_ghostscript):
    response = upload(
        client,
        write(tmp_path, "photo.png", attacks.eps_document()),
        operation="image_convert",
        parameters={"output_format": "jpg"},
    )

    assert response.status_code == 415
    assert "PostScript (EPS) document" in response.json()["error"]["message"]
    assert Operation.objects.count() == 0
    assert not fake_ghostscript.exists()


def test_eps_stored_as_a_png_input_fails_in_the_worker_and_ghostscript_never_runs(
    tmp_path, fake_ghostscript, run_operation
):
    operation = run_operation(
        "image_convert", write(tmp_path, "photo.png", attacks.eps_document()), {"output_format": "jpg"}, inspect=False
    )

    assert operation.status == OperationStatus.FAILED
    assert "could not be read as a PNG image" in operation.error_message
    assert not fake_ghostscript.exists()


@pytest.mark.parametrize("name", ["drawing.png", "drawing.jpg", "drawing.webp"])
def test_svg_under_an_image_name_is_refused(client, tmp_path, name):
    svg = write(tmp_path, name, attacks.svg_drawing(href="file:///etc/passwd"))

    response = upload(client, svg, operation="image_resize", parameters={"width": 10})

    assert response.status_code == 415
    assert "SVG" in response.json()["error"]["message"]


# --- decompression bombs --------------------------------------------------------------------------
def test_a_png_just_over_our_cap_is_refused_although_pillow_would_decode_it_silently(client, tmp_path, storage_root):
    # 8000×8000 = 64 MP: above Konvrt's 50 MP, below the 89 MP where Pillow would even warn.
    bomb = write(tmp_path, "poster.png", attacks.png_bomb(width=8000, height=8000))
    assert bomb.stat().st_size < 20_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Image.open(bomb).close()  # Pillow alone: no error, no warning

    response = upload(client, bomb, operation="image_resize", parameters={"width": 100})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "This image is too large to process (8000×8000 pixels); the limit is 50 megapixels."
    )
    assert [path for path in storage_root.rglob("*") if path.is_file()] == []


def test_a_gigapixel_png_is_refused_with_the_same_sentence_not_as_damaged(client, tmp_path):
    # 40000×40000: Pillow itself refuses it (DecompressionBombError); the user reads our cap.
    bomb = write(tmp_path, "huge.png", attacks.png_bomb(width=40000, height=40000))

    response = upload(client, bomb, operation="image_convert", parameters={"output_format": "webp"})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "This image is too large to process; the limit is 50 megapixels."


def test_a_bomb_that_reaches_the_worker_fails_before_decoding(tmp_path, run_operation):
    bomb = write(tmp_path, "poster.png", attacks.png_bomb(width=8000, height=8000, rgb=True))

    operation = run_operation("image_resize", bomb, {"width": 100}, inspect=False)

    assert operation.status == OperationStatus.FAILED
    assert operation.error_message.startswith("This image is too large to process (8000×8000 pixels)")


def test_a_gif_frame_larger_than_the_screen_counts_against_the_cap(client, tmp_path, run_operation):
    # Pillow reports 64×64 when it opens this GIF; its second frame makes the canvas 8000×8000.
    growing = write(
        tmp_path, "sticker.gif", attacks.gif_animation(screen=(64, 64), frames=3, later_frames=(8000, 8000))
    )
    with Image.open(growing) as image:
        assert image.size == (64, 64)
    info = probe_image(growing, allowed_formats=("GIF",))
    assert (info.canvas_width, info.canvas_height, info.frames) == (8000, 8000, 3)

    response = upload(client, growing, operation="image_convert", parameters={"output_format": "webp"})
    operation = run_operation("image_convert", growing, {"output_format": "webp"}, inspect=False)

    assert response.status_code == 400
    assert "8000×8000" in response.json()["error"]["message"]
    assert operation.status == OperationStatus.FAILED
    assert "8000×8000" in operation.error_message


def test_an_animation_over_the_frame_pixel_budget_fails_to_animate_but_its_first_frame_converts(
    tmp_path, run_operation
):
    # 400 frames of 1500×1000: 1.5 MP each (fine), 600 MP in all (over the 500 MP budget).
    animation = write(tmp_path, "long.gif", attacks.gif_animation(screen=(1500, 1000), frames=400))

    animated = run_operation("image_convert", animation, {"output_format": "webp"})
    still = run_operation("image_convert", animation, {"output_format": "png"})

    assert animated.status == OperationStatus.FAILED
    assert animated.error_message.startswith("This animation has 400 frames of 1.5 megapixels")
    assert "Convert it to PNG or JPEG to keep its first frame." in animated.error_message
    assert still.status == OperationStatus.COMPLETED


def test_an_animation_within_the_budget_stays_animated(tmp_path, run_operation, output_path, settings):
    settings.PROCESSING_MAX_ANIMATION_PIXELS = 40 * 64 * 64
    animation = write(tmp_path, "short.gif", attacks.gif_animation(screen=(64, 64), frames=40))

    operation = run_operation("image_convert", animation, {"output_format": "webp"})

    assert operation.status == OperationStatus.COMPLETED
    with Image.open(output_path(operation), formats=["WEBP"]) as result:
        assert result.n_frames == 40
