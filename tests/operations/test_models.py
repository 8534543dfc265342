"""The data model's guarantees that live in the database itself."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation

pytestmark = pytest.mark.django_db


def make_operation(**fields) -> Operation:
    return Operation.objects.create(session_key="s" * 32, operation="image_resize", **fields)


def test_new_operation_defaults():
    operation = make_operation()
    assert operation.status == OperationStatus.PENDING
    assert operation.progress == 0
    assert operation.attempt == 0
    assert operation.is_deleted is False
    assert operation.idempotency_key is None


def test_an_operation_has_at_most_one_input_and_one_output():
    operation = make_operation()
    File.objects.create(operation=operation, file_type=FileType.INPUT, file_path="uploads/a", file_name="a.png")
    File.objects.create(operation=operation, file_type=FileType.OUTPUT, file_path="outputs/a", file_name="a.png")
    with pytest.raises(IntegrityError), transaction.atomic():
        File.objects.create(operation=operation, file_type=FileType.OUTPUT, file_path="outputs/b", file_name="b.png")


def test_idempotency_key_is_unique_per_session_only():
    make_operation(idempotency_key="abc")
    Operation.objects.create(session_key="t" * 32, operation="image_resize", idempotency_key="abc")
    make_operation()
    make_operation()  # many operations without a key are fine
    with pytest.raises(IntegrityError), transaction.atomic():
        make_operation(idempotency_key="abc")


def test_progress_cannot_exceed_100():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_operation(progress=101)


def test_terminal_statuses():
    assert make_operation(status=OperationStatus.FAILED).is_terminal
    assert not make_operation(status=OperationStatus.QUEUED).is_terminal


def test_migrations_are_up_to_date():
    from io import StringIO

    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())
