"""The recovery sweep against real Redis, RQ's registries and a real RQ worker: pending operations
queued, vanished jobs queued again, interrupted work retried within its budget and then failed,
within the stated bound, and never twice by two sweeps at once."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import django_rq
import pytest
from django import db
from django.utils import timezone
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job, JobStatus

from apps.operations import jobs
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.operations.services import lifecycle, recovery
from apps.operations.services.recovery import RecoveryReport, recovery_run
from apps.processors.registry import get_operation
from tests.factories import backdate
from tests.processors import conftest as processing
from tests.processors.conftest import assert_completed

S = OperationStatus
submit = processing.submit  # the processing tests' fixture: an operation with its input stored, queued
# What the user reads, written out here rather than imported from the code under test.
INTERRUPTED = "The worker processing this file stopped unexpectedly; it is being tried again."
TOO_MANY_INTERRUPTIONS = "Processing was interrupted too many times; please try again."
NO_LONGER_OFFERED = "This operation is no longer offered."


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
    assert operation.error_message == INTERRUPTED
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
    assert operation.error_message == TOO_MANY_INTERRUPTIONS
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


# --- several operations in one sweep --------------------------------------------------------------
def vanished(operation: Operation, *, minutes: float = 5) -> None:
    """The operation's job gone from Redis, and its queueing ``minutes`` old."""
    rq_job(operation.job_id).delete()
    backdate(operation, timedelta(minutes=minutes))


def kept_alive_in_redis(execution: Execution) -> None:
    """The worker's parent still beats for the job (the job itself cannot reach the database)."""
    execution.connection.hset(execution.key, "last_heartbeat", time.time())


@pytest.mark.django_db
def test_every_interrupted_attempt_is_recovered_and_counted_in_one_sweep(image_job):
    operations = [image_job() for _ in range(2)]
    for operation in operations:
        started_by_a_dead_worker(operation)

    assert recovery_run() == RecoveryReport(interrupted_requeued=2)
    assert [Operation.objects.get(id=o.id).status for o in operations] == [S.QUEUED, S.QUEUED]


@pytest.mark.django_db
def test_a_job_still_in_live_hands_does_not_stop_the_sweep_from_recovering_the_next(image_job):
    alive, dead = image_job(), image_job()
    kept_alive_in_redis(started_by_a_dead_worker(alive, silent_for=120))  # looked at first: silent longer
    started_by_a_dead_worker(dead, silent_for=60)

    assert recovery_run() == RecoveryReport(interrupted_requeued=1)
    alive.refresh_from_db()
    dead.refresh_from_db()
    assert (alive.status, dead.status) == (S.PROCESSING, S.QUEUED)


@pytest.mark.django_db
def test_every_attempt_over_its_budget_fails_and_is_counted_in_one_sweep(image_job, settings, caplog):
    settings.RECOVERY_MAX_ATTEMPTS = 1
    operations = [image_job() for _ in range(2)]
    for operation in operations:
        started_by_a_dead_worker(operation)

    with caplog.at_level(logging.WARNING, logger=recovery.__name__):
        assert recovery_run() == RecoveryReport(interrupted_failed=2)

    for operation in operations:
        operation.refresh_from_db()
        assert (operation.status, operation.error_message) == (S.FAILED, TOO_MANY_INTERRUPTIONS)
        assert operation.metadata["failure"] == {"detail": "attempt 1 interrupted (1 in this run)"}
        assert f"Operation {operation.id} failed: attempt 1 interrupted" in caplog.messages


@pytest.mark.django_db
def test_every_vanished_job_is_queued_again_and_counted_in_one_sweep(image_job):
    operations = [image_job() for _ in range(2)]
    for operation in operations:
        vanished(operation)

    assert recovery_run() == RecoveryReport(vanished_requeued=2)
    assert sorted(queue_of(operations[0]).job_ids) == sorted(o.job_id for o in operations)


@pytest.mark.django_db
def test_a_job_waiting_on_its_queue_does_not_stop_the_sweep_from_queuing_a_vanished_one(image_job):
    waiting, lost = image_job(), image_job()
    queued_long_ago(waiting)  # looked at first: queued longer ago
    vanished(lost, minutes=1)

    assert recovery_run() == RecoveryReport(vanished_requeued=1)
    assert sorted(queue_of(lost).job_ids) == sorted([waiting.job_id, lost.job_id])


@pytest.mark.django_db
def test_an_operation_no_longer_offered_does_not_stop_the_sweep_from_queuing_a_vanished_one(image_job):
    removed, lost = image_job(), image_job()
    # Rows of an operation that an upgrade removed from the registry.
    Operation.objects.filter(id=removed.id).update(operation="video_stabilize")
    queued_long_ago(removed)
    vanished(lost, minutes=1)

    assert recovery_run() == RecoveryReport(vanished_requeued=1)
    removed.refresh_from_db()
    assert (removed.status, removed.error_message) == (S.FAILED, NO_LONGER_OFFERED)
    assert queue_of(lost).job_ids == [removed.job_id, lost.job_id]


