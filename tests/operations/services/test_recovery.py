"""The recovery sweep against real Redis, RQ's registries and a real RQ worker: pending operations
queued, vanished jobs queued again, interrupted work retried within its budget and then failed,
within the stated bound, and never twice by two sweeps at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import django_rq
import pytest
from django import db
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job, JobStatus

from apps.operations import jobs
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.operations.services.recovery import (
    INTERRUPTED_MESSAGE,
    TOO_MANY_INTERRUPTIONS_MESSAGE,
    RecoveryReport,
    recovery_run,
)
from apps.processors.registry import get_operation
from tests.factories import backdate
from tests.processors import conftest as processing
from tests.processors.conftest import assert_completed

S = OperationStatus
submit = processing.submit  # the processing tests' fixture: an operation with its input stored, queued


def queue_of(operation: Operation):
    return django_rq.get_queue(get_operation(operation.operation).queue)


def rq_job(job_id: str) -> Job:
    return Job.fetch(job_id, connection=django_rq.get_connection("image_queue"))


def silence(operation: Operation, seconds: float) -> None:
    """The operation's worker was last heard from ``seconds`` ago: it beat, then time passed."""
    attempt = Operation.objects.get(id=operation.id).attempt
    assert lifecycle.operation_record_progress(operation_id=operation.id, attempt=attempt)
    backdate(operation, timedelta(seconds=seconds))


def queued_long_ago(operation: Operation) -> None:
    backdate(operation, timedelta(minutes=5))


def started_by_a_dead_worker(operation: Operation, *, silent_for: float = 60) -> Execution:
    """What a worker killed mid-job leaves behind: its job in RQ's started registry under an
    execution that stopped beating, and the operation claimed by an attempt that fell silent."""
    queue = queue_of(operation)
    job = rq_job(operation.job_id)
    queue.remove(job)
    with queue.connection.pipeline() as pipeline:
        execution = Execution.create(job, ttl=600, pipeline=pipeline)
        job.set_status(JobStatus.STARTED, pipeline=pipeline)
        pipeline.execute()
    queue.connection.hset(execution.key, "last_heartbeat", time.time() - silent_for)
    assert lifecycle.operation_claim(operation_id=operation.id) is not None
    silence(operation, silent_for)
    operation.refresh_from_db()
    return execution


@pytest.fixture
def image_job(media, submit):
    return lambda **options: submit("image_convert", media.png(), {"output_format": "jpg"}, **options)


# --- pending --------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_pending_operation_is_queued_and_then_completes(image_job, run_worker):
    operation = image_job(enqueue=False)
    assert operation.status == S.PENDING

    report = recovery_run()

    assert report == RecoveryReport(pending_queued=1)
    operation.refresh_from_db()
    assert operation.status == S.QUEUED
    assert queue_of(operation).job_ids == [operation.job_id]
    run_worker()
    operation.refresh_from_db()
    assert_completed(operation)


# --- vanished jobs --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_queued_operation_whose_job_was_flushed_is_queued_again_and_completes(
    image_job, run_worker, redis_connection
):
    operation = image_job()
    redis_connection.flushdb()
    queued_long_ago(operation)

    report = recovery_run()

    assert report == RecoveryReport(vanished_requeued=1)
    assert queue_of(operation).job_ids == [operation.job_id]  # the same job id
    run_worker()
    operation.refresh_from_db()
    assert_completed(operation)


@pytest.mark.django_db
def test_a_job_that_lost_its_place_in_the_queue_is_queued_again_once(image_job, redis_connection):
    operation = image_job()
    queue = queue_of(operation)
    redis_connection.lrem(queue.key, 0, operation.job_id)  # a Redis restored from an older snapshot
    queued_long_ago(operation)

    assert recovery_run() == RecoveryReport(vanished_requeued=1)
    assert recovery_run() == RecoveryReport()
    assert queue.job_ids == [operation.job_id]


@pytest.mark.django_db
def test_a_job_queued_a_moment_ago_is_never_called_missing(image_job, redis_connection):
    operation = image_job()
    redis_connection.flushdb()  # as if RQ had not stored the job yet

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert operation.status == S.QUEUED


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["queue", "retry schedule"])
def test_a_job_waiting_on_its_queue_or_for_its_retry_is_left_alone(image_job, where):
    operation = image_job()
    queue = queue_of(operation)
    if where == "retry schedule":
        job = rq_job(operation.job_id)
        queue.remove(job)
        with queue.connection.pipeline() as pipeline:
            job.retry(queue, pipeline)  # what RQ does after a retryable failure
            pipeline.execute()
        assert rq_job(operation.job_id).get_status() == JobStatus.SCHEDULED
    queued_long_ago(operation)

    assert recovery_run() == RecoveryReport()
    assert queue.count + queue.scheduled_job_registry.count == 1


# --- interrupted work -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_interrupted_attempt_is_queued_again_under_a_new_job_and_completes(image_job, run_worker):
    operation = image_job()
    old_job_id = operation.job_id
    started_by_a_dead_worker(operation)

    report = recovery_run()

    assert report == RecoveryReport(interrupted_requeued=1)
    operation.refresh_from_db()
    assert operation.status == S.QUEUED
    assert operation.error_message == INTERRUPTED_MESSAGE
    assert operation.job_id == f"{old_job_id}-after-1"
    queue = queue_of(operation)
    assert queue.job_ids == [operation.job_id]
    # The dead worker's job is withdrawn: RQ will neither run it again nor report it abandoned.
    assert rq_job(old_job_id).get_status() == JobStatus.CANCELED
    assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    run_worker()
    operation.refresh_from_db()
    assert_completed(operation)
    assert operation.attempt == 2
    assert operation.files.filter(file_type=FileType.OUTPUT).count() == 1


