"""The recovery sweep: every accepted upload reaches a terminal state.

Every worker machine's sweeper (``sweeper.Sweeper``, ``manage.py konvrt_sweeper``) runs
``recovery_run`` every ``RECOVERY_INTERVAL_SECONDS`` (30), in its own process so that no idle worker
of a cut-off machine can swallow it; RQ cron also enqueues it on an image worker
(``config/cron.py``). One pass:

1. **Interrupted work.** A ``processing`` operation whose worker is gone (SIGKILLed, its machine
   lost, stopped cold, or its job's own failure handling could not reach the database) is queued
   again under a new RQ job, until ``RECOVERY_MAX_ATTEMPTS`` (3) of its attempts have been
   interrupted; then it fails with "Processing was interrupted too many times; please try again."
2. **Vanished jobs.** A ``queued`` operation whose RQ job no longer exists or can no longer run
   (Redis restarted without its data or was flushed; the job was lost between the row and the
   queue) is put back on its queue under the same job id.
3. **Pending operations.** Stored while Redis was unreachable (see ``queue_manager``), they are
   queued now: this pass runs on RQ, so Redis answers again.

Staleness is judged on the database's clock, the one that stamps the heartbeats
(``apps.operations.services.clock``): the hosts' own clocks may disagree.

How a gone worker is told from a slow one: a running job is heard from in two places, each
refreshed every ``JOB_HEARTBEAT_SECONDS`` (10). The operation's ``heartbeat_at`` is written by a
thread of the job itself, whatever the job is doing (``progress.Heartbeat``); the RQ
execution's ``last_heartbeat`` by the worker's parent process, which watches the work-horse
(``KonvrtWorker``'s job monitoring interval). An attempt is taken for interrupted only when both are
older than ``RECOVERY_STALE_SECONDS`` (45). So a worker that cannot reach the database for a while
(its parent still beats in Redis), or one whose Redis data was flushed (its job still beats in
the database), is left to finish.

The bound: an interrupted attempt is queued again at most ``RECOVERY_STALE_SECONDS`` +
``RECOVERY_INTERVAL_SECONDS`` (75 s by default) after its worker died or was cut off. RQ alone
notices a dead worker only at its next registry maintenance, up to about 11 minutes later.

Every change is one of ``lifecycle``'s compare-and-set transitions, so a pass is idempotent, two
passes at once (two cron schedulers) act on each row at most once between them, and a worker
that turns out to be alive after all can no longer write over the attempt that replaced it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from apps.core import queues
from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.operations.services.clock import database_now
from apps.operations.services.failures import NO_LONGER_OFFERED_MESSAGE
from apps.operations.services.queue_manager import (
    enqueue_operation,
    job_withdraw,
    requeue_interrupted,
    requeue_operation,
)
from apps.processors.registry import OPERATIONS

logger = logging.getLogger(__name__)

S = OperationStatus
DEFAULT_LIMIT = 500
# Between marking an operation queued and RQ holding its job there is a moment (and RQ's retry
# callback runs before RQ schedules the retry): a job younger than this is never called missing.
QUEUED_GRACE = timedelta(seconds=10)
INTERRUPTED_MESSAGE = "The worker processing this file stopped unexpectedly; it is being tried again."
TOO_MANY_INTERRUPTIONS_MESSAGE = "Processing was interrupted too many times; please try again."


@dataclass
class RecoveryReport:
    interrupted_requeued: int = 0
    interrupted_failed: int = 0
    vanished_requeued: int = 0
    pending_queued: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def recovery_run(*, now: datetime | None = None, limit: int = DEFAULT_LIMIT) -> RecoveryReport:
    """One recovery pass; see the module docstring. Returns what it did.

    ``limit`` bounds the rows looked at per step, oldest first; a row that was acted on leaves its
    step's selection, so a larger backlog is worked through over the following passes.
    """
    now = now or database_now()
    heartbeat_before = now - timedelta(seconds=settings.RECOVERY_STALE_SECONDS)
    report = RecoveryReport()
    _recover_interrupted(heartbeat_before=heartbeat_before, limit=limit, report=report)
    _requeue_vanished(queued_before=now - QUEUED_GRACE, heartbeat_before=heartbeat_before, limit=limit, report=report)
    _queue_pending(limit=limit, report=report)
    if any(report.as_dict().values()):
        logger.warning("Recovery: %s", report.as_dict())
    return report


# --- 1. interrupted work --------------------------------------------------------------------------
def _recover_interrupted(*, heartbeat_before: datetime, limit: int, report: RecoveryReport) -> None:
    silent = Operation.objects.filter(status=S.PROCESSING, is_deleted=False).filter(
        Q(heartbeat_at__lt=heartbeat_before) | Q(heartbeat_at__isnull=True)
    )
    for operation in silent.order_by("heartbeat_at")[:limit]:
        definition = OPERATIONS.get(operation.operation)
        queue_name = definition.queue if definition is not None else _any_queue_name()
        if job_in_live_hands(job_id=operation.job_id, queue_name=queue_name, heartbeat_before=heartbeat_before):
            continue  # its worker still watches it (and perhaps cannot reach the database)
        interrupted = lifecycle.operation_interruptions(operation) + 1
        if definition is not None and interrupted < settings.RECOVERY_MAX_ATTEMPTS:
            if requeue_interrupted(operation=operation, heartbeat_before=heartbeat_before, message=INTERRUPTED_MESSAGE):
                report.interrupted_requeued += 1
            continue
        message = TOO_MANY_INTERRUPTIONS_MESSAGE if definition is not None else NO_LONGER_OFFERED_MESSAGE
        if lifecycle.operation_mark_failed(
            operation_id=operation.id,
            attempt=operation.attempt,
            heartbeat_before=heartbeat_before,
            message=message,
            metadata={"failure": {"detail": f"attempt {operation.attempt} interrupted ({interrupted} in this run)"}},
        ):
            logger.warning("Operation %s failed: attempt %s interrupted", operation.id, operation.attempt)
            job_withdraw(job_id=operation.job_id, queue_name=queue_name)
            report.interrupted_failed += 1


def job_in_live_hands(*, job_id: str, queue_name: str, heartbeat_before: datetime) -> bool:
    """Whether a worker that beat after ``heartbeat_before`` is executing ``job_id``, by RQ's
    execution records (a record whose own TTL ran out belongs to a dead worker)."""
    if not job_id:
        return False
    connection = queues.get_connection(queue_name)
    for execution_id in ExecutionRegistry(job_id, connection=connection).get_execution_ids():
        try:
            execution = Execution.fetch(id=execution_id, job_id=job_id, connection=connection)
        except ValueError:
            continue
        if execution.last_heartbeat >= heartbeat_before:
            return True
    return False


# --- 2. vanished jobs -----------------------------------------------------------------------------
def _requeue_vanished(
    *, queued_before: datetime, heartbeat_before: datetime, limit: int, report: RecoveryReport
) -> None:
    waiting = Operation.objects.filter(status=S.QUEUED, is_deleted=False).filter(
        Q(queued_at__lt=queued_before) | Q(queued_at__isnull=True)
    )
    for operation in waiting.order_by("queued_at")[:limit]:
        definition = OPERATIONS.get(operation.operation)
        if definition is None:
            lifecycle.operation_mark_failed(operation_id=operation.id, message=NO_LONGER_OFFERED_MESSAGE)
            continue
        if job_will_run(job_id=operation.job_id, queue_name=definition.queue, heartbeat_before=heartbeat_before):
            continue
        if requeue_operation(operation=operation):
            report.vanished_requeued += 1


def job_will_run(*, job_id: str, queue_name: str, heartbeat_before: datetime) -> bool:
    """Whether RQ still holds ``job_id`` in a way that leads to it running: on its queue, scheduled
    (a retry's delay), deferred, or being executed by a live worker."""
    if not job_id:
        return False
    connection = queues.get_connection(queue_name)
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.QUEUED:
        # A job hash can outlive its place in the list (a Redis restored from an older snapshot).
        return connection.lpos(Queue(queue_name, connection=connection).key, job_id) is not None
    if status == JobStatus.SCHEDULED:
        return connection.zscore(ScheduledJobRegistry(queue_name, connection=connection).key, job_id) is not None
    if status == JobStatus.DEFERRED:
        return True
    if status == JobStatus.STARTED:
        return job_in_live_hands(job_id=job_id, queue_name=queue_name, heartbeat_before=heartbeat_before)
    return False


# --- 3. pending operations ------------------------------------------------------------------------
def _queue_pending(*, limit: int, report: RecoveryReport) -> None:
    pending = Operation.objects.filter(status=S.PENDING, is_deleted=False).order_by("created_at")[:limit]
    for operation in pending:
        if enqueue_operation(operation=operation):
            report.pending_queued += 1


def _any_queue_name() -> str:
    # Every queue lives on the same Redis: any of them reaches an unknown operation's job.
    return next(iter(settings.RQ_QUEUES))
