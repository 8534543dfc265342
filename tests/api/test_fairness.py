"""Fairness between sessions: a few operations waiting or running per session (429 beyond), and a
cap on the bytes a session keeps stored (413 quota_exceeded beyond); both race-safe."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client

from apps.core.exceptions import Throttled
from apps.operations.models import Operation
from apps.operations.services import operations_manager, quotas
from apps.processors.registry import get_operation
from tests.api.conftest import API, session_key_of, stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)


def resize(client: Client, media, **kwargs):
    return upload(client, media.png(), operation="image_resize", parameters={"width": 8}, **kwargs)


def test_a_fourth_waiting_operation_is_refused_with_a_sentence(client, media, storage_root, settings):
    settings.MAX_ACTIVE_PER_SESSION = 3
    assert [resize(client, media).status_code for _ in range(3)] == [201, 201, 201]

    refused = resize(client, media)

    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    error = refused.json()["error"]
    assert error["code"] == "throttled"
    assert error["message"].startswith("You already have 3 operations waiting or running")
    assert error["details"] == {"active": 3, "limit": 3, "retry_after": 30}
    assert Operation.objects.count() == 3
    assert len(stored_files(storage_root / "uploads")) == 3  # nothing of the refused upload kept
    # Another session is not affected.
    assert resize(Client(), media).status_code == 201


def test_a_finished_or_cancelled_operation_frees_its_slot(client, media, settings, run_worker):
    settings.MAX_ACTIVE_PER_SESSION = 1
    first = resize(client, media).json()["data"]["id"]
    assert resize(client, media).status_code == 429
    run_worker()
    assert Operation.objects.get(id=first).status == "completed"

    second = resize(client, media)
    assert second.status_code == 201
    assert client.post(f"{API}/operations/{second.json()['data']['id']}/cancel/").status_code == 200
    assert resize(client, media).status_code == 201


def test_a_retry_takes_a_slot_too(client, media, settings):
    settings.MAX_ACTIVE_PER_SESSION = 1
    first = resize(client, media).json()["data"]["id"]
    assert client.post(f"{API}/operations/{first}/cancel/").status_code == 200
    assert resize(client, media).status_code == 201

    refused = client.post(f"{API}/operations/{first}/retry/")

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert Operation.objects.get(id=first).status == "cancelled"


def test_over_the_storage_quota_is_a_413_with_quota_and_used(client, media, settings, storage_root):
    first = resize(client, media)
    used = first.json()["data"]["input_file"]["file_size"]
    settings.SESSION_STORAGE_QUOTA = used + 10  # room for nothing more of this size

    refused = resize(client, media)

    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"quota": used + 10, "used": used}
    assert "Delete operations you no longer need" in error["message"]
    assert len(stored_files(storage_root / "uploads")) == 1

    # Deleting frees the room.
    assert client.delete(f"{API}/operations/{first.json()['data']['id']}/").status_code == 200
    assert resize(client, media).status_code == 201


def test_two_concurrent_creates_cannot_both_take_the_last_slot(client, media, settings):
    """One transaction holds the session's lock while it records the operation that takes the last
    slot; a create arriving meanwhile waits for it, then sees that operation and is refused.
    Without the lock it would count before the other row committed, and both would pass."""
    if connection.vendor != "postgresql":
        # The test database is then one in-memory SQLite database that a second thread's write
        # locks for every later test; SQLite runs writes one at a time anyway (BEGIN IMMEDIATE).
        pytest.skip("Two concurrent transactions need PostgreSQL (the session lock is an advisory lock).")
    settings.MAX_ACTIVE_PER_SESSION = 2
    key = session_key_of(client)
    assert resize(client, media).status_code == 201
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def take_the_last_slot() -> None:
        try:
            with transaction.atomic():
                quotas.session_lock(session_key=key)
                quotas.session_check_active(session_key=key)
                Operation.objects.create(session_key=key, operation="image_resize", status="queued")
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def create_concurrently() -> None:
        try:
            operations_manager.operation_create(
                session_key=key,
                definition=get_operation("image_resize"),
                parameters={"width": 8, "maintain_aspect_ratio": True},
                upload=SimpleUploadedFile("b.png", media.png().read_bytes()),
            )
            outcome["result"] = "created"
        except Throttled as e:
            outcome["result"] = e
        finally:
            connection.close()

    first = threading.Thread(target=take_the_last_slot)
    first.start()
    assert holding.wait(timeout=30)
    second = threading.Thread(target=create_concurrently)
    second.start()
    second.join(timeout=1.5)
    assert second.is_alive()  # waiting for the lock, not counting past the uncommitted row
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)

    assert isinstance(outcome["result"], Throttled)
    assert Operation.objects.filter(session_key=key).count() == 2


def test_an_import_from_a_url_takes_a_slot_like_an_upload(client, media, settings):
    # The input's bytes arrive later (the worker fetches them), but the operation waits like any other.
    settings.MAX_ACTIVE_PER_SESSION = 1
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # a local source, never contacted here
    key = session_key_of(client)
    assert resize(client, media, headers={"X-Session-Key": key}).status_code == 201

    refused = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": '{"width": 8}', "source_url": "http://127.0.0.1:9/cat.png"},
        headers={"X-Session-Key": key},
    )

    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["limit"] == 1
    assert Operation.objects.filter(session_key=key).count() == 1
