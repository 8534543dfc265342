"""Rows of an operation that is no longer offered (removed in an upgrade): the recovery sweep fails
them with a plain sentence and goes on with the rest of its work, and a retry is refused."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.exceptions import InvalidState
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.operations.services import lifecycle, operations_manager, queue_manager
from apps.operations.services.recovery import recovery_run
from tests.processors import conftest as processing

S = OperationStatus
submit = processing.submit
REMOVED = "video_stabilize"  # a name no registry entry has


def renamed_to_a_removed_operation(operation: Operation) -> None:
    Operation.objects.filter(id=operation.id).update(operation=REMOVED)


@pytest.fixture
def image_job(media, submit):
    return lambda **options: submit("image_convert", media.png(), {"output_format": "jpg"}, **options)


@pytest.mark.django_db
def test_a_pending_operation_no_longer_offered_fails_and_the_sweep_queues_the_next(image_job):
    removed = image_job(enqueue=False)
    renamed_to_a_removed_operation(removed)
    ordinary = image_job(enqueue=False)

    report = recovery_run()

    removed.refresh_from_db()
    ordinary.refresh_from_db()
    assert removed.status == S.FAILED
    assert removed.error_message == "This operation is no longer offered."
    assert removed.completed_at is not None and removed.expires_at is not None
    assert ordinary.status == S.QUEUED
    assert report.pending_queued == 1


@pytest.mark.django_db
def test_a_queued_operation_no_longer_offered_fails_and_the_sweep_goes_on(image_job):
    removed = image_job()
    renamed_to_a_removed_operation(removed)
    Operation.objects.filter(id=removed.id).update(queued_at=timezone.now() - timedelta(minutes=5))
    pending = image_job(enqueue=False)

    report = recovery_run()

    removed.refresh_from_db()
    pending.refresh_from_db()
    assert removed.status == S.FAILED
    assert removed.error_message == "This operation is no longer offered."
    assert pending.status == S.QUEUED
    assert report.pending_queued == 1


@pytest.mark.django_db
def test_interrupted_work_of_an_operation_no_longer_offered_fails_instead_of_being_retried(image_job):
    removed = image_job()
    assert lifecycle.operation_claim(operation_id=removed.id) is not None
    renamed_to_a_removed_operation(removed)
    Operation.objects.filter(id=removed.id).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    pending = image_job(enqueue=False)

    report = recovery_run()

    removed.refresh_from_db()
    pending.refresh_from_db()
    assert removed.status == S.FAILED
    assert removed.error_message == "This operation is no longer offered."
    assert report.interrupted_failed == 1 and report.interrupted_requeued == 0
    assert pending.status == S.QUEUED


@pytest.mark.django_db
def test_a_retry_of_an_operation_no_longer_offered_is_refused_and_changes_nothing(image_job, storage_root):
    removed = image_job(enqueue=False)
    renamed_to_a_removed_operation(removed)
    recovery_run()  # fails it: the name is not offered
    removed.refresh_from_db()
    assert removed.status == S.FAILED

    with pytest.raises(InvalidState) as refused:
        operations_manager.operation_retry(operation=removed)

    assert refused.value.message == "This operation is no longer offered, so it cannot be run again."
    removed.refresh_from_db()
    assert removed.status == S.FAILED and removed.retry_count == 0
    # The upload is kept (until it expires like any failed operation's).
    assert (storage_root / removed.files.get(file_type=FileType.INPUT).file_path).is_file()


@pytest.mark.django_db
def test_queueing_an_operation_no_longer_offered_fails_it_and_puts_nothing_on_a_queue(image_job):
    removed = image_job(enqueue=False)
    renamed_to_a_removed_operation(removed)
    removed.refresh_from_db()

    assert queue_manager.enqueue_operation(operation=removed) is False

    removed.refresh_from_db()
    assert removed.status == S.FAILED
    assert removed.error_message == "This operation is no longer offered."
    assert removed.job_id == ""
    assert all(django_rq.get_queue(name).count == 0 for name in settings.RQ_QUEUES)
