"""Dependency checks for the health endpoint: each one timed, none allowed to raise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import django_rq
from django.conf import settings
from django.db import connection

from apps.operations.services.storage import get_storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_ms: float
    error: str | None = None


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    django_rq.get_connection(settings.WORKER_CONFIG["video"]["queue"]).ping()


def _storage() -> None:
    get_storage().check()


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
    checks: dict[str, Callable[[], None]] = {"database": _database, "redis": _redis, "storage": _storage}
    if settings.USE_CLOUDINARY:
        checks["cloudinary"] = _storage
    return {name: _timed(check) for name, check in checks.items()}
