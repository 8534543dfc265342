"""Fairness between sessions: how much work one session may have waiting or running, and how many
bytes it may keep stored.

- At most ``MAX_ACTIVE_PER_SESSION`` operations of a session are pending, queued or processing:
  one session cannot queue hours of work ahead of everyone else. More is a 429 ``throttled``.
- The bytes stored by a session's operations (inputs and results not yet deleted or expired), plus
  the declared length of each of its resumable uploads not yet used or expired, stay under
  ``SESSION_STORAGE_QUOTA``. More is a 413 ``quota_exceeded`` with ``details.quota`` and
  ``details.used``. An upload counts for its whole ``Upload-Length`` from the moment it is created,
  not for the bytes received so far: otherwise a session could start any number of uploads while
  it has room, then fill them all, and the quota could only be enforced by refusing PATCHes
  halfway through an upload the server had accepted.

Counting and then inserting is a race (two creates both see one free slot), so the final check is
made under a per-session lock held until the new row commits: ``session_lock`` inside the
transaction that records the operation.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from apps.core.exceptions import QuotaExceeded, Throttled
from apps.core.utils import human_size
from apps.operations.enums import OperationStatus
from apps.operations.models import File, Operation, Upload

# What a client refused for having too much work running is told to wait: jobs take seconds to
# minutes, so polling again sooner helps nobody.
ACTIVE_RETRY_AFTER_SECONDS = 30


def session_lock(*, session_key: str) -> None:
    """Serialise this session's capacity checks until the current transaction ends.

    PostgreSQL: a transaction-level advisory lock on the session (no row needs to exist to be
    locked). SQLite: nothing to do, its write transactions (``BEGIN IMMEDIATE``) already run one
    at a time.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"konvrt-session:{session_key}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])


def session_active_count(*, session_key: str) -> int:
    return Operation.objects.filter(
        session_key=session_key, is_deleted=False, status__in=OperationStatus.active()
    ).count()


def session_stored_bytes(*, session_key: str) -> int:
    """Bytes the session's operations keep in storage: inputs and results of operations neither
    deleted nor expired (retention marks those it emptied with ``deleted_at``)."""
    total = File.objects.filter(
        operation__session_key=session_key, operation__is_deleted=False, operation__deleted_at__isnull=True
    ).aggregate(total=Sum("file_size"))["total"]
    return int(total or 0)


def session_reserved_upload_bytes(*, session_key: str) -> int:
    """The declared lengths of the session's resumable uploads that are neither used nor expired
    (finished or not): what they hold, or will once their bytes have arrived."""
    total = Upload.objects.filter(session_key=session_key, expires_at__gt=timezone.now()).aggregate(
        total=Sum("length")
    )["total"]
    return int(total or 0)


def session_used_bytes(*, session_key: str) -> int:
    """What counts against the quota: stored files and the uploads' reservations."""
    return session_stored_bytes(session_key=session_key) + session_reserved_upload_bytes(session_key=session_key)


def session_check_active(*, session_key: str) -> None:
    """``Throttled`` when the session already has ``MAX_ACTIVE_PER_SESSION`` operations waiting or
    running."""
    limit = settings.MAX_ACTIVE_PER_SESSION
    active = session_active_count(session_key=session_key)
    if active >= limit:
        raise Throttled(
            f"You already have {active} {'operation' if active == 1 else 'operations'} waiting or running, "
            "the most one session may have at once. "
            "Start another when one of them has finished.",
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
            details={"active": active, "limit": limit},
        )


def session_check_storage(*, session_key: str, incoming: int) -> None:
    """``QuotaExceeded`` when storing ``incoming`` more bytes would take the session over its quota."""
    quota = settings.SESSION_STORAGE_QUOTA
    used = session_used_bytes(session_key=session_key)
    if used + incoming > quota:
        raise QuotaExceeded(
            f"Your files would take more than the {human_size(quota)} one session may store "
            f"({human_size(used)} stored or reserved by resumable uploads, this upload is {human_size(incoming)}). "
            "Delete operations you no longer need (or abandon unfinished uploads), then upload again.",
            details={"quota": quota, "used": used},
        )


def session_check_capacity(*, session_key: str, incoming: int) -> None:
    """Both checks, for a new upload of ``incoming`` bytes."""
    session_check_active(session_key=session_key)
    session_check_storage(session_key=session_key, incoming=incoming)
