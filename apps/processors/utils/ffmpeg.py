"""The one module that talks to FFmpeg.

The binary is resolved once: ``FFMPEG_BINARY`` if set, else ``ffmpeg`` on PATH, else the build
shipped inside the ``imageio-ffmpeg`` package, so a machine with nothing but Python can process.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


@functools.cache
def _resolve(configured: str | None) -> str:
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ImproperlyConfigured(f"FFMPEG_BINARY is set to {configured!r}, which is not an executable.")
        return str(Path(found).resolve())
    on_path = shutil.which("ffmpeg")
    if on_path:
        return str(Path(on_path).resolve())
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise ImproperlyConfigured(
            "No FFmpeg found: set FFMPEG_BINARY, put ffmpeg on PATH, or install imageio-ffmpeg."
        ) from e
    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    logger.info("Using the FFmpeg build bundled with imageio-ffmpeg: %s", bundled)
    return bundled


def resolve_ffmpeg_binary() -> str:
    """The absolute path of the FFmpeg executable to run."""
    return _resolve(settings.FFMPEG_BINARY)
