"""Reads of operations and queues, shared by the API's views.

Every read of operations is scoped to one session and hides deleted rows: an operation of
another session is exactly as invisible as one that never existed (404, never 403).
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections, router
from django.db.models import Count, QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from apps.core.async_database import async_reads_available, fetch_one
from apps.core.exceptions import NotFound, ServiceUnavailable
from apps.core.queues import get_async_connection, get_connection, get_queue
from apps.operations.enums import OperationStatus
from apps.operations.models import Operation, WebhookAttempt
from apps.processors.registry import OPERATIONS

logger = logging.getLogger(__name__)

S = OperationStatus
NOT_FOUND_MESSAGE = "No operation with this id exists in your session."
STATUS_FIELDS = (
    "id",
    "operation",
    "status",
    "progress",
    "error_message",
    "phase",
    "started_at",
    "heartbeat_at",
    "job_id",
    "session_key",
    "is_deleted",
)


def operation_list(*, session_key: str, status: str | None = None, operation: str | None = None) -> QuerySet[Operation]:
    """A session's operations, newest first, with their files."""
    operations = Operation.objects.filter(session_key=session_key, is_deleted=False)
    if status:
        operations = operations.filter(status=status)
    if operation:
        operations = operations.filter(operation=operation)
    return operations.prefetch_related("files").order_by("-created_at", "-id")


def operation_get(*, session_key: str, operation_id: str | uuid.UUID) -> Operation:
    """One of the session's operations, or ``NotFound`` (also for another session's ids)."""
    operation = operation_list(session_key=session_key).filter(id=_parse_id(operation_id)).first()
    if operation is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    return operation


def operation_by_idempotency_key(*, session_key: str, idempotency_key: str, within_hours: int) -> Operation | None:
    """The operation this session created with this Idempotency-Key within the window, if any."""
    since = timezone.now() - timedelta(hours=within_hours)
    return (
        Operation.objects.filter(
            session_key=session_key, idempotency_key=idempotency_key, is_deleted=False, created_at__gte=since
        )
        .prefetch_related("files")
        .first()
    )


def operation_eta_seconds(operation: Operation, *, now: datetime | None = None) -> int | None:
    """elapsed × (100 − progress) / progress while processing; ``None`` otherwise, and ``None``
    while the worker has gone silent (its progress is frozen: an estimate would only climb).
    ``now`` is the database's clock when the caller read it (the clock that stamped started_at)."""
    if operation.status != S.PROCESSING or not operation.started_at or operation.progress <= 0:
        return None
    now = now or timezone.now()
    if operation_silent_seconds(operation, now=now) is not None:
        return None
    elapsed = (now - operation.started_at).total_seconds()
    return max(0, round(elapsed * (100 - operation.progress) / operation.progress))


def operation_silent_seconds(operation: Operation, *, now: datetime) -> int | None:
    """How long a processing operation's worker has not been heard from, once that is longer than
    ``RECOVERY_STALE_SECONDS`` (it beats every JOB_HEARTBEAT_SECONDS whatever it is doing); else
    ``None``. The recovery sweep moves such an attempt to another worker."""
    if operation.status != S.PROCESSING or operation.heartbeat_at is None:
        return None
    silent = (now - operation.heartbeat_at).total_seconds()
    return round(silent) if silent > settings.RECOVERY_STALE_SECONDS else None


# --- status ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperationStatusInfo:
    id: uuid.UUID
    status: str
    progress: int
    eta_seconds: int | None
    error_message: str | None
    phase: str | None
    queue_position: int | None
    waiting_reason: str | None


def operation_status(*, session_key: str, operation_id: str | uuid.UUID) -> OperationStatusInfo:
    """The small status object clients poll: one database query, and for a queued operation its
    place in the queue and whether any worker is listening, read from Redis."""
    query = _status_query()
    db_id = Operation._meta.pk.get_db_prep_value(_parse_id(operation_id), connections[query.using])
    operation = next(iter(Operation.objects.raw(query.sql, [db_id, session_key], using=query.using)), None)
    if operation is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    operation.database_now = query.database_now(operation.database_now)  # type: ignore[attr-defined]
    return operation_status_of(operation)


