"""Dependency checks for the health endpoint: each one timed, none allowed to raise."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from apps.core.exceptions import StorageError
from apps.core.redis import redis_client
from apps.core.utils import human_size
from apps.storage.backend import get_storage, storage_backend_name

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_ms: float
    error: str | None = None


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    # A health check must answer even when Redis hangs instead of refusing connections.
    # Every queue lives on the same Redis; its URL is the queues' (tests point them elsewhere).
    url = next(iter(settings.RQ_QUEUES.values()))["URL"]
    redis_client(url, connect_timeout=REDIS_TIMEOUT_SECONDS, timeout=REDIS_TIMEOUT_SECONDS).ping()


def _storage() -> None:
    """Where files live: the local storage root; with Cloudinary the local working directory that
    uploads and jobs pass through; with S3 that directory and the bucket. Writable, and with at
    least ``MIN_FREE_DISK`` free on the local disks: a disk about to fill is reported before
    uploads start failing."""
    backend = storage_backend_name()
    if backend == "local":
        get_storage().check()
    else:
        _check_writable(Path(settings.TEMP_ROOT))
        if backend == "s3":
            get_storage().check()
    local_disks: tuple[Path, ...] = (Path(settings.TEMP_ROOT),)
    if backend == "local":
        local_disks = (Path(settings.STORAGE_ROOT), Path(settings.TEMP_ROOT))
    for directory in local_disks:
        _check_free_space(directory)


def _check_free_space(directory: Path) -> None:
    existing = next((path for path in (directory, *directory.parents) if path.exists()), directory)
    free = shutil.disk_usage(existing).free
    if free < settings.MIN_FREE_DISK:
        raise StorageError(
            f"Only {human_size(free)} free on the disk of {directory}; "
            f"MIN_FREE_DISK asks for {human_size(settings.MIN_FREE_DISK)}."
        )


def _cloudinary() -> None:
    get_storage().check()


def _check_writable(directory: Path) -> None:
    probe = directory / f".health-{uuid.uuid4().hex}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise StorageError(f"The working directory {directory} is not writable: {e.strerror}.") from e


def _timed(check: Callable[[], None]) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except Exception as e:  # noqa: BLE001 - a failing dependency is reported, not raised
        logger.warning("Health check %s failed: %s", check.__name__, e)
        return CheckResult(ok=False, latency_ms=_elapsed_ms(started), error=_public_error(e))
    return CheckResult(ok=True, latency_ms=_elapsed_ms(started))


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _public_error(error: Exception) -> str:
    # The class name and message say what broke without credentials: URLs are not echoed.
    return f"{type(error).__name__}: {str(error).split(' at ')[0][:200]}"


def run_health_checks() -> dict[str, CheckResult]:
    """Every dependency's check by name: database, redis, storage, and cloudinary when enabled."""
    checks: dict[str, Callable[[], None]] = {"database": _database, "redis": _redis, "storage": _storage}
    if settings.USE_CLOUDINARY:
        checks["cloudinary"] = _cloudinary
    return {name: _timed(check) for name, check in checks.items()}
