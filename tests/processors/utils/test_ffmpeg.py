"""Which FFmpeg runs: FFMPEG_BINARY, then PATH, then the build bundled with imageio-ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.processors.utils import ffmpeg


@pytest.fixture(autouse=True)
def fresh_resolution():
    ffmpeg._resolve.cache_clear()
    yield
    ffmpeg._resolve.cache_clear()


def fake_ffmpeg(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "ffmpeg"
    binary.write_text("#!/bin/sh\necho fake\n")
    binary.chmod(0o755)
    return binary


def test_configured_binary_wins(settings, tmp_path, monkeypatch):
    configured = fake_ffmpeg(tmp_path / "configured")
    monkeypatch.setenv("PATH", str(fake_ffmpeg(tmp_path / "on-path").parent))
    settings.FFMPEG_BINARY = str(configured)

    assert ffmpeg.resolve_ffmpeg_binary() == str(configured.resolve())


def test_a_configured_binary_that_does_not_exist_is_a_clear_error(settings):
    settings.FFMPEG_BINARY = "/nowhere/ffmpeg"
    with pytest.raises(ImproperlyConfigured, match="FFMPEG_BINARY"):
        ffmpeg.resolve_ffmpeg_binary()


def test_path_comes_before_the_bundled_build(settings, tmp_path, monkeypatch):
    settings.FFMPEG_BINARY = None
    on_path = fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(on_path.parent))

    assert ffmpeg.resolve_ffmpeg_binary() == str(on_path.resolve())


def test_bundled_build_is_used_when_nothing_else_is_there(settings, tmp_path, monkeypatch):
    settings.FFMPEG_BINARY = None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    binary = ffmpeg.resolve_ffmpeg_binary()

    assert binary == imageio_ffmpeg.get_ffmpeg_exe()
    version = subprocess.run([binary, "-hide_banner", "-version"], capture_output=True, text=True, check=True)
    assert "ffmpeg version" in version.stdout
    encoders = subprocess.run([binary, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True)
    for encoder in ("libx264", "libvpx-vp9", "aac", "libmp3lame", "libopus", "flac", "libvorbis"):
        assert encoder in encoders.stdout