def operation_status_readable_in_loop() -> bool:
    """Whether ``operation_status_async`` can serve this deployment (PostgreSQL, and connections
    set aside for it: WEB_STATUS_DB_CONNECTIONS)."""
    return settings.WEB_STATUS_DB_CONNECTIONS > 0 and async_reads_available(router.db_for_read(Operation))


async def operation_status_async(*, session_key: str, operation_id: str | uuid.UUID) -> OperationStatusInfo:
    """``operation_status`` read from the event loop, without a thread: the same compiled query on
    the loop's own connections, the same Redis script on its own client, the same judgement.
    Only where ``operation_status_readable_in_loop()``."""
    parsed_id = _parse_id(operation_id)
    query = _status_query() if _status_query.cache_info().currsize else await sync_to_async(_status_query)()
    db_id = Operation._meta.pk.get_db_prep_value(parsed_id, connections[query.using])
    found = await fetch_one(query.using, query.sql, [db_id, session_key])
    if found is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    operation = _operation_from_row(query.using, *found)
    call = _queue_script_call(operation)
    if call is None:
        return operation_status_of(operation)
    queue_name, keys, args = call
    try:
        script = get_async_connection(queue_name).register_script(_POSITION_AND_WORKERS)
        index, workers = await script(keys=keys, args=args)
    except RedisError as e:
        return operation_status_of(operation, queue=_queue_unreachable(operation, e))
    return operation_status_of(operation, queue=QueueReading(index=index, workers=workers))


def _operation_from_row(using: str, columns: list[str], row: tuple[Any, ...]) -> Operation:
    """The model built from a row of the status query, as ``raw()`` builds it (``from_db``), with
    the database's clock beside it."""
    values = dict(zip(columns, row, strict=True))
    attnames = {field.column: field.attname for field in Operation._meta.concrete_fields}
    fields = [attnames[column] for column in columns if column in attnames]
    operation = Operation.from_db(using, fields, [values[column] for column in columns if column in attnames])
    operation.database_now = values["database_now"]  # type: ignore[attr-defined]
    return operation


@dataclass(frozen=True)
class _CompiledQuery:
    sql: str
    using: str

    def database_now(self, value: Any) -> datetime:
        """The annotated clock as the ORM would return it: raw() converts the model's fields only
        (SQLite gives a timestamp as text), so the expression's converters are applied here, as
        the ORM's compiler applies them."""
        connection = connections[self.using]
        expression = Now()
        for converter in [*connection.ops.get_db_converters(expression), *expression.get_db_converters(connection)]:
            value = converter(value, expression, connection)
        return value


@functools.cache
def _status_query() -> _CompiledQuery:
    """The status poll's query, written by the ORM once per process and run with each poll's id
    and key through ``raw()`` (which still builds the model, with the fields' converters).

    Every poll runs the same query; compiling it again each time (cloning the queryset, resolving
    the lookups, quoting every column) took more CPU than running it: about 0.95 ms against
    0.4 ms a poll in process. The SQL stays the ORM's: a probe id and key are compiled in, and the
    placeholders are checked to be exactly those two, in that order."""
    using = router.db_for_read(Operation)
    probe_id, probe_key = uuid.UUID(int=0), "status-query-probe"
    queryset = (
        Operation.objects.using(using)
        .filter(id=probe_id)
        .filter(session_key=probe_key)
        .filter(is_deleted=False)
        .only(*STATUS_FIELDS)
        # The database's clock, in the same query: heartbeats and started_at are stamped by it.
        .annotate(database_now=Now())
        # A primary-key lookup: one row at most, nothing to order.
        .order_by()
    )
    sql, params = queryset.query.get_compiler(using=using).as_sql()
    expected = (Operation._meta.pk.get_db_prep_value(probe_id, connections[using]), probe_key)
    if tuple(params) != expected:
        raise RuntimeError(f"The status query's parameters are {params!r}, not the id and the key.")
    return _CompiledQuery(sql=sql, using=using)


