"""Putting operations on their RQ queue.

Each operation goes to the queue its registry entry names, with that queue's timeout and RQ's
Retry (2 retries, after 60 s then 300 s, run by RQ's scheduler). The job id is derived from the
operation id and its retry count, and the pending → queued compare-and-set decides who may
enqueue, so one attempt is never queued twice.

The recovery sweep queues again through here: a queued operation whose job vanished from Redis
under the same job id, an interrupted one under a new job id (``job_id_for(..., after_attempt=)``)
once its old job is withdrawn, so that RQ's own late handling of the dead job (its abandoned-job
cleanup, a scheduled retry) can never touch the new attempt. A cancelled operation's job is
withdrawn from its queue, so that it no longer counts in anyone's queue position.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Callback, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from apps.core import queues
from apps.operations.enums import OperationStatus as S
from apps.operations.models import Operation
from apps.operations.selectors import OPERATION_JOB_PREFIX
from apps.operations.services.failures import NO_LONGER_OFFERED_MESSAGE
from apps.operations.services.lifecycle import (
    operation_mark_failed,
    operation_mark_pending,
    operation_mark_queued,
    operation_mark_requeued,
    operation_requeue_interrupted,
)
from apps.processors.registry import OPERATIONS, OperationDefinition, get_operation

logger = logging.getLogger(__name__)

JOB_FUNCTION = "apps.operations.jobs.process_operation"
FAILURE_CALLBACK = "apps.operations.jobs.on_job_failure"
RETRY_INTERVALS = [60, 300]
# Keep RQ's own job records long enough to debug, not forever: the database is the record.
RESULT_TTL = 24 * 60 * 60
FAILURE_TTL = 7 * 24 * 60 * 60
# RQ statuses of a job that nothing will run any more, and of one that waits for a worker.
_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
_WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_id_for(operation: Operation, *, after_attempt: int | None = None) -> str:
    """``operation-<id>-<retry count>``; the job that takes over from an interrupted attempt adds
    ``-after-<attempt>``."""
    job_id = f"{OPERATION_JOB_PREFIX}{operation.id}-{operation.retry_count}"
    return job_id if after_attempt is None else f"{job_id}-after-{after_attempt}"


def enqueue_operation(*, operation: Operation) -> bool:
    """Queue a pending operation now. ``False`` (and the operation left pending, for the
    recovery sweep) when Redis cannot be reached or another caller already queued it. An
    operation no longer offered (removed in an upgrade) has no queue: it fails instead."""
    definition = OPERATIONS.get(operation.operation)
    if definition is None:
        operation_mark_failed(operation_id=operation.id, message=NO_LONGER_OFFERED_MESSAGE)
        return False
    job_id = job_id_for(operation)
    queued_at = timezone.now()
    if not operation_mark_queued(operation_id=operation.id, job_id=job_id, queued_at=queued_at):
        return False
    try:
        _put_on_queue(operation, definition, job_id)
    except RedisError as e:
        logger.warning("Could not queue operation %s, leaving it pending: %s", operation.id, e)
        operation_mark_pending(operation_id=operation.id, job_id=job_id)
        return False
    # What the compare-and-set wrote, without reading the row back.
    operation.status, operation.job_id, operation.queued_at, operation.phase = S.QUEUED, job_id, queued_at, ""
    return True


def requeue_operation(*, operation: Operation) -> bool:
    """Put a queued operation whose RQ job vanished back on its queue, under the same job id.

    ``False`` when another caller did it first or Redis failed (the operation stays queued, and
    the next sweep finds its job still missing).
    """
    definition = get_operation(operation.operation)
    if not operation_mark_requeued(operation_id=operation.id, job_id=operation.job_id, queued_at=operation.queued_at):
        return False
    try:
        # Whatever is left of the job (ended, or stranded in a registry) goes, so that RQ holds
        # one record under this id.
        old = _fetch_job(operation.job_id, definition.queue)
        if old is not None:
            old.delete()
        _put_on_queue(operation, definition, operation.job_id)
    except RedisError as e:
        logger.warning("Could not queue operation %s again: %s", operation.id, e)
        return False
    logger.info("Queued operation %s again: its job %s had vanished", operation.id, operation.job_id)
    return True


def requeue_interrupted(*, operation: Operation, heartbeat_before: datetime, message: str) -> bool:
    """Queue a processing operation whose worker is gone (nothing heard since ``heartbeat_before``)
    under a new job, and withdraw its old job. ``False`` when another caller took it over first or
    the attempt spoke meanwhile. A Redis failure after the row moved leaves it queued without a
    job: the next sweep finds the job missing and queues it again."""
    definition = get_operation(operation.operation)
    old_job_id = operation.job_id
    job_id = job_id_for(operation, after_attempt=operation.attempt)
    if not operation_requeue_interrupted(
        operation_id=operation.id,
        attempt=operation.attempt,
        heartbeat_before=heartbeat_before,
        job_id=job_id,
        message=message,
    ):
        return False
    try:
        job_withdraw(job_id=old_job_id, queue_name=definition.queue)
        _put_on_queue(operation, definition, job_id)
    except RedisError as e:
        logger.warning("Could not queue interrupted operation %s again: %s", operation.id, e)
        return False
    logger.warning("Operation %s lost its worker (job %s); queued again as %s", operation.id, old_job_id, job_id)
    return True


def job_withdraw(*, job_id: str, queue_name: str, waiting_only: bool = False) -> None:
    """Take a job out of RQ's hands with RQ's ``Job.cancel``: off its queue, out of the scheduled
    and started registries (into the cancelled one, as a record), so that RQ neither runs it nor
    later reports it abandoned. ``waiting_only`` leaves a started job alone. A job that ended or is
    unknown is left as it is."""
    job = _fetch_job(job_id, queue_name) if job_id else None
    if job is None:
        return
    status = job.get_status(refresh=False)
    if status in _ENDED or (waiting_only and status not in _WAITING):
        return
    if status == JobStatus.STARTED:
        _forget_executions(job)
    try:
        job.cancel()
    except InvalidJobOperation:
        return  # cancelled meanwhile


def dequeue_operation(*, operation: Operation) -> None:
    """Withdraw a cancelled or deleted operation's waiting job, so that it no longer counts in
    queue positions. Best effort: when Redis cannot be reached, the worker that takes the job
    skips it (its claim needs ``queued``); a running job stops at its next progress check."""
    definition = OPERATIONS.get(operation.operation)
    if definition is None:
        return
    try:
        job_withdraw(job_id=operation.job_id, queue_name=definition.queue, waiting_only=True)
    except RedisError as e:
        logger.warning("Could not withdraw the job of operation %s: %s", operation.id, e)


def _forget_executions(job: Job) -> None:
    """Drop a dead worker's executions of ``job`` from RQ's registries. RQ's own removal reads each
    execution's record, which expires before its registry entries do, and then fails."""
    started = StartedJobRegistry(job.origin, connection=job.connection)
    entries = [
        f"{job_id}:{execution_id}"
        for job_id, execution_id in started.get_job_and_execution_ids(cleanup=False)
        if job_id == job.id
    ]
    with job.connection.pipeline() as pipeline:
        if entries:
            pipeline.zrem(started.key, *entries)
        pipeline.delete(job.execution_registry.key)
        pipeline.execute()


def _fetch_job(job_id: str, queue_name: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=queues.get_connection(queue_name))
    except NoSuchJobError:
        return None


def _put_on_queue(operation: Operation, definition: OperationDefinition, job_id: str) -> None:
    queues.get_queue(definition.queue).enqueue(
        JOB_FUNCTION,
        str(operation.id),
        job_id=job_id,
        job_timeout=definition.timeout,
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        on_failure=Callback(FAILURE_CALLBACK),
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        description=f"{operation.operation} {operation.id}",
    )


def enqueue_on_commit(*, operation_id: uuid.UUID) -> None:
    """Queue the operation once the surrounding transaction has committed, so a worker can
    never pick up a job whose row it cannot see yet."""

    def enqueue() -> None:
        operation = Operation.objects.filter(id=operation_id).first()
        if operation is not None:
            enqueue_operation(operation=operation)

    transaction.on_commit(enqueue)
