"""Working files: the per-job temp directory on this machine."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)


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
