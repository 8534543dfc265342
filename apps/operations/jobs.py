"""The RQ jobs: ``process_operation`` and the callbacks RQ calls when a job fails.

``process_operation`` is a thin adapter: it claims the operation, runs it through the processing
service (``services/processing.py``) under a heartbeat and a deadline, and applies the failure
policy (``services/failures.py``) to whatever goes wrong:

- permanent (bad input, codec error, no stream to work on, a failed output check, the time limit):
  the operation fails at once with a message for its user and the job returns normally, so RQ
  does not retry it;
- temporary (storage or network timeouts, a database or Redis hiccup): while RQ has retries left
  the operation goes back to ``queued`` with a note and the exception is re-raised, so RQ's Retry
  runs it again after 60 s, then 300 s (through RQ's scheduler); on the last attempt it fails.

Failures that never reach the function's own handling (a worker killed mid-job and found by RQ's
registry cleanup, a work-horse killed by the OOM killer) arrive in ``on_job_failure`` and
``on_work_horse_killed``; a job whose worker died with it, or whose failure could not be recorded
(the database unreachable), is found by the recovery sweep (``services/recovery.py``) through its
silent heartbeats. User messages go to ``error_message``; FFmpeg's stderr tail and exception text
go to the logs and ``Operation.metadata`` for operators.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from typing import Any, TypeGuard

from django import db
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException
from rq.utils import now as rq_now

from apps.core.exceptions import StorageError, ValidationFailed
from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from apps.operations.services import lifecycle, webhooks
from apps.operations.services.failures import (
    NO_LONGER_OFFERED_MESSAGE,
    Failure,
    WorkHorseKilled,
    classify_failure,
    final_failure,
    time_limit_message,
)
from apps.operations.services.processing import operation_process, remove_earlier_workspaces
from apps.operations.services.progress import (
    Heartbeat,
    ProgressTracker,
    abandon_work_horse,
    rq_still_hears_this_machine,
)
from apps.operations.services.workspace import job_workspace
from apps.processors.exceptions import FFmpegError, FFmpegTimeout, OperationStopped, ProcessingError
from apps.processors.registry import OPERATIONS, OperationDefinition

logger = logging.getLogger(__name__)

# Part of a job's time kept back from FFmpeg, so that a run that hits its limit still leaves time
# to record the failure cleanly before RQ's own timeout fires.
STORING_MARGIN_RATIO = 0.1
STORING_MARGIN_MAX_SECONDS = 30
OPERATOR_DETAIL_LIMIT = 4000


def process_operation(operation_id: str) -> str:
    """Process one operation; returns what happened (``completed``, ``failed``, ``stopped``,
    ``skipped``) for RQ's job result. Raises only to ask RQ for a retry."""
    operation = lifecycle.operation_claim(operation_id=uuid.UUID(operation_id))
    if operation is None:
        logger.info("Operation %s is not queued (cancelled, deleted or already taken); skipping", operation_id)
        return "skipped"
    job = get_current_job()
    definition = OPERATIONS.get(operation.operation)
    if definition is None:
        return _fail(operation, Failure(NO_LONGER_OFFERED_MESSAGE, True, f"unknown {operation.operation!r}"))
    time_limit = job.timeout if job is not None and job.timeout and job.timeout > 0 else definition.timeout
    started = time.monotonic()
    deadline = started + time_limit - min(STORING_MARGIN_MAX_SECONDS, time_limit * STORING_MARGIN_RATIO)
    logger.info("Processing %s %s (attempt %s)", operation.operation, operation.id, operation.attempt)
    remove_earlier_workspaces(operation)
    try:
        heartbeat = Heartbeat(
            operation_id=operation.id,
            attempt=operation.attempt,
            on_lost=abandon_work_horse,
            still_heard=rq_still_hears_this_machine,
        )
        with heartbeat, job_workspace(operation.id) as workspace:
            tracker = ProgressTracker(operation_id=operation.id, attempt=operation.attempt)
            operation_process(
                operation=operation, definition=definition, tracker=tracker, workspace=workspace, deadline=deadline
            )
    except OperationStopped:
        logger.info("Operation %s was cancelled, deleted or taken over; stopped its work", operation.id)
        return "stopped"
    except (FFmpegTimeout, JobTimeoutException) as e:
        # A job that ran out of time would run out of time again: fail now, never retry.
        return _fail_out_of_time(operation, Failure(time_limit_message(definition, time_limit), True, _detail(e)))
    except Exception as e:
        failure = classify_failure(e)
        if not failure.permanent and _rq_will_retry(job):
            _mark_retrying(operation, failure, job)
            raise
        return _fail(operation, failure if failure.permanent else final_failure(failure), error=e)
    logger.info("Completed %s %s in %.1f s", operation.operation, operation.id, time.monotonic() - started)
    return "completed"


def _fail_out_of_time(operation: Operation, failure: Failure) -> str:
    try:
        return _fail(operation, failure)
    except db.DatabaseError:
        # RQ's timeout can interrupt a query half-way and leave the connection unusable.
        db.connection.close()
        return _fail(operation, failure)


def _rq_will_retry(job: Job | None) -> TypeGuard[Job]:
    return job is not None and bool(job.retries_left)


def _retry_delay_text(job: Job) -> str:
    seconds = job.get_retry_interval()
    if seconds >= 60:
        minutes = round(seconds / 60)
        return f"in {minutes} minute{'s' if minutes != 1 else ''}"
    return f"in {seconds} seconds" if seconds else "shortly"


