"""Dependency checks: each timed, a failure reported (never raised), Cloudinary checked only when enabled."""

from __future__ import annotations

import pytest

from apps.core.exceptions import StorageError
from apps.operations.services import health

pytestmark = pytest.mark.django_db


class UnreachableCloud:
    """Stands in for Cloudinary's servers, which cannot run here, failing their ping."""

    checked = 0

    def check(self) -> None:
        UnreachableCloud.checked += 1
        raise StorageError("Cloudinary did not answer.")


def test_all_checks_pass_on_a_working_machine():
    results = health.run_health_checks()

    assert set(results) == {"database", "redis", "storage"}
    assert all(result.ok and result.error is None and result.latency_ms >= 0 for result in results.values())


def test_unwritable_storage_is_reported(settings, tmp_path):
    not_a_directory = tmp_path / "elsewhere"
    not_a_directory.write_text("a file where the storage root should be")
    settings.STORAGE_ROOT = not_a_directory

    result = health.run_health_checks()["storage"]

    assert result.ok is False
    assert result.error.startswith("StorageError: Local storage")


def test_unreachable_redis_is_reported_quickly(settings):
    settings.RQ_QUEUES = {
        name: {**config, "URL": "redis://127.0.0.1:1/0"} for name, config in settings.RQ_QUEUES.items()
    }

    result = health.run_health_checks()["redis"]

    assert result.ok is False
    assert "ConnectionError" in result.error
    assert "127.0.0.1:1/0" not in result.error


def test_with_cloudinary_storage_checks_the_working_directory_and_cloudinary_its_service(
    settings, tmp_path, monkeypatch
):
    settings.USE_CLOUDINARY = True
    settings.TEMP_ROOT = tmp_path / "work"
    monkeypatch.setattr(health, "get_storage", UnreachableCloud)
    UnreachableCloud.checked = 0

    results = health.run_health_checks()

    assert results["storage"].ok is True
    assert (tmp_path / "work").is_dir()
    assert results["cloudinary"].ok is False
    assert results["cloudinary"].error == "StorageError: Cloudinary did not answer."
    assert UnreachableCloud.checked == 1


def test_with_cloudinary_an_unwritable_working_directory_fails_storage(settings, tmp_path, monkeypatch):
    settings.USE_CLOUDINARY = True
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    settings.TEMP_ROOT = blocked
    monkeypatch.setattr(health, "get_storage", UnreachableCloud)

    assert health.run_health_checks()["storage"].ok is False