def operation_status_of(operation: Operation, *, queue: QueueReading | None = None) -> OperationStatusInfo:
    """The status object of an operation already loaded (with at least ``STATUS_FIELDS``), judged
    on the database's clock when the query read it (``database_now``), else on this host's.
    ``queue``: what the caller already read of the operation's queue (else it is read here)."""
    now: datetime = getattr(operation, "database_now", None) or timezone.now()
    position, reason = _waiting(operation, queue)
    silent = operation_silent_seconds(operation, now=now)
    if silent is not None:
        reason = (
            f"The worker processing this file has not been heard from for {silent} seconds; "
            "it will be tried again on another worker if it does not come back."
        )
    return OperationStatusInfo(
        id=operation.id,
        status=operation.status,
        progress=operation.progress,
        eta_seconds=operation_eta_seconds(operation, now=now),
        error_message=operation.error_message or None,
        phase=(operation.phase or None) if operation.status == S.PROCESSING else None,
        queue_position=position,
        waiting_reason=reason,
    )


# The queue position of a job and how many workers listening on its queue are alive, in one round
# trip: the job's index on the queue's list (LPOS; RQ pushes on the right and workers pop on the
# left) and the members of RQ's set of the queue's workers whose own key still exists (a killed
# worker stays in the set until RQ cleans it up, its key expires with its heartbeat). Done with
# RQ's and redis-py's calls this is LPOS, SMEMBERS and a pipeline of EXISTS: three round trips on
# every poll. The keys are RQ's own (rq.worker_registration.WORKERS_BY_QUEUE_KEY).
_POSITION_AND_WORKERS = """
local position = false
if ARGV[1] ~= '' then position = redis.call('LPOS', KEYS[1], ARGV[1]) end
local live = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    live = live + redis.call('EXISTS', key)
end
return {position, live}
"""


@dataclass(frozen=True)
class QueueReading:
    """What the status reads of a queued operation's queue: the job's index on it (None when it is
    not on it) and the live workers listening, or why the queue could not be read."""

    index: int | None = None
    workers: int = 0
    unreachable: str | None = None


def _queue_script_call(operation: Operation) -> tuple[str, list[str], list[str]] | None:
    """(queue, the script's keys, its arguments) when the status needs the queue read, else None."""
    if operation.status != S.QUEUED:
        return None
    definition = OPERATIONS.get(operation.operation)
    if definition is None:
        return None
    return definition.queue, _queue_keys(definition.queue), [operation.job_id or ""]


@functools.cache
def _queue_keys(name: str) -> list[str]:
    """The script's keys for queue ``name``: its list and RQ's set of its workers (fixed by the name;
    building the queue to ask took a tenth of a poll's time)."""
    queue = get_queue(name)
    return [queue.key, WORKERS_BY_QUEUE_KEY % queue.name]


def _read_queue(operation: Operation, queue_name: str, keys: list[str], args: list[str]) -> QueueReading:
    try:
        script = get_connection(queue_name).register_script(_POSITION_AND_WORKERS)
        index, workers = script(keys=keys, args=args)
    except RedisError as e:
        return _queue_unreachable(operation, e)
    return QueueReading(index=index, workers=workers)


def _queue_unreachable(operation: Operation, error: RedisError) -> QueueReading:
    logger.warning("Could not read the position of operation %s: %s", operation.id, error)
    return QueueReading(
        unreachable="The job queue cannot be reached right now; the operation will run once it is back."
    )


