"""Every status change of an operation, each one guarded.

Each transition is a conditional UPDATE (compare-and-set on the current status, and for a
worker's writes on its ``attempt``), so two workers cannot both win a claim, and a late or
duplicate worker never overwrites a cancel, a delete or a newer attempt. Functions that a worker
calls return ``False`` when their write no longer applies; functions that a user's request calls
raise ``InvalidState`` (409) or ``Expired`` (410).

    pending ──▶ queued ──▶ processing ──▶ completed
       │          │  ▲          │ └──────▶ failed ──┐
       │          │  └─ retry ──┘                   │ user retry ──▶ pending
       └──────────┴──────────┴──▶ cancelled ────────┘

The recovery sweep (``recovery.py``) moves only through the same guarded functions: a queued
operation whose RQ job vanished is queued again (``operation_mark_requeued``), an interrupted
attempt goes back to queued (``operation_requeue_interrupted``) or fails.

Being the one place of every change, each transition also tells the outside: it publishes the new
status object for live streams once it commits (``events``), and a transition to a terminal status
writes the operation's webhook event in its own transaction (``webhooks.event_record``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from apps.core.exceptions import Expired, InvalidState
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import File, Operation
from apps.operations.services import webhooks
from apps.operations.services.events import status_publish_on_commit

S = OperationStatus


def _expiry(now: datetime) -> datetime:
    return now + timedelta(days=settings.FILE_RETENTION_DAYS)


def _live(operation_id: uuid.UUID, *statuses: OperationStatus) -> QuerySet[Operation]:
    return Operation.objects.filter(id=operation_id, is_deleted=False, status__in=statuses)


def _silent_since(rows: QuerySet[Operation], heartbeat_before: datetime) -> QuerySet[Operation]:
    """Rows whose worker has not been heard from since ``heartbeat_before``."""
    return rows.filter(Q(heartbeat_at__lt=heartbeat_before) | Q(heartbeat_at__isnull=True))


# --- queueing -------------------------------------------------------------------------------------
def operation_mark_queued(*, operation_id: uuid.UUID, job_id: str, queued_at: datetime | None = None) -> bool:
    """pending → queued, before the job is put on the queue. Only one caller can win this, so only
    one caller enqueues."""
    queued_at = queued_at or timezone.now()
    return _changed(
        operation_id,
        _live(operation_id, S.PENDING).update(status=S.QUEUED, job_id=job_id, queued_at=queued_at, phase="") == 1,
    )


def operation_mark_pending(*, operation_id: uuid.UUID, job_id: str) -> bool:
    """queued → pending, when putting the job on the queue failed (Redis unreachable)."""
    return _changed(
        operation_id, _live(operation_id, S.QUEUED).filter(job_id=job_id).update(status=S.PENDING, queued_at=None) == 1
    )


def operation_mark_requeued(*, operation_id: uuid.UUID, job_id: str, queued_at: datetime | None) -> bool:
    """queued → queued again, for a queued operation whose RQ job vanished (Redis restarted
    without its data, or flushed). ``queued_at`` as read is the token: of two sweeps that saw the
    same vanished job, only one wins, so only one puts it back on the queue."""
    return (
        _live(operation_id, S.QUEUED).filter(job_id=job_id, queued_at=queued_at).update(queued_at=timezone.now()) == 1
    )


# --- a worker's transitions -----------------------------------------------------------------------
def operation_claim(*, operation_id: uuid.UUID) -> Operation | None:
    """queued → processing for the worker that wins; ``None`` for everyone else.

    The returned operation carries the new ``attempt``: pass it to every later write.
    """
    # The database's clock, for every host alike (apps.operations.services.clock).
    claimed = _live(operation_id, S.QUEUED).update(
        status=S.PROCESSING,
        attempt=F("attempt") + 1,
        started_at=Now(),
        heartbeat_at=Now(),
        progress=0,
        phase=ProcessingPhase.FETCHING,
        error_message="",
    )
    if claimed != 1:
        return None
    _changed(operation_id, True)
    return Operation.objects.get(id=operation_id)


def operation_record_progress(
    *, operation_id: uuid.UUID, attempt: int, progress: int | None = None, phase: ProcessingPhase | None = None
) -> bool:
    """Progress, phase and heartbeat of the current attempt. ``False`` means stop: the operation
    was cancelled, deleted or taken over by another attempt."""
    # Stamped by the database's clock, so that sweeps on other hosts judge it by the same clock.
    changes: dict[str, Any] = {"heartbeat_at": Now()}
    if progress is not None:
        changes["progress"] = max(0, min(100, int(progress)))
    if phase is not None:
        changes["phase"] = phase
    updated = _live(operation_id, S.PROCESSING).filter(attempt=attempt).update(**changes) == 1
    # A heartbeat alone changes nothing a client sees.
    return _changed(operation_id, updated) if progress is not None or phase is not None else updated


def operation_is_current(*, operation_id: uuid.UUID, attempt: int) -> bool:
    """Whether this attempt may still work on the operation: the read-only twin of
    ``operation_record_progress``, so a worker can notice a cancel between progress writes."""
    return _live(operation_id, S.PROCESSING).filter(attempt=attempt).exists()


def operation_mark_completed(
    *, operation_id: uuid.UUID, attempt: int, output: dict[str, Any], metadata: dict[str, Any] | None = None
) -> bool:
    """processing → completed with its output File, in one transaction, for the current attempt only.

    ``output`` holds the File fields (file_path, file_name, file_size, mime_type, metadata, ...).
    """
    now = timezone.now()
    with transaction.atomic():
        operation = _live(operation_id, S.PROCESSING).filter(attempt=attempt).select_for_update().first()
        if operation is None:
            return False
        File.objects.update_or_create(operation=operation, file_type=FileType.OUTPUT, defaults=output)
        operation.status = S.COMPLETED
        operation.progress = 100
        operation.phase = ""
        operation.completed_at = now
        operation.expires_at = _expiry(now)
        operation.error_message = ""
        operation.metadata = {**operation.metadata, **(metadata or {})}
        operation.save(
            update_fields=["status", "progress", "phase", "completed_at", "expires_at", "error_message", "metadata"]
        )
        _terminal(operation)
    return True


def operation_mark_failed(
    *,
    operation_id: uuid.UUID,
    message: str,
    attempt: int | None = None,
    metadata: dict[str, Any] | None = None,
    job_id: str | None = None,
    heartbeat_before: datetime | None = None,
) -> bool:
    """→ failed with a message for the end user.

    With ``attempt`` (a worker's own failure) it applies only to that processing attempt; without
    (retries exhausted) it applies to any operation that is still active. ``job_id`` limits it to
    the operation's current RQ job (RQ giving up on a job the recovery sweep has since replaced
    must not fail the replacement), ``heartbeat_before`` to an attempt not heard from since then.
    """
    now = timezone.now()
    with transaction.atomic():
        rows = _live(operation_id, S.PROCESSING) if attempt is not None else _live(operation_id, *S.active())
        if attempt is not None:
            rows = rows.filter(attempt=attempt)
        if job_id is not None:
            rows = rows.filter(job_id=job_id)
        if heartbeat_before is not None:
            rows = _silent_since(rows, heartbeat_before)
        operation = rows.select_for_update().first()
        if operation is None:
            return False
        operation.status = S.FAILED
        operation.phase = ""
        operation.error_message = message
        operation.completed_at = now
        operation.expires_at = _expiry(now)
        operation.metadata = {**operation.metadata, **(metadata or {})}
        operation.save(update_fields=["status", "phase", "error_message", "completed_at", "expires_at", "metadata"])
        _terminal(operation)
    return True


def operation_mark_retrying(*, operation_id: uuid.UUID, attempt: int, message: str) -> bool:
    """processing → queued after a retryable error, while RQ's scheduler holds the retry."""
    return _changed(
        operation_id,
        _live(operation_id, S.PROCESSING)
        .filter(attempt=attempt)
        .update(status=S.QUEUED, phase="", progress=0, error_message=message, queued_at=timezone.now())
        == 1,
    )