def _mark_retrying(operation: Operation, failure: Failure, job: Job) -> None:
    logger.warning("Operation %s hit a temporary problem, RQ will retry: %s", operation.id, failure.detail)
    message = f"{failure.message.rstrip('.')}; it will be tried again {_retry_delay_text(job)}."
    lifecycle.operation_mark_retrying(operation_id=operation.id, attempt=operation.attempt, message=message)


def _fail(operation: Operation, failure: Failure, *, error: BaseException | None = None) -> str:
    metadata: dict[str, Any] = {"failure": {"detail": failure.detail[-OPERATOR_DETAIL_LIMIT:]}}
    if isinstance(error, FFmpegError) and error.stderr_tail:
        metadata["ffmpeg_stderr_tail"] = error.stderr_tail[-OPERATOR_DETAIL_LIMIT:]
    if error is not None and not isinstance(error, ProcessingError | StorageError | ValidationFailed):
        # Not one of ours: keep the traceback for whoever has to fix it.
        logger.error("Operation %s failed unexpectedly", operation.id, exc_info=error)
        metadata["failure"]["traceback"] = "".join(traceback.format_exception(error))[-OPERATOR_DETAIL_LIMIT:]
    else:
        logger.warning("Operation %s failed: %s | %s", operation.id, failure.message, failure.detail[-2000:])
    lifecycle.operation_mark_failed(
        operation_id=operation.id, attempt=operation.attempt, message=failure.message, metadata=metadata
    )
    return "failed"


def _detail(error: BaseException) -> str:
    if isinstance(error, FFmpegError):
        return f"{error}: {error.stderr_tail}"
    return repr(error)


# --- failures RQ reports ----------------------------------------------------------------------------
def on_job_failure(job: Job, connection: Any, exc_type: type[BaseException], exc_value: BaseException, tb: Any) -> None:
    """RQ's failure callback: runs for every exception that leaves ``process_operation`` (the
    retryable ones it re-raised, or one raised where it could not catch it) and for jobs RQ found
    abandoned by a dead worker.

    A retryable failure while RQ has retries left puts a row still marked processing by this job
    back to queued; anything else fails the operation with a clear message, and a permanent failure
    also tells RQ not to retry. All are guarded transitions, so whatever ``process_operation``
    already recorded is never overwritten.
    """
    operation_id = _operation_id_of(job)
    if operation_id is None:
        return
    failure = classify_failure(exc_value)
    if isinstance(exc_value, JobTimeoutException):
        definition = _definition_of(operation_id)
        if definition is not None:
            failure = Failure(time_limit_message(definition, job.timeout or definition.timeout), True, repr(exc_value))
    if not failure.permanent and _rq_will_retry(job):
        running = Operation.objects.filter(id=operation_id, status=OperationStatus.PROCESSING, job_id=job.id).first()
        if running is not None:
            _mark_retrying(running, failure, job)
        return
    if _rq_will_retry(job):
        # Permanent: RQ reads retries_left right after this callback, so it will not run the job again.
        job.retries_left = 0
    message = failure.message if failure.permanent else final_failure(failure).message
    # Only while the operation is still this job's: after the recovery sweep replaced a dead job,
    # RQ's late word on the old one must not fail the new attempt.
    if lifecycle.operation_mark_failed(
        operation_id=operation_id, message=message, metadata={"failure": {"detail": failure.detail}}, job_id=job.id
    ):
        logger.warning("Operation %s failed after RQ gave up on job %s: %s", operation_id, job.id, failure.detail)


def on_work_horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """A forking worker's horse died without reporting (RQ calls no failure callback for this).

    Past its time limit (RQ kills a horse that ignored JobTimeoutException) the operation fails and
    RQ is told not to retry; otherwise it is treated like any retryable failure.
    """
    if job.func_name == webhooks.JOB_FUNCTION:
        return  # a webhook attempt: its lease runs out and the webhook sweep starts the next one
    operation_id = _operation_id_of(job)
    if operation_id is None:
        return
    definition = _definition_of(operation_id)
    if job.started_at and job.timeout and job.timeout > 0 and definition is not None:
        if (rq_now() - job.started_at).total_seconds() >= job.timeout:
            job.retries_left = 0  # RQ reads this right after the handler: no retry of a timed-out job
            lifecycle.operation_mark_failed(
                operation_id=operation_id, message=time_limit_message(definition, job.timeout), job_id=job.id
            )
            return
    on_job_failure(job, None, WorkHorseKilled, WorkHorseKilled(f"work-horse exited with {ret_val}"), None)


def _operation_id_of(job: Job) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(job.args[0]))
    except (IndexError, ValueError, TypeError):
        logger.error("Job %s does not carry an operation id: %r", job.id, job.args)
        return None


def _definition_of(operation_id: uuid.UUID) -> OperationDefinition | None:
    name = Operation.objects.filter(id=operation_id).values_list("operation", flat=True).first()
    return OPERATIONS.get(name) if name is not None else None


# --- webhooks -------------------------------------------------------------------------------------
def deliver_webhook(event_id: str) -> str:
    """One delivery attempt of a webhook event (``services/webhooks.py``); returns what happened.
    Never raises for the receiver's sake: retries are the service's, scheduled on RQ."""
    return webhooks.event_deliver(event_id=uuid.UUID(event_id))
