"""What a user can do with an operation: create, retry, cancel, delete, download.

Status changes go through ``lifecycle`` (guarded compare-and-set) and queueing through
``queue_manager`` (after the transaction commits). Nothing is lost and nothing is orphaned: an
accepted upload is stored before its row exists and removed again if the row cannot be written;
a created operation whose job cannot be queued stays ``pending`` for the recovery sweep.
"""

from __future__ import annotations

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

from apps.core.exceptions import Expired, InvalidState, StorageError
from apps.core.utils import sanitize_filename
from apps.operations import selectors
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle
from apps.operations.services.queue_manager import dequeue_operation, enqueue_on_commit
from apps.processors.formats import MediaType
from apps.processors.registry import OPERATIONS, OperationDefinition
from apps.processors.sniffing import inspect_upload
from apps.storage.backend import DownloadTarget, StorageBackend, StoredObject, get_storage

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW_HOURS = 24


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
    ``UnsupportedMedia``; a storage failure raises ``StorageError`` (503) and leaves nothing.
    With an ``idempotency_key`` already used by this session in the last 24 hours, the earlier
    operation is returned instead (``created=False``), also when two such requests race.
    """
    if idempotency_key:
        existing = _idempotent_match(session_key, idempotency_key)
        if existing is not None:
            return OperationCreateResult(operation=existing, created=False)

    with _local_path(upload) as path:
        inspection = inspect_upload(path=path, definition=definition)

    operation_id = uuid.uuid4()
    storage = get_storage()
    stored = storage.save_upload(
        operation_id=operation_id, source=upload, extension=inspection.extension, media_type=definition.media_type
    )
    try:
        with transaction.atomic():
            if idempotency_key:
                _release_stale_idempotency_key(session_key, idempotency_key)
            operation = operation_record_upload(
                operation_id=operation_id,
                session_key=session_key,
                definition=definition,
                parameters=parameters,
                idempotency_key=idempotency_key,
                stored=stored,
                file_name=sanitize_filename(upload.name or "", fallback=f"upload.{inspection.extension}"),
                mime_type=inspection.mime_type,
                metadata={**inspection.metadata, "container": inspection.container},
                webhook_url=webhook_url,
                public_base_url=public_base_url if webhook_url else "",
            )
    except IntegrityError:
        _discard(storage, stored.key, definition.media_type)
        # The unique (session, key) constraint: a concurrent request with the same key won.
        existing = _idempotent_match(session_key, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return OperationCreateResult(operation=existing, created=False)
    except Exception:
        _discard(storage, stored.key, definition.media_type)
        raise

    # Queued once the row is committed; when Redis is unreachable it stays pending.
    enqueue_on_commit(operation_id=operation.id)
    operation.refresh_from_db()
    return OperationCreateResult(operation=operation, created=True)


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
    if not any(file.file_type == FileType.INPUT for file in operation.files.all()):
        raise Expired("The input of this operation is no longer stored; upload the file again.")
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
    try:
        target = get_storage().open_for_download(key=output.file_path, media_type=_media_type_of(output, definition))
    except StorageError as e:
        if not e.permanent:
            raise
        logger.warning("The result %s of operation %s is missing from storage", output.file_path, operation.id)
        raise Expired("The result of this operation is no longer stored; run the operation again.") from e
    return OperationDownload(
        target=target,
        # Named by the worker when it stored the result (holiday.mov → holiday_compressed.mp4).
        file_name=output.file_name or f"result{Path(output.file_path).suffix.lower()}",
        mime_type=output.mime_type or "application/octet-stream",
    )