def operation_requeue_interrupted(
    *, operation_id: uuid.UUID, attempt: int, heartbeat_before: datetime, job_id: str, message: str
) -> bool:
    """processing → queued under a new RQ job, for an attempt whose worker is gone (not heard from
    since ``heartbeat_before``). Counts the interruption (see ``operation_interruptions``)."""
    with transaction.atomic():
        rows = _silent_since(_live(operation_id, S.PROCESSING).filter(attempt=attempt), heartbeat_before)
        operation = rows.select_for_update().first()
        if operation is None:
            return False
        count = operation_interruptions(operation) + 1
        operation.status = S.QUEUED
        operation.job_id = job_id
        operation.queued_at = timezone.now()
        operation.phase = ""
        operation.progress = 0
        operation.error_message = message
        operation.metadata = {
            **operation.metadata,
            "interruptions": {"retry_count": operation.retry_count, "count": count},
        }
        operation.save(
            update_fields=["status", "job_id", "queued_at", "phase", "progress", "error_message", "metadata"]
        )
        _changed(operation_id, True)
    return True


def operation_interruptions(operation: Operation) -> int:
    """How many attempts of the operation's current run (since it was created or last retried by
    its user) the recovery sweep found interrupted."""
    recorded = operation.metadata.get("interruptions") or {}
    return recorded.get("count", 0) if recorded.get("retry_count") == operation.retry_count else 0


