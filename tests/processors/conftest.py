"""Helpers for processing tests: an operation with a stored input, queued the way the API queues it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from apps.operations.enums import FileType
from apps.operations.models import File, Operation
from apps.operations.services.queue_manager import enqueue_operation
from apps.processors.formats import mime_type_for_extension
from apps.processors.parameters import validate_parameters
from apps.processors.registry import get_operation
from apps.storage.backend import get_storage

SESSION = "s" * 32


@pytest.fixture
def submit(storage_root) -> Callable[..., Operation]:
    """Create an operation whose input is ``path`` (stored through the storage service under the
    client name ``name``) and put it on its queue."""

    def submit(
        operation: str,
        path: Path,
        parameters: dict | None = None,
        *,
        name: str | None = None,
        enqueue: bool = True,
    ) -> Operation:
        definition = get_operation(operation)
        created = Operation.objects.create(
            session_key=SESSION, operation=operation, parameters=validate_parameters(definition, parameters or {})
        )
        extension = path.suffix.lstrip(".").lower()
        stored = get_storage().save_upload(
            operation_id=created.id, source=path, extension=extension, media_type=definition.media_type
        )
        File.objects.create(
            operation=created,
            file_type=FileType.INPUT,
            file_path=stored.key,
            file_name=name or path.name,
            file_size=stored.size,
            mime_type=mime_type_for_extension(extension),
        )
        if enqueue:
            assert enqueue_operation(operation=created)
        created.refresh_from_db()
        return created

    return submit


@pytest.fixture
def output_path(storage_root) -> Callable[[Operation], Path]:
    """The local path of an operation's stored output."""

    def output_path(operation: Operation) -> Path:
        return storage_root / operation.files.get(file_type=FileType.OUTPUT).file_path

    return output_path


@pytest.fixture
def run_operation(submit, run_worker) -> Callable[..., Operation]:
    """Submit an operation and run a real RQ worker on its queue until the queue is empty."""

    def run_operation(operation: str, path: Path, parameters: dict | None = None, **options) -> Operation:
        created = submit(operation, path, parameters, **options)
        run_worker(get_operation(operation).queue)
        created.refresh_from_db()
        return created

    return run_operation


def assert_completed(operation: Operation) -> None:
    assert operation.status == "completed", f"{operation.status}: {operation.error_message} {operation.metadata}"
    assert operation.progress == 100


def assert_failed_keeping_input(operation: Operation, storage_root: Path, message: str) -> None:
    """Failed with a message a person understands, no output, and the upload still there for a retry."""
    assert operation.status == "failed", operation.status
    assert message in operation.error_message
    assert not operation.files.filter(file_type=FileType.OUTPUT).exists()
    assert (storage_root / operation.files.get(file_type=FileType.INPUT).file_path).is_file()
