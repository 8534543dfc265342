"""Helpers for processing tests: an operation with a stored input, queued the way the API queues it,
and a real RQ worker to run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.processors.registry import get_operation


@pytest.fixture
def submit(make_operation) -> Callable[..., Operation]:
    """Create an operation whose input is ``path`` (named ``name`` by its client) and put it on its
    queue (``enqueue=False``: leave it pending). ``inspect=False`` hands the worker a file the API
    would have refused or read as another format (see ``tests/factories.py``)."""

    def submit(
        operation: str,
        path: Path,
        parameters: dict | None = None,
        *,
        name: str | None = None,
        enqueue: bool = True,
        inspect: bool = True,
    ) -> Operation:
        return make_operation(
            operation=operation,
            source=path,
            name=path.name if name is None else name,
            parameters=parameters or {},
            status=OperationStatus.QUEUED if enqueue else OperationStatus.PENDING,
            inspect=inspect,
        )

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
