"""Operations in the state a test needs, built the way Konvrt builds them.

An operation starts as the API's create leaves it: the upload checked by the API's own content
inspection, stored through the storage backend under a fresh id, and recorded with its input File.
Every later state is reached through the services that reach it in production: the queue manager
for ``queued``, and the guarded transitions of ``apps.operations.services.lifecycle`` (claim,
progress, complete, fail, cancel, delete) for the rest. So a row built here holds only what the
services can produce: a failed operation has its ``expires_at``, a deleted one its ``deleted_at``.

Time is the one thing tests move by hand: ``backdate`` shifts every timestamp of an operation as
if all of it had happened earlier, which is how a test lets retention periods and heartbeats run
out.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import DateTimeField, F
from django.utils import timezone

from apps.core.utils import file_extension
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle, operations_manager
from apps.operations.services.queue_manager import enqueue_operation, job_id_for
from apps.processors.formats import MediaType, get_format, mime_type_for_extension
from apps.processors.parameters import validate_parameters
from apps.processors.registry import OperationDefinition, get_operation
from apps.processors.sniffing import inspect_upload
from apps.storage.backend import get_storage
from tests.media import MediaFactory

S = OperationStatus
SESSION = "s" * 32
# Stored on the operations the factory fails; tests that check a message pass their own.
FAILURE_MESSAGE = "The test failed this operation."

# The input a test gets when it names none, per media type.
DEFAULT_INPUT = {MediaType.VIDEO: "mov", MediaType.IMAGE: "png", MediaType.AUDIO: "mp3"}
# Valid parameters for operations that need some, when a test gives none.
DEFAULT_PARAMETERS: dict[str, dict[str, Any]] = {
    "video_convert": {"output_format": "mp4"},
    "image_resize": {"width": 16},
    "image_convert": {"output_format": "jpg"},
    "audio_convert": {"output_format": "mp3"},
}


class OperationFactory:
    """``make_operation(session_key, status=..., ...)``: see ``__call__``."""

    def __init__(self, *, media: MediaFactory, scratch: Path) -> None:
        self.media = media
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)

    def __call__(
        self,
        session_key: str = SESSION,
        *,
        operation: str = "video_compress",
        status: OperationStatus = S.PENDING,
        source: Path | None = None,
        name: str | None = None,
        parameters: dict[str, Any] | None = None,
        inspect: bool = True,
        idempotency_key: str | None = None,
        progress: int | None = None,
        phase: ProcessingPhase | None = None,
        error_message: str = FAILURE_MESSAGE,
        output: Path | None = None,
        deleted: bool = False,
        webhook_url: str = "",
    ) -> Operation:
        """An operation of ``session_key`` in ``status``, its files really stored.

        - ``source`` is the uploaded file (a small sample of the operation's media type by default)
          and ``name`` the client's name for it (``holiday.<extension>`` by default), recorded as
          given. ``parameters`` are validated as the API validates them.
        - ``inspect=False`` skips the API's content check and records the file as its name says:
          for tests of what the worker does with a file the API would have refused or read as
          another format (a worker must not trust the row).
        - ``queued`` puts the job on its RQ queue. ``processing`` and later are claimed by a worker
          that took the job off the queue (nothing is left in Redis), ``progress`` and ``phase``
          written by it; ``completed`` stores ``output`` (by default a sample of the output
          format) and completes; ``failed`` fails that attempt with ``error_message``;
          ``cancelled`` is a user's cancel while the job waited (with ``progress`` or ``phase``:
          while it was being processed).
        - ``deleted`` then applies the row half of a user's delete: the files stay stored, as when
          the delete's own removal failed.
        - ``webhook_url`` is recorded as a create that gave it (through ``http://testserver/``).
        """
        definition = get_operation(operation)
        if parameters is None:
            parameters = DEFAULT_PARAMETERS.get(operation, {})
        created = self._create(
            definition,
            session_key=session_key,
            source=source or self.media.sample(DEFAULT_INPUT[definition.media_type]),
            name=name,
            parameters=validate_parameters(definition, parameters),
            inspect=inspect,
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
        )
        _advance(
            created,
            status,
            enqueue=True,
            progress=progress,
            phase=phase,
            error_message=error_message,
            complete=lambda claimed: self._complete(claimed, definition, output),
        )
        if deleted:
            lifecycle.operation_mark_deleted(operation=created)
        return Operation.objects.prefetch_related("files").get(id=created.id)

    def _create(
        self,
        definition: OperationDefinition,
        *,
        session_key: str,
        source: Path,
        name: str | None,
        parameters: dict[str, Any],
        inspect: bool,
        idempotency_key: str | None,
        webhook_url: str = "",
    ) -> Operation:
        """What ``operations_manager.operation_create`` records (without queueing on commit: the
        factory queues when asked, in any kind of test transaction)."""
        if inspect:
            inspection = inspect_upload(path=source, definition=definition)
            extension, mime_type = inspection.extension, inspection.mime_type
            metadata = {**inspection.metadata, "container": inspection.container}
        else:
            extension = file_extension(name or source.name)
            mime_type, metadata = mime_type_for_extension(extension), {}
        operation_id = uuid.uuid4()
        stored = get_storage().save_upload(
            operation_id=operation_id, source=source, extension=extension, media_type=definition.media_type
        )
        with transaction.atomic():
            return operations_manager.operation_record_upload(
                operation_id=operation_id,
                session_key=session_key,
                definition=definition,
                parameters=parameters,
                idempotency_key=idempotency_key,
                stored=stored,
                file_name=f"holiday.{extension}" if name is None else name,
                mime_type=mime_type,
                metadata=metadata,
                webhook_url=webhook_url,
                public_base_url="http://testserver/" if webhook_url else "",
            )

    def _complete(self, claimed: Operation, definition: OperationDefinition, output: Path | None) -> None:
        """Store an output and complete the attempt, as ``processing.operation_process`` does."""
        input_file = claimed.files.get(file_type=FileType.INPUT)
        extension = _output_extension(definition, claimed.parameters, file_extension(input_file.file_path))
        # The storage backend moves what it stores: give it a copy.
        result = self.scratch / f"result-{claimed.id}.{extension}"
        shutil.copyfile(output or self.media.sample(extension), result)
        media_type = get_format(extension).media_type
        stored = get_storage().save_output(
            operation_id=claimed.id, local_path=result, extension=extension, media_type=media_type
        )
        assert lifecycle.operation_mark_completed(
            operation_id=claimed.id,
            attempt=claimed.attempt,
            output={
                "file_path": stored.key,
                "file_name": definition.output_file_name(original_name=input_file.file_name, extension=extension),
                "file_size": stored.size,
                "mime_type": mime_type_for_extension(extension),
                "metadata": {"format": extension},
                "cloudinary_public_id": stored.public_id,
                "cloudinary_url": stored.url,
            },
        )


def operation_row(
    status: OperationStatus = S.PENDING,
    *,
    session_key: str = SESSION,
    operation: str = "video_compress",
    job_id: str | None = None,
    queued_at: datetime | None = None,
    progress: int | None = None,
    phase: ProcessingPhase | None = None,
    error_message: str = FAILURE_MESSAGE,
) -> Operation:
    """An operation without files, moved to ``status`` through the lifecycle like
    ``make_operation``'s: for tests of the transitions themselves, which read no stored input.

    Its job is never put on a queue: ``job_id`` and ``queued_at`` are what the pending → queued
    transition records (a ``pending`` operation with a ``job_id`` is one whose enqueue failed). A
    completed one's output File names an object that was never stored.
    """
    created = Operation.objects.create(session_key=session_key, operation=operation)
    _advance(
        created,
        status,
        enqueue=False,
        job_id=job_id,
        queued_at=queued_at,
        progress=progress,
        phase=phase,
        error_message=error_message,
        complete=_complete_without_storing,
    )
    return Operation.objects.get(id=created.id)


def _advance(
    operation: Operation,
    status: OperationStatus,
    *,
    enqueue: bool,
    job_id: str | None = None,
    queued_at: datetime | None = None,
    progress: int | None = None,
    phase: ProcessingPhase | None = None,
    error_message: str = FAILURE_MESSAGE,
    complete: Callable[[Operation], None],
) -> None:
    """Move a new (pending) operation to ``status`` through the services that do it in production."""
    if error_message != FAILURE_MESSAGE and status != S.FAILED:
        raise ValueError(f"Only a failed operation carries an error message, not a {status} one.")
    if status == S.PENDING and job_id is None:
        return
    if enqueue and status == S.QUEUED:
        assert enqueue_operation(operation=operation), "Redis refused the job"
    else:
        job_id = job_id or job_id_for(operation)
        assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id=job_id, queued_at=queued_at)
    if status == S.PENDING:
        # Putting the job on the queue failed (Redis unreachable): back to pending.
        assert lifecycle.operation_mark_pending(operation_id=operation.id, job_id=job_id)
        return
    if status == S.QUEUED:
        return
    working = progress is not None or phase is not None
    if status == S.CANCELLED and not working:
        lifecycle.operation_cancel(operation=operation)  # while its job waited
        return
    claimed = lifecycle.operation_claim(operation_id=operation.id)
    assert claimed is not None
    if working:
        assert lifecycle.operation_record_progress(
            operation_id=claimed.id, attempt=claimed.attempt, progress=progress, phase=phase
        )
    if status == S.CANCELLED:
        lifecycle.operation_cancel(operation=claimed)  # while it was being processed
    elif status == S.COMPLETED:
        complete(claimed)
    elif status == S.FAILED:
        assert lifecycle.operation_mark_failed(operation_id=claimed.id, attempt=claimed.attempt, message=error_message)


def _complete_without_storing(claimed: Operation) -> None:
    assert lifecycle.operation_mark_completed(
        operation_id=claimed.id,
        attempt=claimed.attempt,
        output={
            "file_path": f"outputs/{claimed.id}/output.mp4",
            "file_name": "holiday_compressed.mp4",
            "file_size": 0,
            "mime_type": "video/mp4",
        },
    )


def _output_extension(definition: OperationDefinition, parameters: dict[str, Any], input_extension: str) -> str:
    if "output_format" in parameters:
        return parameters["output_format"]
    # An operation without a choice keeps the input's format where it can write it (image_resize).
    return input_extension if input_extension in definition.output_formats else definition.output_formats[0]


def backdate(operation: Operation, by: timedelta) -> Operation:
    """Move ``operation`` ``by`` into the past: every timestamp of it and of its files (created,
    queued, started, last heard from, completed, expiring, deleted) shifts together, as if all of
    it had happened that much earlier. Returns the operation as stored now."""
    Operation.objects.filter(id=operation.id).update(**_shifted(Operation, by))
    File.objects.filter(operation_id=operation.id).update(**_shifted(File, by))
    return Operation.objects.prefetch_related("files").get(id=operation.id)


def let_expire(operation: Operation, *, ago: timedelta = timedelta(minutes=1)) -> Operation:
    """Let a finished operation's retention run out: ``backdate`` it so that ``expires_at``, as the
    services set it, passed ``ago`` ago."""
    assert operation.expires_at is not None, f"a {operation.status} operation does not expire"
    return backdate(operation, operation.expires_at - timezone.now() + ago)


def _shifted(model: type[Operation] | type[File], by: timedelta) -> dict[str, Any]:
    fields = [field.name for field in model._meta.concrete_fields if isinstance(field, DateTimeField)]
    return {name: F(name) - by for name in fields}
