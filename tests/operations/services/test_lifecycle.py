"""Guarded status transitions: one winner per claim, no late writes over cancels, deletes or newer attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.exceptions import Expired, InvalidState
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.operations.services.clock import database_now
from tests.factories import backdate, operation_row

pytestmark = pytest.mark.django_db

S = OperationStatus
P = ProcessingPhase
OUTPUT = {
    "file_path": "outputs/x/output.mp4",
    "file_name": "x_compressed.mp4",
    "file_size": 10,
    "mime_type": "video/mp4",
}


def make(status=S.QUEUED, *, expires_at=None, **fields) -> Operation:
    """An operation moved to ``status`` through the lifecycle (``tests/factories.py``), its clock
    moved so that it expires at ``expires_at`` when given."""
    operation = operation_row(status, session_key="k" * 32, **fields)
    if expires_at is None:
        return operation
    if operation.expires_at is None:
        # No service gives active work an expiry: the guard is for a row that has one anyway.
        Operation.objects.filter(id=operation.id).update(expires_at=expires_at)
        return Operation.objects.get(id=operation.id)
    return backdate(operation, operation.expires_at - expires_at)


def test_only_one_of_two_workers_claims_an_operation():
    operation = make()
    first = lifecycle.operation_claim(operation_id=operation.id)
    second = lifecycle.operation_claim(operation_id=operation.id)

    assert first is not None and first.status == S.PROCESSING and first.attempt == 1
    assert second is None


def test_a_cancelled_operation_cannot_be_claimed_or_completed_by_a_late_worker():
    operation = make()
    claimed = lifecycle.operation_claim(operation_id=operation.id)
    lifecycle.operation_cancel(operation=operation)

    assert lifecycle.operation_record_progress(operation_id=operation.id, attempt=claimed.attempt, progress=50) is False
    assert (
        lifecycle.operation_mark_completed(operation_id=operation.id, attempt=claimed.attempt, output=OUTPUT) is False
    )
    operation.refresh_from_db()
    assert operation.status == S.CANCELLED
    assert not operation.files.exists()


def test_a_stale_attempt_cannot_write_over_a_newer_one():
    operation = make()
    old = lifecycle.operation_claim(operation_id=operation.id)
    assert lifecycle.operation_mark_retrying(operation_id=operation.id, attempt=old.attempt, message="storage timeout")
    new = lifecycle.operation_claim(operation_id=operation.id)

    assert new.attempt == old.attempt + 1
    assert lifecycle.operation_mark_failed(operation_id=operation.id, attempt=old.attempt, message="x") is False
    assert lifecycle.operation_mark_completed(operation_id=operation.id, attempt=new.attempt, output=OUTPUT) is True


def test_completion_stores_one_output_and_sets_expiry(settings):
    settings.FILE_RETENTION_DAYS = 7
    operation = make()
    claimed = lifecycle.operation_claim(operation_id=operation.id)

    assert lifecycle.operation_mark_completed(
        operation_id=operation.id, attempt=claimed.attempt, output=OUTPUT, metadata={"compression_ratio": 0.5}
    )

    operation.refresh_from_db()
    assert operation.status == S.COMPLETED
    assert operation.progress == 100
    assert (operation.expires_at - operation.completed_at).days == 7
    assert operation.metadata["compression_ratio"] == 0.5
    assert operation.files.get(file_type=FileType.OUTPUT).file_name == "x_compressed.mp4"


def test_progress_is_clamped_and_records_phase():
    operation = make()
    claimed = lifecycle.operation_claim(operation_id=operation.id)
    lifecycle.operation_record_progress(
        operation_id=operation.id, attempt=claimed.attempt, progress=250, phase="storing"
    )
    operation.refresh_from_db()
    assert (operation.progress, operation.phase) == (100, "storing")


def test_failure_without_attempt_applies_to_any_active_operation():
    operation = make(status=S.PENDING)
    assert lifecycle.operation_mark_failed(operation_id=operation.id, message="Gave up after 3 tries.")
    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == "Gave up after 3 tries."
    assert lifecycle.operation_mark_failed(operation_id=operation.id, message="again") is False


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_finished_operations_cannot_be_cancelled(status):
    with pytest.raises(InvalidState, match=f"already {status}"):
        lifecycle.operation_cancel(operation=make(status=status))


@pytest.mark.parametrize(
    ("status", "how"), [(S.FAILED, {"error_message": "boom", "progress": 40}), (S.CANCELLED, {"progress": 40})]
)
def test_retry_resets_failed_and_cancelled(status, how):
    operation = make(status=status, **how)
    reset = lifecycle.operation_reset_for_retry(operation=operation)
    assert (reset.status, reset.retry_count, reset.error_message, reset.progress) == (S.PENDING, 1, "", 0)


@pytest.mark.parametrize("status", [S.PENDING, S.QUEUED, S.PROCESSING, S.COMPLETED])
def test_retry_of_other_statuses_is_invalid(status):
    with pytest.raises(InvalidState):
        lifecycle.operation_reset_for_retry(operation=make(status=status))


def test_retry_after_expiry_is_expired():
    operation = make(status=S.FAILED, expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Expired):
        lifecycle.operation_reset_for_retry(operation=operation)


def test_delete_cancels_active_work_and_hides_the_row():
    operation = make(status=S.PROCESSING)
    deleted = lifecycle.operation_mark_deleted(operation=operation)
    assert deleted.is_deleted and deleted.status == S.CANCELLED
    assert lifecycle.operation_record_progress(operation_id=operation.id, attempt=1, progress=10) is False


def test_delete_keeps_the_status_of_a_finished_operation():
    deleted = lifecycle.operation_mark_deleted(operation=make(status=S.COMPLETED))
    assert deleted.is_deleted and deleted.status == S.COMPLETED


def test_an_attempt_stops_being_current_when_cancelled_deleted_or_superseded():
    operation = make()
    claimed = lifecycle.operation_claim(operation_id=operation.id)
    assert lifecycle.operation_is_current(operation_id=operation.id, attempt=claimed.attempt) is True
    assert lifecycle.operation_is_current(operation_id=operation.id, attempt=claimed.attempt + 1) is False

    lifecycle.operation_cancel(operation=operation)
    assert lifecycle.operation_is_current(operation_id=operation.id, attempt=claimed.attempt) is False

    deleted = make(status=S.PROCESSING)
    lifecycle.operation_mark_deleted(operation=deleted)
    assert lifecycle.operation_is_current(operation_id=deleted.id, attempt=1) is False


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_retention_marks_an_expired_finished_operation_once_and_leaves_it_visible(status):
    now = timezone.now()
    operation = make(status=status, expires_at=now)

    assert lifecycle.operation_mark_files_expired(operation_id=operation.id, now=now) is True
    assert lifecycle.operation_mark_files_expired(operation_id=operation.id, now=now) is False
    operation.refresh_from_db()
    assert operation.deleted_at == now and operation.is_deleted is False


@pytest.mark.parametrize("status", [S.PENDING, S.QUEUED, S.PROCESSING])
def test_retention_never_marks_active_work(status):
    now = timezone.now()
    operation = make(status=status, expires_at=now)

    assert lifecycle.operation_mark_files_expired(operation_id=operation.id, now=now) is False


def test_retention_does_not_mark_an_operation_before_it_expires():
    now = timezone.now()
    operation = make(status=S.COMPLETED, expires_at=now + timedelta(seconds=1))

    assert lifecycle.operation_mark_files_expired(operation_id=operation.id, now=now) is False


# --- recovery's transitions -----------------------------------------------------------------------
def silent_attempt(seconds: float = 60) -> Operation:
    """A claimed operation whose worker has not been heard from for ``seconds``."""
    operation = make(S.PROCESSING, job_id="operation-x-0")
    return backdate(operation, timedelta(seconds=seconds))


def test_a_vanished_job_is_requeued_by_one_of_two_sweeps_that_saw_it():
    operation = make(job_id="operation-x-0", queued_at=timezone.now() - timedelta(minutes=5))
    seen = operation.queued_at

    assert lifecycle.operation_mark_requeued(operation_id=operation.id, job_id=operation.job_id, queued_at=seen)
    assert (
        lifecycle.operation_mark_requeued(operation_id=operation.id, job_id=operation.job_id, queued_at=seen) is False
    )
    operation.refresh_from_db()
    assert operation.status == S.QUEUED and operation.queued_at > seen


@pytest.mark.parametrize("status", [S.PENDING, S.PROCESSING, S.CANCELLED])
def test_only_a_queued_operation_is_requeued(status):
    operation = make(status=status, job_id="operation-x-0")

    assert lifecycle.operation_mark_requeued(operation_id=operation.id, job_id="operation-x-0", queued_at=None) is False


def test_an_interrupted_attempt_goes_back_to_queued_under_its_new_job_and_is_counted():
    operation = silent_attempt()
    before = timezone.now() - timedelta(seconds=45)
    requeued_from = timezone.now()

    assert lifecycle.operation_requeue_interrupted(
        operation_id=operation.id, attempt=1, heartbeat_before=before, job_id="operation-x-0-after-1", message="Again."
    )

    operation.refresh_from_db()
    assert requeued_from <= operation.queued_at <= timezone.now()
    assert (operation.status, operation.job_id, operation.error_message) == (
        S.QUEUED,
        "operation-x-0-after-1",
        "Again.",
    )
    assert (operation.progress, operation.phase) == (0, "")
    assert lifecycle.operation_interruptions(operation) == 1
    assert lifecycle.operation_claim(operation_id=operation.id).attempt == 2


def test_an_attempt_heard_from_since_the_bound_is_not_taken_for_interrupted():
    operation = silent_attempt(seconds=10)

    assert (
        lifecycle.operation_requeue_interrupted(
            operation_id=operation.id,
            attempt=1,
            heartbeat_before=timezone.now() - timedelta(seconds=45),
            job_id="operation-x-0-after-1",
            message="Again.",
        )
        is False
    )
    operation.refresh_from_db()
    assert operation.status == S.PROCESSING and operation.job_id == "operation-x-0"


def test_an_interrupted_attempt_is_requeued_once_even_if_two_sweeps_saw_it():
    operation = silent_attempt()
    arguments = {
        "operation_id": operation.id,
        "attempt": 1,
        "heartbeat_before": timezone.now() - timedelta(seconds=45),
        "job_id": "operation-x-0-after-1",
        "message": "Again.",
    }

    assert lifecycle.operation_requeue_interrupted(**arguments) is True
    assert lifecycle.operation_requeue_interrupted(**arguments) is False
    operation.refresh_from_db()
    assert lifecycle.operation_interruptions(operation) == 1


def test_interruptions_are_counted_per_run_so_a_users_retry_starts_afresh():
    operation = silent_attempt()
    lifecycle.operation_requeue_interrupted(
        operation_id=operation.id,
        attempt=1,
        heartbeat_before=timezone.now(),
        job_id="operation-x-0-after-1",
        message="Again.",
    )
    lifecycle.operation_cancel(operation=operation)
    retried = lifecycle.operation_reset_for_retry(operation=operation)

    assert lifecycle.operation_interruptions(retried) == 0


def test_rq_giving_up_on_a_replaced_job_does_not_fail_the_operation():
    operation = make(job_id="operation-x-0-after-1")

    assert (
        lifecycle.operation_mark_failed(operation_id=operation.id, message="Gave up.", job_id="operation-x-0") is False
    )
    assert lifecycle.operation_mark_failed(operation_id=operation.id, message="Gave up.", job_id=operation.job_id)


def test_a_sweep_fails_only_an_attempt_still_silent():
    operation = silent_attempt(seconds=10)
    before = timezone.now() - timedelta(seconds=45)

    assert (
        lifecycle.operation_mark_failed(operation_id=operation.id, attempt=1, heartbeat_before=before, message="x")
        is False
    )
    backdate(operation, operation.heartbeat_at - before + timedelta(seconds=1))
    assert lifecycle.operation_mark_failed(operation_id=operation.id, attempt=1, heartbeat_before=before, message="x")


# --- queueing -------------------------------------------------------------------------------------
def claimed(operation: Operation, *, progress: int = 40, phase: ProcessingPhase = P.PROCESSING) -> Operation:
    """``operation`` queued, claimed by a worker and reported ``progress`` into ``phase``."""
    attempt = lifecycle.operation_claim(operation_id=operation.id).attempt
    assert lifecycle.operation_record_progress(
        operation_id=operation.id, attempt=attempt, progress=progress, phase=phase
    )
    return Operation.objects.get(id=operation.id)


def test_queueing_records_the_job_and_the_time_and_only_the_first_caller_wins():
    operation = make(status=S.PENDING)
    before = timezone.now()

    assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-0") is True
    after = timezone.now()
    assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-1") is False

    operation.refresh_from_db()
    assert (operation.status, operation.job_id, operation.phase) == (S.QUEUED, "operation-x-0", "")
    assert before <= operation.queued_at <= after


def test_queueing_keeps_the_time_its_caller_gives():
    operation = make(status=S.PENDING)
    at = timezone.now() - timedelta(minutes=3)

    assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-0", queued_at=at)

    operation.refresh_from_db()
    assert operation.queued_at == at


@pytest.mark.parametrize("status", [S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED])
def test_only_a_pending_operation_is_queued(status):
    operation = make(status=status, job_id="operation-x-0")

    assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-1") is False
    operation.refresh_from_db()
    assert (operation.status, operation.job_id) == (status, "operation-x-0")


def test_an_enqueue_that_failed_puts_the_operation_back_to_pending_to_be_queued_later():
    operation = make(status=S.PENDING)
    lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-0")

    assert lifecycle.operation_mark_pending(operation_id=operation.id, job_id="operation-x-0") is True
    assert lifecycle.operation_mark_pending(operation_id=operation.id, job_id="operation-x-0") is False

    operation.refresh_from_db()
    assert (operation.status, operation.queued_at) == (S.PENDING, None)
    assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-0") is True


def test_a_failed_enqueue_of_a_replaced_job_leaves_the_operation_queued():
    operation = make(status=S.PENDING)
    lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-0-after-1")

    assert lifecycle.operation_mark_pending(operation_id=operation.id, job_id="operation-x-0") is False
    operation.refresh_from_db()
    assert operation.status == S.QUEUED and operation.queued_at is not None


def test_a_sweep_that_saw_an_older_job_does_not_requeue_the_operation():
    operation = make(job_id="operation-x-0-after-1", queued_at=timezone.now() - timedelta(minutes=5))

    assert (
        lifecycle.operation_mark_requeued(
            operation_id=operation.id, job_id="operation-x-0", queued_at=operation.queued_at
        )
        is False
    )


# --- what each transition records -----------------------------------------------------------------
def test_a_transition_changes_only_the_operation_it_names():
    operation, other = make(), make()

    lifecycle.operation_claim(operation_id=operation.id)

    other.refresh_from_db()
    assert (other.status, other.attempt, other.started_at) == (S.QUEUED, 0, None)


def test_a_claim_starts_the_attempt_now_at_fetching_with_the_last_error_cleared():
    operation = make()
    first = claimed(operation)
    lifecycle.operation_mark_retrying(operation_id=operation.id, attempt=first.attempt, message="Storage timed out.")
    # Stamped by the database's Now() (milliseconds on SQLite): read on that clock.
    before = database_now()

    second = lifecycle.operation_claim(operation_id=operation.id)

    after = database_now()
    assert before <= second.started_at <= after
    assert second.heartbeat_at == second.started_at
    assert (second.progress, second.phase, second.error_message) == (0, P.FETCHING, "")


def test_a_progress_write_says_it_applied_and_never_records_less_than_zero():
    operation = make()
    attempt = lifecycle.operation_claim(operation_id=operation.id).attempt

    assert lifecycle.operation_record_progress(operation_id=operation.id, attempt=attempt, progress=-5) is True

    operation.refresh_from_db()
    assert operation.progress == 0


def test_a_phase_change_alone_keeps_the_progress_and_refreshes_the_heartbeat():
    operation = claimed(make(), progress=30)
    Operation.objects.filter(id=operation.id).update(heartbeat_at=timezone.now() - timedelta(seconds=20))
    before = database_now()  # the heartbeat is stamped by the database's Now() (milliseconds on SQLite)

    assert lifecycle.operation_record_progress(operation_id=operation.id, attempt=operation.attempt, phase=P.STORING)

    operation.refresh_from_db()
    assert (operation.progress, operation.phase) == (30, P.STORING)
    assert operation.heartbeat_at >= before


def test_completion_clears_the_phase_and_any_error():
    operation = claimed(make(), phase=P.STORING)

    assert lifecycle.operation_mark_completed(operation_id=operation.id, attempt=operation.attempt, output=OUTPUT)

    operation.refresh_from_db()
    assert (operation.phase, operation.error_message) == ("", "")


def test_a_failure_records_when_clears_the_phase_and_expires_after_the_retention_period(settings):
    settings.FILE_RETENTION_DAYS = 3
    operation = claimed(make())
    before = timezone.now()

    assert lifecycle.operation_mark_failed(
        operation_id=operation.id, attempt=operation.attempt, message="The encoder stopped."
    )

    after = timezone.now()
    operation.refresh_from_db()
    assert (operation.status, operation.phase, operation.error_message) == (S.FAILED, "", "The encoder stopped.")
    assert before <= operation.completed_at <= after
    assert operation.expires_at - operation.completed_at == timedelta(days=3)


def test_a_workers_late_failure_does_not_fail_its_attempt_once_back_on_the_queue():
    operation = claimed(make())
    lifecycle.operation_mark_retrying(operation_id=operation.id, attempt=operation.attempt, message="Trying again.")

    assert (
        lifecycle.operation_mark_failed(operation_id=operation.id, attempt=operation.attempt, message="Too late.")
        is False
    )
    operation.refresh_from_db()
    assert (operation.status, operation.error_message) == (S.QUEUED, "Trying again.")


def test_a_retryable_error_puts_the_attempt_back_on_the_queue_from_the_start_with_its_message():
    operation = claimed(make(queued_at=timezone.now() - timedelta(minutes=2)), progress=60)
    before = timezone.now()

    assert lifecycle.operation_mark_retrying(
        operation_id=operation.id, attempt=operation.attempt, message="Storage timed out; trying again."
    )

    operation.refresh_from_db()
    assert (operation.status, operation.phase, operation.progress) == (S.QUEUED, "", 0)
    assert operation.error_message == "Storage timed out; trying again."
    assert before <= operation.queued_at <= timezone.now()


def test_cancelling_work_in_progress_records_when_clears_the_phase_and_sets_the_expiry(settings):
    settings.FILE_RETENTION_DAYS = 2
    operation = claimed(make())
    before = timezone.now()

    cancelled = lifecycle.operation_cancel(operation=operation)

    after = timezone.now()
    assert (cancelled.status, cancelled.phase) == (S.CANCELLED, "")
    assert before <= cancelled.completed_at <= after
    assert cancelled.expires_at - cancelled.completed_at == timedelta(days=2)


def test_a_retry_clears_every_trace_of_the_previous_run():
    operation = make(status=S.PENDING)
    lifecycle.operation_mark_queued(operation_id=operation.id, job_id="operation-x-0")
    operation = claimed(operation, progress=70)
    lifecycle.operation_mark_failed(operation_id=operation.id, attempt=operation.attempt, message="It broke.")

    retried = lifecycle.operation_reset_for_retry(operation=operation)

    assert (retried.status, retried.retry_count, retried.progress) == (S.PENDING, 1, 0)
    assert (retried.phase, retried.error_message) == ("", "")
    times = (retried.started_at, retried.completed_at, retried.expires_at, retried.queued_at, retried.heartbeat_at)
    assert times == (None, None, None, None, None)


def test_a_retry_after_expiry_asks_for_the_file_again():
    operation = make(status=S.FAILED, expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(Expired) as caught:
        lifecycle.operation_reset_for_retry(operation=operation)

    assert caught.value.message == "The files of this operation have expired; upload the file again."


def test_a_retry_of_an_active_operation_says_which_can_be_retried():
    with pytest.raises(InvalidState) as caught:
        lifecycle.operation_reset_for_retry(operation=make(status=S.QUEUED))

    assert caught.value.message == "Only failed or cancelled operations can be retried; this one is queued."


def test_a_retry_racing_a_delete_does_not_bring_the_deleted_operation_back():
    operation = claimed(make())
    lifecycle.operation_mark_failed(operation_id=operation.id, attempt=operation.attempt, message="It broke.")
    seen_by_the_retry = Operation.objects.get(id=operation.id)
    lifecycle.operation_mark_deleted(operation=operation)

    with pytest.raises(InvalidState):
        lifecycle.operation_reset_for_retry(operation=seen_by_the_retry)

    operation.refresh_from_db()
    assert (operation.status, operation.is_deleted) == (S.FAILED, True)


def test_deleting_work_in_progress_records_when_and_clears_the_phase():
    operation = claimed(make())
    before = timezone.now()

    deleted = lifecycle.operation_mark_deleted(operation=operation)

    after = timezone.now()
    deleted.refresh_from_db()
    assert (deleted.status, deleted.phase, deleted.is_deleted) == (S.CANCELLED, "", True)
    assert before <= deleted.deleted_at <= after
    assert deleted.completed_at == deleted.deleted_at


def test_deleting_a_finished_operation_records_when_and_keeps_its_completion_time():
    operation = claimed(make())
    lifecycle.operation_mark_completed(operation_id=operation.id, attempt=operation.attempt, output=OUTPUT)
    completed_at = Operation.objects.get(id=operation.id).completed_at
    before = timezone.now()

    deleted = lifecycle.operation_mark_deleted(operation=operation)

    deleted.refresh_from_db()
    assert before <= deleted.deleted_at <= timezone.now()
    assert (deleted.status, deleted.completed_at) == (S.COMPLETED, completed_at)
