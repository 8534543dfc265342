"""tus uploads count toward the session's storage quota for their declared Upload-Length, from
creation until they are used, terminated or expire (apps/operations/services/quotas.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.operations.models import Operation, Upload
from tests.api.conftest import upload
from tests.api.test_uploads import API, TUS, create, finished_upload, part

pytestmark = pytest.mark.django_db


def test_an_upload_longer_than_the_room_left_is_refused_at_creation(client, settings, storage_root):
    settings.SESSION_STORAGE_QUOTA = 1000
    first = create(client, 600)
    assert first.status_code == 201

    refused = create(client, 600)

    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"quota": 1000, "used": 600}
    assert "reserved by resumable uploads" in error["message"]
    assert "Delete operations you no longer need" in error["message"]
    assert Upload.objects.count() == 1
    assert [p.name for p in (storage_root / "tus").iterdir()] == [part(storage_root, first["Location"]).name]
    # Another session has its own room.
    assert create(Client(), 600).status_code == 201


def test_an_unfinished_upload_counts_for_its_whole_length_before_any_byte_arrives(client, settings):
    settings.SESSION_STORAGE_QUOTA = 1000
    assert create(client, 1000).status_code == 201

    assert create(client, 1).status_code == 413


def test_terminating_or_the_expiry_of_an_upload_frees_its_room(client, settings):
    settings.SESSION_STORAGE_QUOTA = 1000
    location = create(client, 1000)["Location"]
    assert client.delete(location, **TUS).status_code == 204
    assert create(client, 1000).status_code == 201

    Upload.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # not yet swept away

    assert create(client, 1000).status_code == 201


def test_an_unused_upload_leaves_no_room_for_a_direct_upload(client, media, settings):
    size = media.png().stat().st_size
    settings.SESSION_STORAGE_QUOTA = 2 * size - 1
    assert create(client, size).status_code == 201

    refused = upload(client, media.png(), operation="image_resize", parameters={"width": 8})

    assert refused.status_code == 413
    assert refused.json()["error"]["details"] == {"quota": 2 * size - 1, "used": size}
    assert Operation.objects.count() == 0


def test_an_upload_used_by_an_operation_counts_once(client, media, settings):
    data = media.png().read_bytes()
    settings.SESSION_STORAGE_QUOTA = len(data)  # room for this file exactly once
    location = finished_upload(client, data)

    created = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": {"width": 8}, "upload": location},
        content_type="application/json",
    )

    assert created.status_code == 201, created.json()
    assert Upload.objects.count() == 0
    # Now the operation's input holds the room.
    assert create(client, 1).status_code == 413


def test_a_refused_create_leaves_the_upload_and_its_reservation(client, settings, storage_root):
    settings.SESSION_STORAGE_QUOTA = 1000
    location = finished_upload(client, b"not an image at all")

    refused = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": {"width": 8}, "upload": location},
        content_type="application/json",
    )

    assert refused.status_code == 415
    assert Upload.objects.count() == 1
    assert part(storage_root, location).read_bytes() == b"not an image at all"
    assert create(client, 1000 - len(b"not an image at all") + 1).status_code == 413
