"""Retention: expired and deleted operations' files leave their backend, orphans go, nothing active is touched."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

from apps.core.exceptions import Expired
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services.cleanup import CleanupReport, cleanup_run
from apps.operations.services.operations_manager import operation_download, operation_retry
from apps.operations.services.workspace import jobs_temp_root
from apps.processors.formats import MediaType
from apps.storage.backend import StorageBackend, get_storage
from tests.factories import backdate, let_expire

S = OperationStatus
SESSION = "s" * 32
HOURS_AGO = timedelta(hours=1)


@pytest.fixture(params=["local", "cloudinary"])
def backend(request) -> StorageBackend:
    if request.param == "cloudinary":
        request.getfixturevalue("cloudinary_standin")
    return get_storage()


@pytest.fixture
def finished_operation(make_operation):
    """``finished_operation(status=, expired=)``: an operation that ran to ``status`` through the
    services, its input (and a completed one's output) stored in the configured backend; with
    ``expired``, its retention ran out a minute ago."""

    def finish(*, status: S = S.COMPLETED, expired: bool = True) -> Operation:
        operation = make_operation(SESSION, operation="audio_extract", status=status)
        return let_expire(operation) if expired else operation

    return finish


def stored_keys(operation: Operation) -> list[tuple[str, MediaType]]:
    return [
        (file.file_path, MediaType.VIDEO if file.file_type == FileType.INPUT else MediaType.AUDIO)
        for file in operation.files.all()
    ]


def all_stored(storage: StorageBackend, keys: list[tuple[str, MediaType]]) -> bool:
    return all(storage.exists(key=key, media_type=media_type) for key, media_type in keys)


def none_stored(storage: StorageBackend, keys: list[tuple[str, MediaType]]) -> bool:
    return not any(storage.exists(key=key, media_type=media_type) for key, media_type in keys)


def needs_row_locks() -> None:
    # The in-memory SQLite test database fails a second writer at once ("table is locked") instead
    # of waiting; the SQLite file Konvrt uses waits (busy timeout), so two runs there take turns.
    if connection.vendor != "postgresql":
        pytest.skip("Concurrent runs are tested on PostgreSQL, where they claim rows with SKIP LOCKED.")


# --- expiry ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_expired_operations_lose_their_files_and_are_marked_while_unexpired_ones_are_untouched(
    backend, finished_operation
):
    completed = finished_operation(status=S.COMPLETED)
    failed = finished_operation(status=S.FAILED)
    cancelled = finished_operation(status=S.CANCELLED)
    fresh = finished_operation(expired=False)
    expired_keys = stored_keys(completed) + stored_keys(failed) + stored_keys(cancelled)
    fresh_keys = stored_keys(fresh)

    report = cleanup_run()

    assert report.expired_operations == 3
    assert report.stored_files_removed == 4
    assert report.failed_operations == 0
    assert none_stored(backend, expired_keys)
    assert all_stored(backend, fresh_keys)
    for operation in (completed, failed, cancelled):
        operation.refresh_from_db()
        assert operation.deleted_at is not None
        assert operation.is_deleted is False  # still listed for its session, as expired
        assert not operation.files.exists()
    fresh.refresh_from_db()
    assert fresh.deleted_at is None and fresh.files.count() == 2


@pytest.mark.django_db
def test_download_and_retry_of_a_cleaned_up_operation_are_expired(backend, finished_operation):
    completed = finished_operation()
    failed = finished_operation(status=S.FAILED)
    cleanup_run()

    with pytest.raises(Expired):
        operation_download(operation=Operation.objects.get(id=completed.id))
    with pytest.raises(Expired):
        operation_retry(operation=Operation.objects.get(id=failed.id))


@pytest.mark.django_db
@pytest.mark.parametrize("status", [S.PENDING, S.QUEUED, S.PROCESSING])
def test_active_operations_are_never_touched_even_with_a_past_expiry(backend, make_operation, status):
    active = backdate(make_operation(SESSION, operation="audio_extract", status=status), timedelta(days=8))
    # No service gives active work an expiry: the guard is for a row that has one anyway.
    Operation.objects.filter(id=active.id).update(expires_at=timezone.now() - timedelta(minutes=1))
    keys = stored_keys(active)

    report = cleanup_run()

    assert report == CleanupReport(expired_sessions_cleared=True)
    assert all_stored(backend, keys)
    active.refresh_from_db()
    assert active.status == status and active.deleted_at is None and active.files.count() == 1


@pytest.mark.django_db
def test_a_file_already_gone_from_the_backend_does_not_stop_cleanup(backend, finished_operation):
    operation = finished_operation()
    for key, media_type in stored_keys(operation):
        backend.delete(key=key, media_type=media_type)

    report = cleanup_run()

    assert report.expired_operations == 1 and report.failed_operations == 0
    operation.refresh_from_db()
    assert operation.deleted_at is not None and not operation.files.exists()


@pytest.mark.django_db
def test_cleanup_is_idempotent(backend, finished_operation):
    finished_operation()
    cleanup_run()

    assert cleanup_run() == CleanupReport(expired_sessions_cleared=True)


@pytest.mark.django_db
def test_a_storage_failure_keeps_the_operation_for_the_next_run(cloudinary_standin, finished_operation):
    storage = get_storage()
    operation = finished_operation()
    keys = stored_keys(operation)
    cloudinary_standin.fail("destroy", "error", times=None)

    report = cleanup_run()

    assert report.failed_operations == 1 and report.expired_operations == 0
    operation.refresh_from_db()
    assert operation.deleted_at is None and operation.files.count() == 2
    assert all_stored(storage, keys)

    cloudinary_standin.heal()
    report = cleanup_run()

    assert report.expired_operations == 1 and report.failed_operations == 0
    assert none_stored(storage, keys)


@pytest.mark.django_db
def test_files_left_behind_by_a_users_delete_are_removed_after_an_hour(backend, make_operation):
    # The row half of a user's delete, whose own removal of the files failed.
    old = make_operation(SESSION, operation="audio_extract", status=S.COMPLETED, deleted=True)
    old = backdate(old, 2 * HOURS_AGO)
    recent = make_operation(SESSION, operation="audio_extract", status=S.COMPLETED, deleted=True)
    recent = backdate(recent, timedelta(minutes=5))
    old_keys, recent_keys = stored_keys(old), stored_keys(recent)

    report = cleanup_run()

    assert report.deleted_operations == 1 and report.expired_operations == 0
    assert none_stored(backend, old_keys)
    assert all_stored(backend, recent_keys)
    old.refresh_from_db()
    assert old.is_deleted and not old.files.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_remove_every_file_exactly_once(cloudinary_standin, finished_operation):
    needs_row_locks()
    operations = [finished_operation() for _ in range(6)]
    # Slow deletes, so that the two runs are working at the same time.
    cloudinary_standin.latency["destroy"] = 0.05
    reports: list[CleanupReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            reports.append(cleanup_run())
        except BaseException as e:  # noqa: BLE001 - handed to the test thread below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sum(report.expired_operations for report in reports) == 6
    assert sum(report.stored_files_removed for report in reports) == 12
    assert sum(report.failed_operations for report in reports) == 0
    destroyed = [call.params["public_id"] for call in cloudinary_standin.calls_of("destroy")]
    assert len(destroyed) == len(set(destroyed)) == 12
    assert cloudinary_standin.assets == {}
    assert Operation.objects.filter(id__in=[op.id for op in operations], deleted_at__isnull=False).count() == 6


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_on_local_storage_report_each_removal_once(finished_operation, storage_root):
    needs_row_locks()
    for _ in range(6):
        finished_operation()
    orphans = [make_folder(storage_root, "uploads", older_by=2 * HOURS_AGO) for _ in range(4)]
    reports: list[CleanupReport] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            reports.append(cleanup_run())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(reports) == 2
    assert sum(report.expired_operations for report in reports) == 6
    assert sum(report.orphaned_folders_removed for report in reports) == 4
    assert not any(folder.exists() for folder in orphans)
    assert not File.objects.exists()


# --- orphans --------------------------------------------------------------------------------------
def age(path: Path, by: timedelta) -> None:
    """Backdate ``path`` and everything under it."""
    stamp = time.time() - by.total_seconds()
    for item in [path, *path.rglob("*")]:
        os.utime(item, (stamp, stamp), follow_symlinks=False)


def make_folder(root: Path, kind: str, *, older_by: timedelta, name: str | None = None) -> Path:
    folder = root / kind / (name or str(uuid.uuid4()))
    folder.mkdir(parents=True)
    (folder / ("input.mp4" if kind == "uploads" else "output.mp4")).write_bytes(b"stored bytes")
    age(folder, older_by)
    return folder


@pytest.mark.django_db
def test_job_workspaces_older_than_the_longest_job_are_removed(settings):
    root = jobs_temp_root()
    longest = timedelta(seconds=max(worker["timeout"] for worker in settings.WORKER_CONFIG.values()))
    abandoned = root / f"{uuid.uuid4()}-abc"
    running = root / f"{uuid.uuid4()}-def"
    still_writing = root / f"{uuid.uuid4()}-ghi"
    for workspace in (abandoned, running, still_writing):
        workspace.mkdir(parents=True)
        (workspace / "input.mp4").write_bytes(b"x")
    age(abandoned, longest + 2 * HOURS_AGO)
    age(running, longest)
    age(still_writing, longest + 2 * HOURS_AGO)
    (still_writing / "output.mp4").write_bytes(b"being written")  # fresh: its job is alive

    report = cleanup_run()

    assert report.job_workspaces_removed == 1
    assert not abandoned.exists()
    assert running.exists() and still_writing.exists()
    assert [entry for entry in root.iterdir() if entry.name.startswith(".")] == []


@pytest.mark.django_db
def test_upload_temp_files_older_than_a_day_are_removed(settings):
    directory = Path(settings.FILE_UPLOAD_TEMP_DIR)
    stale = directory / "tmpabc.upload.mp4"
    fresh = directory / "tmpdef.upload.mp4"
    stale.write_bytes(b"half an upload")
    fresh.write_bytes(b"an upload in progress")
    age(stale, timedelta(days=1, hours=1))
    age(fresh, timedelta(hours=23))

    report = cleanup_run()

    assert report.upload_temp_files_removed == 1
    assert not stale.exists() and fresh.exists()


@pytest.mark.django_db
def test_local_storage_folders_that_no_file_row_points_into_are_removed_after_an_hour(
    storage_root, finished_operation, make_operation
):
    storage = get_storage()
    kept = finished_operation(expired=False)
    age(storage_root / "uploads" / str(kept.id), 2 * HOURS_AGO)
    no_row = make_folder(storage_root, "uploads", older_by=2 * HOURS_AGO)
    being_created = make_folder(storage_root, "uploads", older_by=timedelta(minutes=10))
    cancelled = make_operation(SESSION, status=S.CANCELLED)
    # A worker stored this output, then found its operation cancelled: no File row was written.
    unrecorded_output = make_folder(storage_root, "outputs", older_by=2 * HOURS_AGO, name=str(cancelled.id))
    not_ours = make_folder(storage_root, "uploads", older_by=2 * HOURS_AGO, name="README-folder")

    report = cleanup_run()

    assert report.orphaned_folders_removed == 2
    assert not no_row.exists() and not unrecorded_output.exists()
    assert being_created.exists() and not_ours.exists()
    assert all_stored(storage, stored_keys(kept))


@pytest.mark.django_db
def test_local_folders_are_left_alone_when_files_live_in_cloudinary(cloudinary_standin, storage_root):
    leftover = make_folder(storage_root, "uploads", older_by=2 * HOURS_AGO)

    report = cleanup_run()

    assert report.orphaned_folders_removed == 0
    assert leftover.exists()


@pytest.mark.django_db
def test_cloudinary_objects_no_row_names_are_removed_after_a_day(cloudinary_standin, finished_operation):
    storage = get_storage()
    kept = finished_operation(expired=False)
    two_days_ago = time.time() - 2 * 86400
    for asset in list(cloudinary_standin.assets.values()):
        asset.created_at = two_days_ago  # the kept operation's files are old too
    orphan = uuid.uuid4()  # a web process died between storing the upload and committing its row
    cloudinary_standin.put_asset(
        public_id=f"mediaprocessor/uploads/{orphan}/input",
        resource_type="video",
        format="mp4",
        data=b"x",
        created_at=two_days_ago,
    )
    recent = uuid.uuid4()
    cloudinary_standin.put_asset(
        public_id=f"mediaprocessor/uploads/{recent}/input", resource_type="image", format="png", data=b"y"
    )

    report = cleanup_run()

    assert report.orphaned_objects_removed == 1
    assert cloudinary_standin.asset(f"mediaprocessor/uploads/{orphan}/input", "video") is None
    assert cloudinary_standin.asset(f"mediaprocessor/uploads/{recent}/input", "image") is not None
    assert all_stored(storage, stored_keys(kept))


@pytest.mark.django_db
def test_s3_objects_no_row_names_are_removed_after_a_day(s3_bucket, finished_operation):
    storage = get_storage()
    kept = finished_operation(expired=False)
    orphan = f"uploads/{uuid.uuid4()}/input.mp4"
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=orphan, Body=b"x")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="not-konvrt/keep.txt", Body=b"x")

    fresh = cleanup_run()
    # The bucket's clock says when an object was written: a day later by the run's.
    later = cleanup_run(now=timezone.now() + timedelta(days=1, minutes=1))

    assert fresh.orphaned_objects_removed == 0
    assert later.orphaned_objects_removed == 1
    assert orphan not in s3_bucket.keys() and "not-konvrt/keep.txt" in s3_bucket.keys()
    assert all_stored(storage, stored_keys(kept))


@pytest.mark.django_db
def test_an_unreachable_bucket_does_not_stop_the_rest_of_cleanup(s3_bucket, settings):
    s3_bucket.proxy.fail("GET", "error", times=None)
    old_temp = Path(settings.FILE_UPLOAD_TEMP_DIR) / "upload.part"
    old_temp.parent.mkdir(parents=True, exist_ok=True)
    old_temp.write_bytes(b"x")
    age(old_temp, timedelta(days=2))

    report = cleanup_run()

    assert report.orphaned_objects_removed == 0
    assert report.upload_temp_files_removed == 1


@pytest.mark.django_db
def test_what_a_killed_run_claimed_but_did_not_remove_is_finished_later(storage_root):
    leftover = storage_root / "uploads" / ".cleanup-0123456789abcdef"
    leftover.mkdir()
    (leftover / "input.mp4").write_bytes(b"x")
    age(leftover, 2 * HOURS_AGO)

    cleanup_run()

    assert not leftover.exists()


# --- sessions -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_expired_sessions_are_cleared():
    live = SessionStore()
    live.create()
    expired = SessionStore()
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now() - HOURS_AGO)

    assert cleanup_run().expired_sessions_cleared is True

    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
