"""The operation services behind the API: nothing orphaned, nothing duplicated, nothing lost."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_rq import get_queue
from rq.job import Job, JobStatus

from apps.core.exceptions import StorageError, UnsupportedMedia
from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from apps.operations.services import operations_manager
from apps.processors.registry import OPERATIONS
from apps.storage.local import LocalStorage

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "s" * 32


def stored(root):
    return sorted(path for path in root.rglob("*") if path.is_file())


def create(media, **kwargs):
    return operations_manager.operation_create(
        session_key=KEY,
        definition=OPERATIONS["image_resize"],
        parameters={"width": 10, "maintain_aspect_ratio": True},
        upload=SimpleUploadedFile("photo.png", media.png().read_bytes()),
        **kwargs,
    )


def test_create_queues_the_operation_after_commit(media, storage_root):
    result = create(media)

    assert result.created is True
    assert result.operation.status == OperationStatus.QUEUED
    assert [p.name for p in stored(storage_root)] == ["input.png"]


def test_a_concurrent_request_with_the_same_key_wins_and_the_loser_keeps_nothing(media, storage_root, monkeypatch):
    winner = create(media, idempotency_key="retry-1").operation
    real_match = operations_manager._idempotent_match
    calls = []

    def missed_once(session_key, idempotency_key):
        # The loser looked before the winner had committed; it finds the winner only afterwards.
        calls.append(idempotency_key)
        return None if len(calls) == 1 else real_match(session_key, idempotency_key)

    monkeypatch.setattr(operations_manager, "_idempotent_match", missed_once)

    result = create(media, idempotency_key="retry-1")

    assert result.created is False
    assert result.operation.id == winner.id
    assert Operation.objects.count() == 1
    assert [p.parent.name for p in stored(storage_root)] == [str(winner.id)]


def test_storage_failure_leaves_no_operation(media, storage_root, monkeypatch):
    def timed_out(self, **kwargs):
        raise StorageError("The storage service timed out.")

    monkeypatch.setattr(LocalStorage, "save_upload", timed_out)

    with pytest.raises(StorageError):
        create(media)

    assert not Operation.objects.exists()


def test_content_check_failure_stores_nothing_and_cleans_its_copy(media, storage_root):
    with pytest.raises(UnsupportedMedia):
        operations_manager.operation_create(
            session_key=KEY,
            definition=OPERATIONS["image_resize"],
            parameters={},
            upload=SimpleUploadedFile("photo.png", b"GIF89a but not really"),
        )

    assert stored(storage_root) == []


def test_delete_keeps_going_when_storage_cannot_remove_a_file(media, storage_root, monkeypatch, caplog):
    operation = create(media).operation

    def refuse(self, **kwargs):
        raise StorageError("Permission denied.")

    monkeypatch.setattr(LocalStorage, "delete", refuse)

    operations_manager.operation_delete(operation=Operation.objects.prefetch_related("files").get(id=operation.id))

    assert Operation.objects.get(id=operation.id).is_deleted
    assert "Could not remove" in caplog.text


@pytest.mark.parametrize("action", ["cancel", "delete"])
def test_cancelling_or_deleting_a_queued_operation_withdraws_its_job_from_the_queue(media, action):
    first = create(media).operation
    second = create(media).operation
    queue = get_queue("image_queue")
    assert queue.job_ids == [first.job_id, second.job_id]

    if action == "cancel":
        operations_manager.operation_cancel(operation=first)
    else:
        operations_manager.operation_delete(operation=first)

    assert queue.job_ids == [second.job_id]  # the second is now next in line
    assert Job.fetch(first.job_id, connection=queue.connection).get_status() == JobStatus.CANCELED