def _waiting(operation: Operation, queue: QueueReading | None) -> tuple[int | None, str | None]:
    """(queue position, 1 = next; why the operation is not running) for a waiting operation."""
    if operation.status == S.PENDING:
        return None, "The job queue could not be reached; the operation will be queued automatically."
    if queue is None:
        call = _queue_script_call(operation)
        if call is None:
            return None, None
        queue = _read_queue(operation, *call)
    if queue.unreachable:
        return None, queue.unreachable
    position = queue.index + 1 if queue.index is not None else None
    if queue.workers == 0:
        definition = OPERATIONS[operation.operation]
        group = definition.worker_group or definition.media_type
        return position, f"No {group} worker is running; the operation will start when one is."
    if position is None and operation.error_message:
        # Not on the queue but queued: RQ's scheduler holds it until its retry is due.
        return None, "Waiting to try again after a temporary error."
    return position, None


def live_worker_count(queue: Queue) -> int:
    """Workers listening on ``queue``. RQ's registry can still name a worker that was killed;
    its own key expires with its heartbeat, so only workers whose key exists are counted."""
    connection: Redis = queue.connection
    keys = sorted(Worker.all_keys(queue=queue))
    if not keys:
        return 0
    with connection.pipeline(transaction=False) as pipeline:
        for key in keys:
            pipeline.exists(key)
        return sum(1 for exists in pipeline.execute() if exists)


# --- summaries ------------------------------------------------------------------------------------
def session_summary(*, session_key: str) -> dict[str, Any]:
    """The session's key and how many of its operations are in each status."""
    counts = dict.fromkeys(S.values, 0)
    rows = (
        Operation.objects.filter(session_key=session_key, is_deleted=False)
        .order_by()
        .values_list("status")
        .annotate(count=Count("id"))
    )
    for status, count in rows:
        counts[status] = count
    return {"session_key": session_key, "operations_total": sum(counts.values()), "operations_by_status": counts}


# Every job of an operation has an id starting so (``queue_manager.job_id_for``); the periodic
# cleanup and recovery passes (``config/cron.py``) run on the same queues under RQ's own ids.
OPERATION_JOB_PREFIX = "operation-"


def queue_statistics() -> dict[str, dict[str, int]]:
    """Per queue: jobs waiting, running, finished, failed, scheduled (retries), deferred, and
    the workers listening. ``finished`` counts operations' jobs only, not the periodic passes
    that also run there. ``ServiceUnavailable`` when Redis cannot be reached."""
    statistics: dict[str, dict[str, int]] = {}
    try:
        for worker in settings.WORKER_CONFIG.values():
            queue = get_queue(worker["queue"])
            statistics[queue.name] = {
                "queued": queue.count,
                "started": StartedJobRegistry(queue=queue).count,
                "finished": _operation_jobs(FinishedJobRegistry(queue=queue)),
                "failed": FailedJobRegistry(queue=queue).count,
                "scheduled": ScheduledJobRegistry(queue=queue).count,
                "deferred": DeferredJobRegistry(queue=queue).count,
                "workers": live_worker_count(queue),
            }
    except RedisError as e:
        logger.warning("Queue statistics unavailable: %s", e)
        raise ServiceUnavailable("The job queue cannot be reached right now; please try again shortly.") from e
    return statistics


def _operation_jobs(registry: FinishedJobRegistry) -> int:
    return sum(1 for job_id in registry.get_job_ids() if job_id.startswith(OPERATION_JOB_PREFIX))


def _parse_id(operation_id: str | uuid.UUID) -> uuid.UUID:
    try:
        return uuid.UUID(str(operation_id))
    except ValueError as e:
        raise NotFound(NOT_FOUND_MESSAGE) from e


# --- webhooks -------------------------------------------------------------------------------------
def webhook_attempts(*, operation: Operation) -> QuerySet[WebhookAttempt]:
    """The delivery log of an operation's webhook events, newest first."""
    return (
        WebhookAttempt.objects.filter(event__operation=operation)
        .select_related("event")
        .order_by("-attempted_at", "-attempt", "-id")
    )
