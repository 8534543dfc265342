"""A full disk at upload: a 503 service_unavailable that keeps nothing, on a real full filesystem
(a tmpfs of a few MB, mounted for the test); and /health/ reports storage degraded below
MIN_FREE_DISK."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.operations.models import Operation
from tests.api.conftest import API, upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A 4 MB tmpfs, filled up."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"Cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        filler = mount_point / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and path.name != "filler")


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["message"] == (
        "The server has run out of disk space, so this upload was not kept. Please try again later."
    )


def test_a_large_upload_onto_a_full_temp_disk_is_a_503_and_keeps_nothing(client, settings, full_disk, storage_root):
    # Over FILE_UPLOAD_MAX_MEMORY_SIZE: Django streams it to a temporary file on the full disk.
    settings.FILE_UPLOAD_TEMP_DIR = str(full_disk / "uploads")
    os.makedirs(settings.FILE_UPLOAD_TEMP_DIR, exist_ok=True)
    body = SimpleUploadedFile("big.png", os.urandom(3 * 1024 * 1024))

    response = client.post(f"{API}/operations/", {"operation": "image_resize", "file": body})

    assert_unavailable(response)
    assert files_under(full_disk) == []
    assert files_under(storage_root) == []
    assert Operation.objects.count() == 0


def test_a_small_upload_onto_a_full_storage_disk_is_a_503_and_keeps_nothing(
    client, settings, media, full_disk, storage_root
):
    settings.STORAGE_ROOT = full_disk  # the temp directory stays on the test's own disk

    response = upload(client, media.png(width=600, height=600), operation="image_resize", parameters={"width": 8})

    assert_unavailable(response)
    assert files_under(full_disk) == []
    assert files_under(storage_root) == []
    assert Operation.objects.count() == 0


def test_health_reports_storage_degraded_on_a_full_disk(client, settings, full_disk):
    settings.STORAGE_ROOT = full_disk

    response = client.get(f"{API}/health/")

    assert response.status_code == 503
    storage = response.json()["data"]["checks"]["storage"]
    assert storage["ok"] is False


def test_health_reports_storage_degraded_under_min_free_disk(client, settings):
    settings.MIN_FREE_DISK = 1024**5 * 1024  # an exabyte: more than this machine has

    response = client.get(f"{API}/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["data"]["status"] == "degraded"
    assert body["error"]["details"] == {"failed": ["storage"]}
    assert "free on the disk of" in body["data"]["checks"]["storage"]["error"]
    assert "MIN_FREE_DISK" in body["data"]["checks"]["storage"]["error"]

    settings.MIN_FREE_DISK = 1024 * 1024
    assert client.get(f"{API}/health/").status_code == 200
