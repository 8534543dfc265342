"""Queueing: the right queue and timeout, RQ Retry, one enqueue per attempt, pending when Redis is down."""

from __future__ import annotations

import django_rq
import pytest
from rq.job import Job

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from apps.operations.services.queue_manager import enqueue_on_commit, enqueue_operation, job_id_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def make(make_operation):
    """``make(operation)``: a pending operation, as created before its job is queued."""
    return lambda operation="video_compress": make_operation(operation=operation, status=OperationStatus.PENDING)


@pytest.mark.parametrize(
    ("name", "queue", "timeout"),
    [
        ("video_compress", "video_queue", 1800),
        ("image_resize", "image_queue", 60),
        ("audio_extract", "audio_queue", 300),
    ],
)
def test_enqueue_puts_the_job_on_its_queue_with_its_timeout(redis_connection, make, name, queue, timeout):
    operation = make(name)

    assert enqueue_operation(operation=operation) is True

    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED
    assert operation.job_id == f"operation-{operation.id}-0"
    assert django_rq.get_queue(queue).job_ids == [operation.job_id]
    job = Job.fetch(operation.job_id, connection=redis_connection)
    assert job.timeout == timeout
    assert job.args == (str(operation.id),)
    assert job.retries_left == 2
    assert job.retry_intervals == [60, 300]


def test_the_same_attempt_is_never_queued_twice(redis_connection, make):
    operation = make()
    assert enqueue_operation(operation=operation) is True
    assert enqueue_operation(operation=Operation.objects.get(id=operation.id)) is False
    assert django_rq.get_queue("video_queue").count == 1


def test_a_retried_operation_gets_a_new_job_id(make):
    operation = make()
    first = job_id_for(operation)
    operation.retry_count = 1
    assert job_id_for(operation) != first


def test_redis_unreachable_leaves_the_operation_pending(settings, make):
    settings.RQ_QUEUES = {name: {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 60} for name in settings.RQ_QUEUES}
    operation = make()

    assert enqueue_operation(operation=operation) is False

    operation.refresh_from_db()
    assert operation.status == OperationStatus.PENDING


def test_enqueue_on_commit_waits_for_the_transaction(django_capture_on_commit_callbacks, make):
    operation = make()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueue_on_commit(operation_id=operation.id)
    assert django_rq.get_queue("video_queue").count == 0

    callbacks[0]()

    assert django_rq.get_queue("video_queue").count == 1