@pytest.mark.django_db
def test_a_dead_workers_job_whose_execution_record_already_expired_is_still_withdrawn(image_job, redis_connection):
    operation = image_job()
    old_job_id = operation.job_id
    execution = started_by_a_dead_worker(operation)
    redis_connection.delete(execution.key)  # RQ's TTL on the record runs out before its registry entries

    assert recovery_run() == RecoveryReport(interrupted_requeued=1)
    assert rq_job(old_job_id).get_status() == JobStatus.CANCELED
    assert queue_of(operation).started_job_registry.get_job_ids(cleanup=False) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("silent_for", "recovered"), [(40, False), (44, False), (47, True), (300, True)])
def test_an_attempt_is_taken_for_interrupted_after_45_seconds_of_silence(image_job, settings, silent_for, recovered):
    assert settings.RECOVERY_STALE_SECONDS == 45  # the default bound docs/configuration.md states
    operation = image_job()
    started_by_a_dead_worker(operation, silent_for=silent_for)

    report = recovery_run()

    assert report.interrupted_requeued == int(recovered)
    operation.refresh_from_db()
    assert operation.status == (S.QUEUED if recovered else S.PROCESSING)


@pytest.mark.django_db
def test_the_bound_is_configurable(image_job, settings):
    settings.RECOVERY_STALE_SECONDS = 5
    operation = image_job()
    started_by_a_dead_worker(operation, silent_for=6)

    assert recovery_run() == RecoveryReport(interrupted_requeued=1)


@pytest.mark.django_db
def test_a_job_whose_worker_still_beats_in_redis_is_left_to_finish(image_job, redis_connection):
    # The job cannot reach the database (its heartbeat is old), but its worker is alive.
    operation = image_job()
    execution = started_by_a_dead_worker(operation, silent_for=60)
    redis_connection.hset(execution.key, "last_heartbeat", time.time())

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert operation.status == S.PROCESSING


@pytest.mark.django_db
def test_a_job_still_beating_in_the_database_is_left_to_finish(image_job, redis_connection):
    # Redis was flushed under a running job: RQ knows nothing of it, but its heartbeat is fresh.
    operation = image_job()
    started_by_a_dead_worker(operation, silent_for=60)
    silence(operation, 5)
    redis_connection.flushdb()

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert operation.status == S.PROCESSING


@pytest.mark.django_db
def test_a_retry_lost_while_the_database_was_down_is_caught(image_job, run_worker):
    # The attempt failed, marking it "retrying" failed too (database down), and RQ's retry found
    # the row still processing and skipped it: nothing would ever move it again but the sweep.
    operation = image_job()
    assert lifecycle.operation_claim(operation_id=operation.id) is not None
    run_worker()
    assert rq_job(operation.job_id).return_value() == "skipped"
    silence(operation, 60)

    assert recovery_run() == RecoveryReport(interrupted_requeued=1)
    run_worker()
    operation.refresh_from_db()
    assert_completed(operation)


@pytest.mark.django_db
def test_an_operation_interrupted_three_times_fails_with_a_clear_message(image_job, storage_root):
    operation = image_job()
    for attempt in (1, 2):
        started_by_a_dead_worker(operation)
        assert recovery_run() == RecoveryReport(interrupted_requeued=1), attempt
        operation.refresh_from_db()
    started_by_a_dead_worker(operation)

    assert recovery_run() == RecoveryReport(interrupted_failed=1)

    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == TOO_MANY_INTERRUPTIONS_MESSAGE
    assert operation.attempt == 3
    queue = queue_of(operation)
    assert queue.count == 0 and queue.started_job_registry.get_job_ids(cleanup=False) == []
    # The upload is kept: the user's retry starts a run with a fresh budget.
    assert (storage_root / operation.files.get(file_type=FileType.INPUT).file_path).is_file()
    retried = lifecycle.operation_reset_for_retry(operation=operation)
    assert recovery_run() == RecoveryReport(pending_queued=1)
    assert lifecycle.operation_interruptions(Operation.objects.get(id=retried.id)) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("retries_left", [0, 2])
def test_rq_reporting_the_replaced_job_abandoned_later_leaves_the_new_attempt_alone(image_job, retries_left):
    operation = image_job()
    old_job = rq_job(operation.job_id)
    started_by_a_dead_worker(operation)
    recovery_run()
    old_job.retries_left = retries_left

    jobs.on_job_failure(old_job, old_job.connection, AbandonedJobError, AbandonedJobError(), None)

    operation.refresh_from_db()
    assert operation.status == S.QUEUED
    assert operation.job_id == f"{old_job.id}-after-1"


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_act_on_each_operation_once(image_job, redis_connection):
    if db.connection.vendor != "postgresql":
        # The in-memory SQLite test database fails a second writer at once instead of waiting.
        pytest.skip("Concurrent sweeps are tested on PostgreSQL, where two writers take turns.")
    pending = [image_job(enqueue=False) for _ in range(3)]
    vanished = image_job()
    redis_connection.delete(queue_of(vanished).key)
    queued_long_ago(vanished)
    interrupted = image_job()
    started_by_a_dead_worker(interrupted)
    reports: list[RecoveryReport] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        try:
            start.wait()
            reports.append(recovery_run())
        finally:
            db.connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    totals = {key: sum(report.as_dict()[key] for report in reports) for key in RecoveryReport().as_dict()}
    assert totals == {"interrupted_requeued": 1, "interrupted_failed": 0, "vanished_requeued": 1, "pending_queued": 3}
    job_ids = queue_of(vanished).job_ids
    assert sorted(job_ids) == sorted({*job_ids})  # nothing twice
    expected = {Operation.objects.get(id=operation.id).job_id for operation in [*pending, vanished, interrupted]}
    assert set(job_ids) == expected
