"""What a user can do with an operation: create, retry, cancel, delete, download.

Status changes go through ``lifecycle`` (guarded compare-and-set) and queueing through
``queue_manager`` (after the transaction commits). Nothing is lost and nothing is orphaned: an
accepted upload is stored before its row exists and removed again if the row cannot be written;
a created operation whose job cannot be queued stays ``pending`` for the recovery sweep.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.exceptions import Expired, IdempotencyKeyMismatch, InvalidState, StorageError
from apps.core.utils import sanitize_filename
from apps.operations import selectors
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle, quotas
from apps.operations.services.queue_manager import dequeue_operation, enqueue_on_commit
from apps.processors.formats import MediaType
from apps.processors.input_checks import check_upload
from apps.processors.registry import OPERATIONS, OperationDefinition
from apps.processors.sniffing import inspect_upload
from apps.storage.backend import INPUT, DownloadTarget, StorageBackend, StoredObject, get_storage, object_key

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW_HOURS = 24
# Where an operation created with an Idempotency-Key keeps the fingerprint of its request.
FINGERPRINT_KEY = "request_fingerprint"


@dataclass(frozen=True)
class OperationCreateResult:
    operation: Operation
    # False when an Idempotency-Key matched an operation created earlier.
    created: bool


@dataclass(frozen=True)
class OperationDownload:
    target: DownloadTarget
    file_name: str
    mime_type: str


# --- create ---------------------------------------------------------------------------------------
def operation_create(
    *,
    session_key: str,
    definition: OperationDefinition,
    parameters: dict[str, Any],
    upload: UploadedFile,
    idempotency_key: str | None = None,
    webhook_url: str = "",
    public_base_url: str = "",
) -> OperationCreateResult:
    """Check the upload's content, store it, record the operation and its input, and queue it.

    ``webhook_url`` (already checked) gets the operation's terminal event; ``public_base_url`` is
    the address the request came through, for the event's absolute links when ``PUBLIC_BASE_URL``
    is unset.

    ``parameters`` are already validated against the definition. The content check raises
    ``UnsupportedMedia``; a storage failure or a full disk raises ``StorageError`` (503) and leaves
    nothing. The session's limits (``quotas``) raise ``Throttled`` or ``QuotaExceeded``, checked
    again under the session's lock before the row is written. With an ``idempotency_key`` already
    used by this session in the last 24 hours, the earlier operation is returned instead
    (``created=False``), also when two such requests race, or ``IdempotencyKeyMismatch`` when that
    operation was created by a different request.
    """
    fingerprint = _request_fingerprint(definition, parameters, upload) if idempotency_key else None
    if idempotency_key:
        existing = _idempotent_match(session_key, idempotency_key)
        if existing is not None:
            return OperationCreateResult(operation=_same_request(existing, fingerprint), created=False)

    # Checked before anything is stored, and again under the session's lock before the row is written.
    quotas.session_check_capacity(session_key=session_key, incoming=upload.size or 0)
    with _disk_full_is_unavailable(), _local_path(upload) as path:
        inspection = inspect_upload(path=path, definition=definition)
    # Parameters that cannot work on this input (a trim past its end) are refused before storing.
    check_upload(definition, parameters, inspection.metadata)

    operation_id = uuid.uuid4()
    storage = get_storage()
    try:
        stored = storage.save_upload(
            operation_id=operation_id, source=upload, extension=inspection.extension, media_type=definition.media_type
        )
    except OSError as e:
        if not _is_disk_full(e):
            raise
        # A copy cut off by the full disk may have left part of the file under its key.
        key = object_key(operation_id=operation_id, file_type=INPUT, extension=inspection.extension)
        _discard(storage, key, definition.media_type)
        raise _disk_full(e) from e
    try:
        with transaction.atomic():
            quotas.session_lock(session_key=session_key)
            # A concurrent request with the same key may have won while this one was being stored.
            replayed = _idempotent_match(session_key, idempotency_key) if idempotency_key else None
            if replayed is None:
                operation = _record_within_limits(
                    operation_id=operation_id,
                    session_key=session_key,
                    definition=definition,
                    parameters=parameters,
                    idempotency_key=idempotency_key,
                    stored=stored,
                    file_name=sanitize_filename(upload.name or "", fallback=f"upload.{inspection.extension}"),
                    mime_type=inspection.mime_type,
                    metadata={**inspection.metadata, "container": inspection.container},
                    request_fingerprint=fingerprint,
                    webhook_url=webhook_url,
                    public_base_url=public_base_url if webhook_url else "",
                )
    except IntegrityError:
        _discard(storage, stored.key, definition.media_type)
        # The unique (session, key) constraint: a concurrent request with the same key won.
        existing = _idempotent_match(session_key, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return OperationCreateResult(operation=_same_request(existing, fingerprint), created=False)
    except Exception:
        _discard(storage, stored.key, definition.media_type)
        raise
    if replayed is not None:
        _discard(storage, stored.key, definition.media_type)
        return OperationCreateResult(operation=_same_request(replayed, fingerprint), created=False)

    # Queued once the row is committed; when Redis is unreachable it stays pending.
    enqueue_on_commit(operation_id=operation.id)
    operation.refresh_from_db()
    return OperationCreateResult(operation=operation, created=True)


def _record_within_limits(
    *, session_key: str, idempotency_key: str | None, stored: StoredObject, **fields: Any
) -> Operation:
    """Under the session's lock: check its limits again (the check before storing raced with any
    concurrent create of the session), then record the operation."""
    if idempotency_key:
        _release_stale_idempotency_key(session_key, idempotency_key)
    quotas.session_check_capacity(session_key=session_key, incoming=stored.size)
    return operation_record_upload(session_key=session_key, idempotency_key=idempotency_key, stored=stored, **fields)


def _request_fingerprint(definition: OperationDefinition, parameters: dict[str, Any], upload: UploadedFile) -> str:
    """What makes two creates the same request: the operation, its validated parameters (defaults
    filled in, so omitting a default is the same request) and the file's bytes."""
    content = hashlib.sha256()
    for chunk in upload.chunks():
        content.update(chunk)
    upload.seek(0)
    request = json.dumps([definition.name, parameters, content.hexdigest()], sort_keys=True)
    return hashlib.sha256(request.encode()).hexdigest()