@pytest.mark.django_db
def test_a_sweep_works_through_a_backlog_its_limit_at_a_time_oldest_first(image_job):
    interrupted = [image_job(), image_job()]
    started_by_a_dead_worker(interrupted[0], silent_for=120)
    started_by_a_dead_worker(interrupted[1], silent_for=60)
    lost = [image_job(), image_job()]
    vanished(lost[0], minutes=6)
    vanished(lost[1], minutes=5)
    pending = [image_job(enqueue=False), image_job(enqueue=False)]

    def statuses() -> list[str]:
        return [Operation.objects.get(id=o.id).status for o in [*interrupted, *pending]]

    assert recovery_run(limit=1) == RecoveryReport(interrupted_requeued=1, vanished_requeued=1, pending_queued=1)
    assert statuses() == [S.QUEUED, S.PROCESSING, S.QUEUED, S.PENDING]
    assert queue_of(lost[0]).job_ids.count(lost[0].job_id) == 1
    assert lost[1].job_id not in queue_of(lost[1]).job_ids

    assert recovery_run(limit=1) == RecoveryReport(interrupted_requeued=1, vanished_requeued=1, pending_queued=1)
    assert statuses() == [S.QUEUED] * 4


@pytest.mark.django_db
def test_finished_operations_never_use_up_a_steps_limit(image_job):
    # Finished long ago: its heartbeat, its queueing and its creation come before everything below.
    finished = image_job()
    claimed = lifecycle.operation_claim(operation_id=finished.id)
    output = {"file_path": f"outputs/{finished.id}/output.jpg", "file_name": "a.jpg", "file_size": 1}
    assert lifecycle.operation_mark_completed(operation_id=finished.id, attempt=claimed.attempt, output=output)
    backdate(finished, timedelta(hours=1))
    interrupted, lost, pending = image_job(), image_job(), image_job(enqueue=False)
    started_by_a_dead_worker(interrupted)
    vanished(lost)

    assert recovery_run(limit=1) == RecoveryReport(interrupted_requeued=1, vanished_requeued=1, pending_queued=1)
    statuses = [Operation.objects.get(id=o.id).status for o in [finished, interrupted, pending]]
    assert statuses == [S.COMPLETED, S.QUEUED, S.QUEUED]


@pytest.mark.django_db
def test_a_sweep_that_acted_says_what_it_did_in_the_log_and_an_idle_one_says_nothing(image_job, caplog):
    image_job(enqueue=False)

    with caplog.at_level(logging.WARNING, logger=recovery.__name__):
        recovery_run()
        recovery_run()

    said = [record.getMessage() for record in caplog.records if record.name == recovery.__name__]
    assert said == [
        "Recovery: {'interrupted_requeued': 0, 'interrupted_failed': 0, 'vanished_requeued': 0, 'pending_queued': 1}"
    ]


# --- what RQ holds --------------------------------------------------------------------------------
def held_by_rq(operation: Operation, status: JobStatus) -> Job:
    """The operation's job taken off its queue and left in ``status``, its queueing long ago."""
    queue = queue_of(operation)
    job = rq_job(operation.job_id)
    queue.remove(job)
    job.set_status(status)
    queued_long_ago(operation)
    return job


def started_without_a_claim(operation: Operation, *, last_beat_ago: float) -> None:
    """A worker took the job (RQ's execution record beats) but has not claimed the operation yet,
    for instance while the database is slow to answer."""
    job = held_by_rq(operation, JobStatus.STARTED)
    with job.connection.pipeline() as pipeline:
        execution = Execution.create(job, ttl=600, pipeline=pipeline)
        pipeline.execute()
    job.connection.hset(execution.key, "last_heartbeat", time.time() - last_beat_ago)


@pytest.mark.django_db
def test_a_started_job_whose_worker_beats_is_not_queued_a_second_time(image_job):
    operation = image_job()
    started_without_a_claim(operation, last_beat_ago=1)

    assert recovery_run() == RecoveryReport()
    assert queue_of(operation).job_ids == []
    assert rq_job(operation.job_id).get_status() == JobStatus.STARTED


@pytest.mark.django_db
def test_a_started_job_whose_worker_stopped_beating_is_queued_again(image_job):
    operation = image_job()
    started_without_a_claim(operation, last_beat_ago=120)

    assert recovery_run() == RecoveryReport(vanished_requeued=1)
    assert queue_of(operation).job_ids == [operation.job_id]


@pytest.mark.django_db
def test_a_deferred_job_is_not_queued_a_second_time(image_job):
    operation = image_job()
    held_by_rq(operation, JobStatus.DEFERRED)

    assert recovery_run() == RecoveryReport()
    assert queue_of(operation).job_ids == []