# --- a user's transitions -------------------------------------------------------------------------
def operation_cancel(*, operation: Operation) -> Operation:
    """pending/queued/processing → cancelled. A processing job notices at its next progress write."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = _live(operation.id, *S.cancellable()).update(
            status=S.CANCELLED, phase="", completed_at=now, expires_at=_expiry(now)
        )
        operation.refresh_from_db()
        if cancelled == 1:
            _terminal(operation)
    if cancelled != 1:
        raise InvalidState(f"This operation is already {operation.status} and cannot be cancelled.")
    return operation


def operation_reset_for_retry(*, operation: Operation) -> Operation:
    """failed/cancelled → pending with the same input, ready to be queued again."""
    if operation.is_deleted or (operation.expires_at is not None and operation.expires_at <= timezone.now()):
        raise Expired("The files of this operation have expired; upload the file again.")
    reset = _live(operation.id, *S.retryable()).update(
        status=S.PENDING,
        retry_count=F("retry_count") + 1,
        progress=0,
        phase="",
        error_message="",
        started_at=None,
        completed_at=None,
        expires_at=None,
        queued_at=None,
        heartbeat_at=None,
    )
    operation.refresh_from_db()
    if reset != 1:
        raise InvalidState(f"Only failed or cancelled operations can be retried; this one is {operation.status}.")
    _changed(operation.id, True)
    return operation


def operation_mark_deleted(*, operation: Operation) -> Operation | None:
    """Soft delete: the row stays for bookkeeping, hidden from its session; active work is cancelled.
    ``None`` when it was already deleted: nothing changes, ``deleted_at`` keeps the first delete's time."""
    now = timezone.now()
    with transaction.atomic():
        locked = Operation.objects.select_for_update().get(id=operation.id)
        if locked.is_deleted:
            return None
        cancelled = locked.status in S.active()
        if cancelled:
            locked.status = S.CANCELLED
            locked.completed_at = now
            locked.phase = ""
        locked.is_deleted = True
        locked.deleted_at = now
        locked.save(update_fields=["status", "completed_at", "phase", "is_deleted", "deleted_at"])
        if cancelled:
            _terminal(locked)
    return locked


# --- telling the outside --------------------------------------------------------------------------
def _changed(operation_id: uuid.UUID, changed: bool) -> bool:
    """Publish the status object of a changed operation once the change commits; returns ``changed``."""
    if changed:
        status_publish_on_commit(operation_id)
    return changed


def _terminal(operation: Operation) -> None:
    """An operation has just reached a terminal status (call inside the transition's transaction)."""
    webhooks.event_record(operation=operation)
    status_publish_on_commit(operation.id)


# --- retention ------------------------------------------------------------------------------------
def operation_mark_files_expired(*, operation_id: uuid.UUID, now: datetime) -> bool:
    """A finished operation past ``expires_at`` whose files retention has just removed: ``deleted_at``
    records when. Unlike a user's delete the row stays visible to its session, so its download and
    retry answer 410 rather than 404. Never applies to active work or to a row already marked."""
    return (
        _live(operation_id, *S.terminal()).filter(expires_at__lte=now, deleted_at__isnull=True).update(deleted_at=now)
        == 1
    )
