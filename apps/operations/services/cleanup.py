"""Retention: what Konvrt stores is removed once nobody may need it any more.

One run (``cleanup_run``, every hour from RQ cron and on demand with ``manage.py cleanup_expired``):

1. Finished operations past ``expires_at`` (completed, failed and cancelled alike): their stored
   files are deleted from the backend that holds them, their File rows go, and ``deleted_at``
   records when. The operation stays visible to its session; download and retry answer 410.
2. Operations their users deleted more than an hour ago whose files are still recorded (the
   delete's own removal failed, e.g. Cloudinary was down): the same, without touching the row.
3. Orphans no row accounts for: job workspaces older than the longest job timeout (a worker that
   was killed never ran its ``finally``), upload temp files older than a day, and local storage
   folders under ``uploads/`` and ``outputs/`` that no File row points into, older than an hour
   (so an upload being stored right now, before its row is committed, is never taken); on shared
   object storage (S3, Cloudinary) objects no File row names, older than a day (a web process
   killed between storing an upload and committing its row leaves one).
4. Resumable (tus) uploads past ``expires_at`` (``UPLOAD_EXPIRY_HOURS`` after they started),
   finished or not, and part files under ``tus/`` that no upload row accounts for.
5. Expired Django sessions.

Active operations (pending, queued, processing) are never touched. Every removal is claimed first
(a row lock taken with SKIP LOCKED, or an atomic rename of a directory), so two runs at once, on
one machine or several, never remove the same thing twice, and a run that dies half-way leaves
nothing that the next run cannot finish. Deleting what is already gone is not an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from apps.core.exceptions import StorageError
from apps.operations.enums import OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle
from apps.operations.services.uploads import upload_remove_expired
from apps.operations.services.workspace import jobs_temp_root
from apps.processors.formats import MediaType, media_type_of
from apps.processors.registry import OPERATIONS
from apps.storage.backend import StorageBackend, get_storage

logger = logging.getLogger(__name__)

S = OperationStatus
DEFAULT_LIMIT = 500
# A user's delete removes its files itself once committed; the sweep only picks up what that left.
DELETED_GRACE = timedelta(hours=1)
# An upload is stored before its operation row is committed; an output before its File row.
STORAGE_ORPHAN_AGE = timedelta(hours=1)
UPLOAD_TEMP_AGE = timedelta(days=1)
# At a web process's start: an upload temp file that no process holds open any more is the leftover
# of a killed request, once it is this old (a margin; a live one is open from its creation on).
UNHELD_UPLOAD_TEMP_AGE = timedelta(minutes=1)
# Shared object storage is listed, not renamed: only objects this old are taken for orphans.
STORAGE_OBJECT_ORPHAN_AGE = timedelta(days=1)
# A workspace lives at most as long as its job: the longest queue timeout, plus a margin for the
# worker's own start-up and teardown.
WORKSPACE_MARGIN = timedelta(hours=1)
TRASH_PREFIX = ".cleanup-"


@dataclass
class CleanupReport:
    expired_operations: int = 0
    deleted_operations: int = 0
    stored_files_removed: int = 0
    failed_operations: int = 0
    job_workspaces_removed: int = 0
    upload_temp_files_removed: int = 0
    orphaned_folders_removed: int = 0
    expired_uploads_removed: int = 0
    orphaned_objects_removed: int = 0
    expired_sessions_cleared: bool = False

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def cleanup_run(*, now: datetime | None = None, limit: int = DEFAULT_LIMIT) -> CleanupReport:
    """One retention pass; see the module docstring. Returns what it removed.

    ``limit`` bounds the operations handled per run so that one run fits its job timeout; the
    rest waits for the next run. Operations whose files could not be removed are counted in
    ``failed_operations`` and stay as they were, to be tried again.
    """
    now = now or timezone.now()
    report = CleanupReport()
    storage = get_storage()
    _remove_operation_files(storage=storage, now=now, limit=limit, report=report)
    _remove_local_leftovers(now=now, report=report)
    if storage.name == "local":
        report.orphaned_folders_removed = _remove_orphaned_folders(
            root=Path(settings.STORAGE_ROOT), older_than=now - STORAGE_ORPHAN_AGE
        )
    else:
        report.orphaned_objects_removed = _remove_orphaned_objects(
            storage=storage, older_than=now - STORAGE_OBJECT_ORPHAN_AGE
        )
    report.expired_uploads_removed = upload_remove_expired(now=now, limit=limit)
    report.expired_sessions_cleared = _clear_expired_sessions()
    logger.info("Cleanup removed %s", report.as_dict())
    return report


def cleanup_local(*, now: datetime | None = None) -> CleanupReport:
    """This machine's own leftovers only: job workspaces and upload temp files. Every worker
    machine runs it at start and hourly (``sweeper``), since ``cleanup_run`` reaches only the
    machine that runs it."""
    report = CleanupReport()
    _remove_local_leftovers(now=now or timezone.now(), report=report)
    if report.job_workspaces_removed or report.upload_temp_files_removed:
        logger.info("Local cleanup removed %s", report.as_dict())
    return report


def cleanup_upload_temp_at_start(*, now: datetime | None = None) -> int:
    """Upload temp files a killed web process left on this machine; returns how many were removed.

    Each web worker runs it as it starts (``config/gunicorn.py``): a web-only machine has no sweeper.
    A request spools its body into an unnamed file (nothing can be left), but Django keeps a large
    upload's file part in a named temp file (and the inspection a small one's copy) while the
    request runs: a process killed meanwhile leaves it. Such a file is removed once no process on
    this machine holds it open and it is ``UNHELD_UPLOAD_TEMP_AGE`` old; where open files cannot be
    listed (no ``/proc``), only once it is ``UPLOAD_TEMP_AGE`` old, as the sweeper does. The files are
    listed before the processes' open files are, so that a file created meanwhile is never taken.
    """
    now = now or timezone.now()
    root = Path(settings.FILE_UPLOAD_TEMP_DIR)
    if not root.is_dir():
        return 0
    candidates = [entry for entry in root.iterdir() if not entry.name.startswith(TRASH_PREFIX)]
    held = _files_held_open()
    older_than = now - (UPLOAD_TEMP_AGE if held is None else UNHELD_UPLOAD_TEMP_AGE)
    removed = 0
    for entry in candidates:
        try:
            stat = entry.lstat()
        except FileNotFoundError:
            continue
        if not entry.is_file() or entry.is_symlink() or (stat.st_dev, stat.st_ino) in (held or ()):
            continue
        if _is_old(entry, older_than) and _claim_and_remove(entry):
            logger.info("Removed %s, left by a killed request", entry)
            removed += 1
    return removed


def _files_held_open() -> set[tuple[int, int]] | None:
    """(device, inode) of every file a process on this machine holds open, from ``/proc``; ``None``
    where there is no ``/proc``. Processes whose descriptors cannot be read (another user's) are
    passed over: the upload temp directory is this deployment's own."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held: set[tuple[int, int]] = set()
    for descriptors in proc.glob("[0-9]*/fd"):
        try:
            links = list(descriptors.iterdir())
        except OSError:
            continue  # exited meanwhile, or not ours to read
        for link in links:
            try:
                target = link.stat()  # the open file itself, deleted or not
            except OSError:
                continue
            held.add((target.st_dev, target.st_ino))
    return held


def _remove_local_leftovers(*, now: datetime, report: CleanupReport) -> None:
    # Files of this machine, judged by their modification times: this machine's clock.
    report.job_workspaces_removed = _remove_old_entries(
        jobs_temp_root(), older_than=now - _workspace_age(), directories=True
    )
    report.upload_temp_files_removed = _remove_old_entries(
        Path(settings.FILE_UPLOAD_TEMP_DIR), older_than=now - UPLOAD_TEMP_AGE, directories=False
    )


# --- operations -----------------------------------------------------------------------------------
def _removable(now: datetime) -> QuerySet[Operation]:
    """Finished operations that still have files recorded and whose time is up."""
    expired = Q(is_deleted=False, expires_at__lte=now)
    deleted = Q(is_deleted=True, deleted_at__lte=now - DELETED_GRACE)
    return Operation.objects.filter(expired | deleted, status__in=S.terminal()).filter(
        Exists(File.objects.filter(operation=OuterRef("pk")))
    )


def _remove_operation_files(*, storage: StorageBackend, now: datetime, limit: int, report: CleanupReport) -> None:
    candidates = list(_removable(now).order_by("expires_at").values_list("id", flat=True)[:limit])
    for operation_id in candidates:
        try:
            removed = _remove_files_of(operation_id=operation_id, storage=storage, now=now)
        except StorageError as e:
            # Rolled back: the files stay recorded and the next run tries again.
            logger.warning("Could not remove the files of operation %s: %s", operation_id, e)
            report.failed_operations += 1
            continue
        if removed is None:
            continue
        expired, files = removed
        report.stored_files_removed += files
        if expired:
            report.expired_operations += 1
        else:
            report.deleted_operations += 1


def _remove_files_of(*, operation_id: uuid.UUID, storage: StorageBackend, now: datetime) -> tuple[bool, int] | None:
    """(whether it expired rather than was deleted, files removed), or ``None`` when another run
    holds the operation or it no longer qualifies."""
    with transaction.atomic():
        # SKIP LOCKED: a concurrent run passes over the operation this one is working on; once
        # committed, its File rows are gone and it no longer qualifies.
        operation = _removable(now).filter(id=operation_id).select_for_update(skip_locked=True).first()
        if operation is None:
            return None
        files = list(operation.files.all())
        if not files:
            # A concurrent run committed while this one waited for the lock: PostgreSQL rechecks
            # the locked row but evaluates the EXISTS(files) condition on the old snapshot, so
            # the row can come back with its files already gone. Nothing left to remove.
            return None
        definition = OPERATIONS.get(operation.operation)
        for file in files:
            media_type = _media_type_of(file, definition.media_type if definition else MediaType.VIDEO)
            storage.delete(key=file.file_path, media_type=media_type)
            logger.info("Removed %s of operation %s", file.file_path, operation.id)
        File.objects.filter(id__in=[file.id for file in files]).delete()
        expired = not operation.is_deleted
        if expired:
            lifecycle.operation_mark_files_expired(operation_id=operation.id, now=now)
    return expired, len(files)


def _media_type_of(file: File, fallback: MediaType) -> MediaType:
    # The output of audio_extract is audio although the operation's input is video.
    family = file.mime_type.split("/", 1)[0]
    return MediaType(family) if family in MediaType.values else fallback


# --- orphans --------------------------------------------------------------------------------------
def _workspace_age() -> timedelta:
    longest = max(worker["timeout"] for worker in settings.WORKER_CONFIG.values())
    return timedelta(seconds=longest) + WORKSPACE_MARGIN


def _newest_mtime(path: Path) -> float:
    """The latest change anywhere under ``path``: a job still writing its output is not old."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for directory, subdirectories, files in os.walk(path):
            for name in (*subdirectories, *files):
                try:
                    newest = max(newest, (Path(directory) / name).lstat().st_mtime)
                except FileNotFoundError:
                    continue
    return newest


def _is_old(path: Path, older_than: datetime) -> bool:
    try:
        return _newest_mtime(path) < older_than.timestamp()
    except FileNotFoundError:
        return False


def _claim_and_remove(path: Path) -> bool:
    """Remove a directory or file that one run claims by renaming it; ``False`` if another run
    (or its owner) got there first."""
    trash = path.with_name(f"{TRASH_PREFIX}{uuid.uuid4().hex}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return False
    # Fresh, so that no other run takes it for the leftover of a killed run while it goes.
    os.utime(trash, follow_symlinks=False)
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)
    if trash.exists():
        logger.warning("Could not remove all of %s (was %s); the next run tries again", trash, path)
    return True


def _remove_old_entries(root: Path, *, older_than: datetime, directories: bool) -> int:
    """Entries of ``root`` (directories or files) last changed before ``older_than``."""
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        if entry.name.startswith(TRASH_PREFIX):
            _remove_stale_trash(entry, older_than)
            continue
        wanted = entry.is_dir() if directories else entry.is_file()
        if wanted and not entry.is_symlink() and _is_old(entry, older_than) and _claim_and_remove(entry):
            logger.info("Removed orphaned %s", entry)
            removed += 1
    return removed


def _remove_stale_trash(entry: Path, older_than: datetime) -> None:
    # What an earlier run claimed but could not finish removing (it was killed).
    if _is_old(entry, older_than):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _remove_orphaned_folders(*, root: Path, older_than: datetime) -> int:
    """Local storage folders ``uploads/<id>/`` and ``outputs/<id>/`` that no File row points into."""
    removed = 0
    for kind in ("uploads", "outputs"):
        folder = root / kind
        if not folder.is_dir():
            continue
        entries: dict[uuid.UUID, Path] = {}
        for entry in folder.iterdir():
            if entry.name.startswith(TRASH_PREFIX):
                _remove_stale_trash(entry, older_than)
                continue
            try:
                operation_id = uuid.UUID(entry.name)
            except ValueError:
                continue  # not ours: never touch what Konvrt did not name
            if entry.is_dir() and not entry.is_symlink() and _is_old(entry, older_than):
                entries[operation_id] = entry
        ids = list(entries)
        for start in range(0, len(ids), DEFAULT_LIMIT):
            batch = ids[start : start + DEFAULT_LIMIT]
            referenced = {
                path.split("/", 2)[1]
                for path in File.objects.filter(operation_id__in=batch, file_path__startswith=f"{kind}/").values_list(
                    "file_path", flat=True
                )
            }
            for operation_id in batch:
                if str(operation_id) not in referenced and _claim_and_remove(entries[operation_id]):
                    logger.info("Removed orphaned storage folder %s", entries[operation_id])
                    removed += 1
    return removed


def _remove_orphaned_objects(*, storage: StorageBackend, older_than: datetime) -> int:
    """Objects in shared storage that no File row names. Deleting is idempotent, so two runs at
    once (on two machines) at worst both delete the same object."""
    try:
        keys = list(storage.stored_keys(older_than=older_than))
    except StorageError as e:
        logger.warning("Could not list the stored objects to look for orphans: %s", e)
        return 0
    removed = 0
    for start in range(0, len(keys), DEFAULT_LIMIT):
        batch = keys[start : start + DEFAULT_LIMIT]
        referenced = set(File.objects.filter(file_path__in=batch).values_list("file_path", flat=True))
        for key in batch:
            if key in referenced:
                continue
            media_type = media_type_of(key.rsplit(".", 1)[-1]) or MediaType.VIDEO
            try:
                storage.delete(key=key, media_type=media_type)
            except StorageError as e:
                logger.warning("Could not remove the orphaned object %s: %s", key, e)
                continue
            logger.info("Removed orphaned stored object %s", key)
            removed += 1
    return removed


# --- sessions -------------------------------------------------------------------------------------
def _clear_expired_sessions() -> bool:
    """What ``manage.py clearsessions`` does, for the configured session engine."""
    engine = import_module(settings.SESSION_ENGINE)
    try:
        engine.SessionStore.clear_expired()
    except NotImplementedError:
        # Engines that expire sessions by themselves (cache, signed cookies).
        return False
    return True