def _same_request(existing: Operation, fingerprint: str | None) -> Operation:
    """``existing`` when this request is the one that created it, else ``IdempotencyKeyMismatch``
    (the IETF Idempotency-Key draft: a key reused with a different payload is a 422). Operations
    recorded before fingerprints were kept match any request."""
    recorded = existing.metadata.get(FINGERPRINT_KEY)
    if fingerprint is not None and recorded is not None and recorded != fingerprint:
        raise IdempotencyKeyMismatch(
            "This Idempotency-Key was already used for a different upload (another operation, other parameters "
            "or another file). Send a new key for a new upload.",
            details={"operation_id": str(existing.id)},
        )
    return existing


def _idempotent_match(session_key: str, idempotency_key: str) -> Operation | None:
    return selectors.operation_by_idempotency_key(
        session_key=session_key, idempotency_key=idempotency_key, within_hours=IDEMPOTENCY_WINDOW_HOURS
    )


def _release_stale_idempotency_key(session_key: str, idempotency_key: str) -> None:
    """A key older than the window (or of a deleted operation) may be used again: free it from the
    old row, which the unique constraint would otherwise still tie it to."""
    # Only stale rows: a fresh one is a concurrent request's, and the unique constraint must
    # make this insert fail so that its operation is returned instead.
    since = timezone.now() - timedelta(hours=IDEMPOTENCY_WINDOW_HOURS)
    Operation.objects.filter(session_key=session_key, idempotency_key=idempotency_key).filter(
        Q(created_at__lt=since) | Q(is_deleted=True)
    ).update(idempotency_key=None)


DISK_FULL_MESSAGE = "The server has run out of disk space, so this upload was not kept. Please try again later."


def _is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def _disk_full(error: OSError) -> StorageError:
    """A full disk (or quota) while receiving an upload is the server's trouble, not the client's:
    a 503 ``service_unavailable``, logged for the operator."""
    logger.error("Out of disk space while storing an upload: %s", error)
    return StorageError(DISK_FULL_MESSAGE)


@contextmanager
def _disk_full_is_unavailable() -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if not _is_disk_full(e):
            raise
        raise _disk_full(e) from e


@contextmanager
def _local_path(upload: UploadedFile) -> Iterator[Path]:
    """The upload as a local file to inspect: the temp file a large upload already is, or a
    short-lived copy of a small one held in memory."""
    if hasattr(upload, "temporary_file_path"):
        yield Path(upload.temporary_file_path())
        return
    directory = Path(settings.FILE_UPLOAD_TEMP_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix="inspect-", suffix=".upload") as copy:
        for chunk in upload.chunks():
            copy.write(chunk)
        copy.flush()
        yield Path(copy.name)
    upload.seek(0)


def _discard(storage: StorageBackend, key: str, media_type: MediaType) -> None:
    try:
        storage.delete(key=key, media_type=media_type)
    except StorageError as e:
        logger.error("Could not remove the stored upload %s after a failed create: %s", key, e)


