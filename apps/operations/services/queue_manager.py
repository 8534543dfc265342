"""Putting operations on their RQ queue.

Each operation goes to the queue its registry entry names, with that queue's timeout and RQ's
Retry (2 retries, after 60 s then 300 s, run by RQ's scheduler). The job id is derived from the
operation id and its retry count, and the pending → queued compare-and-set decides who may
enqueue, so one attempt is never queued twice.
"""

from __future__ import annotations

import logging
import uuid

import django_rq
from django.db import transaction
from redis.exceptions import RedisError
from rq import Callback, Retry

from apps.operations.models import Operation
from apps.operations.services.lifecycle import operation_mark_pending, operation_mark_queued
from apps.processors.registry import get_operation

logger = logging.getLogger(__name__)

JOB_FUNCTION = "apps.processors.rq_workers.process_operation"
FAILURE_CALLBACK = "apps.processors.rq_workers.on_job_failure"
RETRY_INTERVALS = [60, 300]
# Keep RQ's own job records long enough to debug, not forever: the database is the record.
RESULT_TTL = 24 * 60 * 60
FAILURE_TTL = 7 * 24 * 60 * 60


def job_id_for(operation: Operation) -> str:
    return f"operation-{operation.id}-{operation.retry_count}"


def enqueue_operation(*, operation: Operation) -> bool:
    """Queue a pending operation now. ``False`` (and the operation left pending, for the
    recovery sweep) when Redis cannot be reached or another caller already queued it."""
    definition = get_operation(operation.operation)
    job_id = job_id_for(operation)
    if not operation_mark_queued(operation_id=operation.id, job_id=job_id):
        return False
    try:
        django_rq.get_queue(definition.queue).enqueue(
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
    except RedisError as e:
        logger.warning("Could not queue operation %s, leaving it pending: %s", operation.id, e)
        operation_mark_pending(operation_id=operation.id, job_id=job_id)
        return False
    operation.refresh_from_db(fields=["status", "job_id", "queued_at"])
    return True


def enqueue_on_commit(*, operation_id: uuid.UUID) -> None:
    """Queue the operation once the surrounding transaction has committed, so a worker can
    never pick up a job whose row it cannot see yet."""

    def enqueue() -> None:
        operation = Operation.objects.filter(id=operation_id).first()
        if operation is not None:
            enqueue_operation(operation=operation)

    transaction.on_commit(enqueue)