@pytest.mark.django_db
@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELED])
def test_a_job_rq_ended_without_the_database_hearing_of_it_is_queued_again(image_job, status):
    operation = image_job()
    held_by_rq(operation, status)

    assert recovery_run() == RecoveryReport(vanished_requeued=1)
    assert queue_of(operation).job_ids == [operation.job_id]
    assert rq_job(operation.job_id).get_status() == JobStatus.QUEUED


@pytest.mark.django_db
def test_a_worker_whose_last_beat_is_exactly_at_the_bound_still_counts_as_alive(image_job):
    now = timezone.now().replace(microsecond=0)
    operation = image_job()
    execution = started_by_a_dead_worker(operation, silent_for=120)
    bound = now - timedelta(seconds=45)
    execution.connection.hset(execution.key, "last_heartbeat", bound.timestamp())

    assert recovery_run(now=now) == RecoveryReport()
    operation.refresh_from_db()
    assert operation.status == S.PROCESSING


@pytest.mark.django_db
def test_a_record_that_expired_does_not_hide_a_live_execution_of_the_same_job(image_job, redis_connection):
    operation = image_job()
    job = rq_job(operation.job_id)
    started_by_a_dead_worker(operation, silent_for=120)
    with redis_connection.pipeline() as pipeline:
        expired = Execution.create(job, ttl=5, pipeline=pipeline)  # listed before the live one
        pipeline.execute()
    redis_connection.delete(expired.key)
    # The dead worker's execution from started_by_a_dead_worker lives on; a new one beats now.
    with redis_connection.pipeline() as pipeline:
        live = Execution.create(job, ttl=900, pipeline=pipeline)
        pipeline.execute()
    assert job.execution_registry.get_execution_ids()[0] == expired.id
    kept_alive_in_redis(live)

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert operation.status == S.PROCESSING


# --- a worker heard from while the sweep looks ----------------------------------------------------
# Between the sweep's look at RQ and its write to the database, the attempt can speak again. That
# moment cannot be reached from outside, so the look is wrapped: the attempt speaks right after it.
def speaking_after_the_look(monkeypatch, speak) -> None:
    look = recovery.job_in_live_hands

    def look_then_speak(**arguments) -> bool:
        answer = look(**arguments)
        speak()
        return answer

    monkeypatch.setattr(recovery, "job_in_live_hands", look_then_speak)


@pytest.mark.django_db
def test_an_attempt_heard_from_while_the_sweep_looked_is_not_failed(image_job, settings, monkeypatch):
    settings.RECOVERY_MAX_ATTEMPTS = 1
    operation = image_job()
    started_by_a_dead_worker(operation)
    speaking_after_the_look(
        monkeypatch,
        lambda: lifecycle.operation_record_progress(operation_id=operation.id, attempt=operation.attempt, progress=50),
    )

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert (operation.status, operation.progress) == (S.PROCESSING, 50)


@pytest.mark.django_db
def test_an_attempt_put_back_on_the_queue_while_the_sweep_looked_is_not_failed(image_job, settings, monkeypatch):
    settings.RECOVERY_MAX_ATTEMPTS = 1
    operation = image_job()
    started_by_a_dead_worker(operation)
    speaking_after_the_look(
        monkeypatch,
        lambda: lifecycle.operation_mark_retrying(
            operation_id=operation.id, attempt=operation.attempt, message="Storage timed out; trying again."
        ),
    )

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert (operation.status, operation.error_message) == (S.QUEUED, "Storage timed out; trying again.")


# --- one clock ------------------------------------------------------------------------------------
def host_clock_off_by(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's clock (Django's timezone.now) runs ``seconds`` off the database's."""
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=seconds))


@pytest.mark.django_db
@pytest.mark.parametrize(("writer_skew", "sweeper_skew"), [(-60, 0), (0, 60), (-30, 30)])
def test_heartbeats_are_stamped_and_judged_on_the_databases_clock(
    image_job, redis_connection, monkeypatch, writer_skew, sweeper_skew
):
    """With a minute between the hosts' clocks, a job that beat a moment ago is not taken over."""
    operation = image_job()
    started_by_a_dead_worker(operation, silent_for=60)  # RQ's record is silent: only the row speaks
    with monkeypatch.context() as writer:
        host_clock_off_by(writer, writer_skew)
        assert lifecycle.operation_record_progress(operation_id=operation.id, attempt=operation.attempt)
    host_clock_off_by(monkeypatch, sweeper_skew)

    assert recovery_run() == RecoveryReport()
    operation.refresh_from_db()
    assert operation.status == S.PROCESSING


@pytest.mark.django_db
def test_a_claim_is_stamped_on_the_databases_clock(image_job, monkeypatch):
    operation = image_job()
    host_clock_off_by(monkeypatch, -3600)

    claimed = lifecycle.operation_claim(operation_id=operation.id)

    assert claimed is not None
    # Stamped by the database, not by this host's clock an hour behind.
    assert abs((claimed.started_at - claimed.heartbeat_at).total_seconds()) < 1
    assert abs((claimed.heartbeat_at - (timezone.now() + timedelta(hours=1))).total_seconds()) < 60