# --- retry, cancel, delete ------------------------------------------------------------------------
def operation_record_upload(
    *,
    operation_id: uuid.UUID,
    session_key: str,
    definition: OperationDefinition,
    parameters: dict[str, Any],
    idempotency_key: str | None,
    stored: StoredObject,
    file_name: str,
    mime_type: str,
    metadata: dict[str, Any],
    request_fingerprint: str | None = None,
    webhook_url: str = "",
    public_base_url: str = "",
) -> Operation:
    """The rows of a new, pending operation whose input is already stored: the operation and its
    input File. Call it inside a transaction, so that neither row exists without the other."""
    operation = Operation.objects.create(
        id=operation_id,
        session_key=session_key,
        operation=definition.name,
        parameters=parameters,
        idempotency_key=idempotency_key,
        metadata={FINGERPRINT_KEY: request_fingerprint} if request_fingerprint else {},
        webhook_url=webhook_url,
        public_base_url=public_base_url,
    )
    File.objects.create(
        operation=operation,
        file_type=FileType.INPUT,
        file_path=stored.key,
        file_name=file_name,
        file_size=stored.size,
        mime_type=mime_type,
        cloudinary_public_id=stored.public_id,
        cloudinary_url=stored.url,
        metadata=metadata,
    )
    return operation


def operation_retry(*, operation: Operation) -> Operation:
    """Queue a failed or cancelled operation again with the same input and id."""
    if operation.operation not in OPERATIONS:
        # Removed in an upgrade: there is no queue to route it to, and no worker would run it.
        raise InvalidState("This operation is no longer offered, so it cannot be run again.")
    has_input = any(file.file_type == FileType.INPUT for file in operation.files.all())
    if not has_input and not operation.source_url:  # an import from a URL fetches it again
        raise Expired("The input of this operation is no longer stored; upload the file again.")
    with transaction.atomic():
        # A retry puts work back in line: it takes one of the session's active slots.
        quotas.session_lock(session_key=operation.session_key)
        if operation.status in OperationStatus.retryable():
            quotas.session_check_active(session_key=operation.session_key)
        operation = lifecycle.operation_reset_for_retry(operation=operation)
        enqueue_on_commit(operation_id=operation.id)
    operation.refresh_from_db()
    return operation


def operation_cancel(*, operation: Operation) -> Operation:
    """Cancel a pending, queued or processing operation. A queued job is withdrawn from its queue
    (and skipped by a worker that took it meanwhile: the claim needs ``queued``); a running one
    stops at its next progress check."""
    operation = lifecycle.operation_cancel(operation=operation)
    transaction.on_commit(lambda: dequeue_operation(operation=operation))
    return operation


def operation_delete(*, operation: Operation) -> bool:
    """Soft-delete the operation (cancelling its work) and remove its files once that is committed.
    ``False`` when it was already deleted (by a concurrent request, or earlier in the admin, which
    lists deleted rows): nothing is done again."""
    files = list(operation.files.all())
    definition = OPERATIONS.get(operation.operation)
    deleted = lifecycle.operation_mark_deleted(operation=operation)
    if deleted is None:
        return False
    transaction.on_commit(lambda: dequeue_operation(operation=deleted))
    transaction.on_commit(lambda: _remove_files(files, definition))
    return True


def _remove_files(files: list[File], definition: OperationDefinition | None) -> None:
    storage = get_storage()
    for file in files:
        try:
            storage.delete(key=file.file_path, media_type=_media_type_of(file, definition))
        except StorageError as e:
            # The row is already deleted; the retention sweep removes what is left behind.
            logger.warning("Could not remove %s of deleted operation %s: %s", file.file_path, file.operation_id, e)


def _media_type_of(file: File, definition: OperationDefinition | None) -> MediaType:
    family = file.mime_type.split("/", 1)[0]
    if family in MediaType.values:
        return MediaType(family)
    return definition.media_type if definition is not None else MediaType.VIDEO


# --- download -------------------------------------------------------------------------------------
def operation_download(*, operation: Operation) -> OperationDownload:
    """The stored result to stream or redirect to: 409 before completion, 410 once expired."""
    if operation.status != OperationStatus.COMPLETED:
        raise InvalidState(f"There is no result to download: this operation is {operation.status}.")
    output = next((file for file in operation.files.all() if file.file_type == FileType.OUTPUT), None)
    if output is None or (operation.expires_at is not None and operation.expires_at <= timezone.now()):
        raise Expired("The result of this operation has expired; run the operation again.")
    definition = OPERATIONS.get(operation.operation)
    # Named by the worker when it stored the result (holiday.mov → holiday_compressed.mp4).
    file_name = output.file_name or f"result{Path(output.file_path).suffix.lower()}"
    mime_type = output.mime_type or "application/octet-stream"
    try:
        target = get_storage().open_for_download(
            key=output.file_path,
            media_type=_media_type_of(output, definition),
            download_name=file_name,
            mime_type=mime_type,
        )
    except StorageError as e:
        if not e.permanent:
            raise
        logger.warning("The result %s of operation %s is missing from storage", output.file_path, operation.id)
        raise Expired("The result of this operation is no longer stored; run the operation again.") from e
    return OperationDownload(
        target=target,
        file_name=file_name,
        mime_type=mime_type,
    )
