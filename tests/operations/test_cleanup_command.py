"""``manage.py cleanup_expired``: the retention pass on demand, with a report for the operator."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.processors.formats import MediaType
from apps.storage.backend import get_storage
from tests.factories import let_expire

S = OperationStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def expired_operation(make_operation):
    """``expired_operation()``: a completed image conversion whose retention ran out, and the
    storage key of its input."""

    def expire() -> tuple[Operation, str]:
        operation = let_expire(make_operation("c" * 32, operation="image_convert", status=S.COMPLETED))
        return operation, operation.files.get(file_type=FileType.INPUT).file_path

    return expire


def test_cleanup_expired_removes_expired_files_and_reports_them(expired_operation):
    operation, key = expired_operation()
    out = io.StringIO()

    call_command("cleanup_expired", stdout=out)

    report = out.getvalue()
    assert "     1  expired operations whose files were removed" in report
    assert "     2  stored files removed" in report
    assert "yes  expired sessions cleared" in report
    assert "Cleanup finished." in report
    assert not get_storage().exists(key=key, media_type=MediaType.IMAGE)
    operation.refresh_from_db()
    assert operation.deleted_at is not None


def test_cleanup_expired_handles_at_most_the_limit_per_run(expired_operation):
    first, _ = expired_operation()
    second, _ = expired_operation()
    out = io.StringIO()

    call_command("cleanup_expired", "--limit", "1", stdout=out)

    assert "     1  expired operations whose files were removed" in out.getvalue()
    assert Operation.objects.filter(id__in=[first.id, second.id], deleted_at__isnull=True).count() == 1


def test_cleanup_expired_fails_loudly_and_keeps_files_it_could_not_remove(cloudinary_standin, expired_operation):
    operation, key = expired_operation()
    cloudinary_standin.fail("destroy", "timeout", times=None)

    with pytest.raises(CommandError, match=r"1 operation\(s\) could not be removed"):
        call_command("cleanup_expired", stdout=io.StringIO())

    operation.refresh_from_db()
    assert operation.deleted_at is None and operation.files.count() == 2
    cloudinary_standin.heal()
    assert get_storage().exists(key=key, media_type=MediaType.IMAGE)


def test_cleanup_expired_refuses_a_limit_below_one():
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        call_command("cleanup_expired", "--limit", "0", stdout=io.StringIO())


def test_an_orphaned_upload_folder_is_reported(storage_root, media):
    folder = storage_root / "uploads" / str(uuid.uuid4())
    folder.mkdir()
    shutil.copy(media.png(), folder / "input.png")
    stamp = (timezone.now() - timedelta(hours=2)).timestamp()
    for path in (folder / "input.png", folder):
        os.utime(path, (stamp, stamp))
    out = io.StringIO()

    call_command("cleanup_expired", stdout=out)

    assert "     1  orphaned storage folders removed" in out.getvalue()
    assert not folder.exists()
