"""Working files: the per-job temp directory and what a file's MIME type is."""

from __future__ import annotations

import logging
import mimetypes
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

# mimetypes lacks or disagrees on a few of the formats we handle.
_MIME_OVERRIDES = {
    "aac": "audio/aac",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "mkv": "video/x-matroska",
    "ogg": "audio/ogg",
    "opus": "audio/opus",
    "wav": "audio/wav",
    "webm": "video/webm",
    "webp": "image/webp",
    "wmv": "video/x-ms-wmv",
    "flv": "video/x-flv",
    "jpg": "image/jpeg",
}


def mime_type_for_extension(extension: str) -> str:
    extension = extension.lower().lstrip(".")
    if extension in _MIME_OVERRIDES:
        return _MIME_OVERRIDES[extension]
    guessed, _ = mimetypes.guess_type(f"file.{extension}")
    return guessed or "application/octet-stream"


def jobs_temp_root() -> Path:
    return Path(settings.TEMP_ROOT) / "jobs"


@contextmanager
def job_workspace(operation_id: uuid.UUID) -> Iterator[Path]:
    """A private directory for one job's files, removed however the job ends."""
    root = jobs_temp_root()
    root.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=f"{operation_id}-", dir=root))
    try:
        yield workspace
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        if workspace.exists():
            logger.warning("Could not remove job workspace %s", workspace)
