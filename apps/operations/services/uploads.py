"""Resumable uploads (tus 1.0.0) and operations created from them or from a URL.

Why our own tus server: the Django ones on offer (django-tus, drf-tus) keep upload state in the
cache or behind their own middleware, have no notion of an owner other than Django's user, and
lack creation-with-upload; ours is the part of the protocol Konvrt offers (core, creation,
creation-with-upload, termination, expiration, checksum), tested against the reference clients
(tuspy, tus-js-client).

State: an ``Upload`` row (owner, length, name, expiry, finished) and a part file under the storage
root (``tus/<id>``) whose size *is* the offset. Any web process that shares the storage root can
therefore continue an upload, and a request cut off midway keeps every byte it wrote (that is what
a client resumes from). One writer at a time per upload: an exclusive ``flock`` on the part file,
held for the length of one PATCH; a second writer gets 423 and its client retries.

Consuming: ``operation_create_from_upload`` hard-links the finished part into a temporary name
next to it and hands that to ``operation_create`` as an uploaded temp file (local storage renames
it into place, so a 500 MB upload is never copied), with the same content checks as a direct
upload. Only a created operation consumes the upload; a refused one (415, 503) leaves it usable.
"""

from __future__ import annotations

import base64
import binascii
import copy
import errno
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.core.exceptions import (
    Expired,
    FileTooLarge,
    InvalidState,
    KonvrtError,
    NotFound,
    StorageError,
    ValidationFailed,
)
from apps.core.utils import human_size, sanitize_filename
from apps.operations import selectors
from apps.operations.models import Operation, Upload
from apps.operations.services import quotas
from apps.operations.services.operations_manager import (
    IDEMPOTENCY_WINDOW_HOURS,
    OperationCreateResult,
    operation_create,
)
from apps.operations.services.queue_manager import enqueue_on_commit
from apps.processors.registry import OperationDefinition

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = ("creation", "creation-with-upload", "termination", "expiration", "checksum")
CHECKSUM_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
# Read from the request body a MB at a time: under ASGI each read waits on the event loop for that
# much of the body, so larger pieces mean fewer hops between threads (a 64 KB read cost 80 per 5 MB).
WRITE_CHUNK_SIZE = 1024 * 1024
METADATA_MAX_LENGTH = 4096


class UploadConflict(KonvrtError):
    status_code = 409
    default_code = "invalid_state"
    default_detail = "The upload is not at that offset."


class UploadLocked(KonvrtError):
    status_code = 423
    default_code = "locked"
    default_detail = "Another request is writing to this upload; try again in a moment."


class ChecksumMismatch(KonvrtError):
    status_code = 460
    default_code = "checksum_mismatch"
    default_detail = "The data does not match its Upload-Checksum; nothing of it was kept."


# --- where parts live ------------------------------------------------------------------------------
def parts_root() -> Path:
    return Path(settings.STORAGE_ROOT) / "tus"


def part_path(upload_id: uuid.UUID) -> Path:
    return parts_root() / str(uuid.UUID(str(upload_id)))


def upload_offset(upload: Upload) -> int:
    """How many bytes of the upload are stored (the part file's size)."""
    try:
        return part_path(upload.id).stat().st_size
    except FileNotFoundError as e:
        raise NotFound("This upload's data is no longer stored.") from e


# --- the protocol's pieces ----------------------------------------------------------------------------
def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be absent)."""
    if not header:
        return {}
    if len(header) > METADATA_MAX_LENGTH:
        raise ValidationFailed(f"Upload-Metadata is longer than {METADATA_MAX_LENGTH} characters.")
    metadata: dict[str, str] = {}
    for pair in header.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key or " " in encoded.strip() or key in metadata:
            raise ValidationFailed("Upload-Metadata is not valid: use comma-separated 'key base64value' pairs.")
        try:
            metadata[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8") if encoded else ""
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ValidationFailed(f"The Upload-Metadata value of {key!r} is not base64-encoded UTF-8.") from e
        if "\x00" in key or "\x00" in metadata[key]:
            raise ValidationFailed("Upload-Metadata must not contain NUL characters.")
    return metadata


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``, or None without one."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm.lower() not in CHECKSUM_ALGORITHMS:
        raise ValidationFailed(
            f"Upload-Checksum algorithm {algorithm!r} is not supported; use one of {', '.join(CHECKSUM_ALGORITHMS)}."
        )
    try:
        return algorithm.lower(), base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as e:
        raise ValidationFailed("The Upload-Checksum digest is not base64.") from e


# --- create, append, terminate --------------------------------------------------------------------------
def upload_create(*, session_key: str, length: int, metadata: dict[str, str], max_size: int) -> Upload:
    """A new empty upload of ``length`` bytes owned by the session. ``max_size`` is the limit the
    caller worked out (the largest operation limit for the file's extension). ``QuotaExceeded``
    when the session's stored files and other uploads leave no room for ``length`` more bytes."""
    if length > max_size:
        raise FileTooLarge(
            f"The file is larger than the {human_size(max_size)} Konvrt accepts.", details={"max_file_size": max_size}
        )
    upload = Upload(
        session_key=session_key,
        length=length,
        file_name=sanitize_filename(metadata.get("filename", ""), fallback=""),
        metadata=metadata,
        expires_at=timezone.now() + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS),
    )
    path = part_path(upload.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        # The whole declared length counts against the session's quota from now on (quotas.py says
        # why); checked under the session's lock, as a direct upload is, so that two creates racing
        # for the last room cannot both have it.
        quotas.session_lock(session_key=session_key)
        quotas.session_check_storage(session_key=session_key, incoming=length)
        path.touch(exist_ok=False)
        try:
            upload.save(force_insert=True)
        except Exception:
            path.unlink(missing_ok=True)
            raise
    if length == 0:
        _mark_completed(upload)
    return upload


def upload_get(*, session_key: str, upload_id: uuid.UUID | str) -> Upload:
    """The session's upload; 404 for another session's or an unknown one, 410 once expired."""
    return _unexpired(_stored_upload(session_key, upload_id))


def upload_find(*, session_key: str, upload_id: uuid.UUID | str) -> Upload:
    """``upload_get`` for the protocol's HEAD and PATCH, which a client repeats a hundred times
    for one upload: after the first, from this process's memory instead of the database.

    Sound because what they need of the row never changes once it is created (owner, length,
    name, metadata, expiry), and whether the upload still exists is the part file's to say: every
    removal (termination, use, expiry) deletes it, and HEAD and PATCH find it gone (404). What may
    change, ``completed_at``, is read from the database where it matters (``upload_get``, when an
    operation uses the upload). A copy, so that a request's changes stay its own.
    """
    return copy.copy(_unexpired(_remembered_upload(session_key, _upload_uuid(upload_id))))


def _upload_uuid(upload_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return uuid.UUID(str(upload_id))
    except ValueError as e:
        raise NotFound("There is no such upload in this session.") from e


def _stored_upload(session_key: str, upload_id: uuid.UUID | str) -> Upload:
    try:
        return Upload.objects.get(id=_upload_uuid(upload_id), session_key=session_key)
    except Upload.DoesNotExist as e:
        raise NotFound("There is no such upload in this session.") from e


# Only found uploads are remembered (an exception is not cached): an unknown id costs a query each time.
_remembered_upload = functools.lru_cache(maxsize=1024)(_stored_upload)


def _unexpired(upload: Upload) -> Upload:
    if upload.expires_at <= timezone.now():
        raise Expired("This upload has expired; start it again.")
    return upload


@contextmanager
def _locked_part(upload_id: uuid.UUID, *, mode: str, busy: KonvrtError) -> Iterator[IO[bytes]]:
    """The upload's part file, open and locked for this request alone: a PATCH writing to it and a
    create consuming it take the same lock, and ``busy`` is raised while another request holds it."""
    try:
        part = part_path(upload_id).open(mode)
    except FileNotFoundError as e:
        raise NotFound("This upload's data is no longer stored.") from e
    with part:
        try:
            fcntl.flock(part.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise busy from e
        yield part


def upload_append(
    *,
    upload: Upload,
    offset: int,
    stream: IO[bytes] | Any,
    content_length: int | None,
    checksum: tuple[str, bytes] | None = None,
) -> int:
    """Write the request body at ``offset`` (which must be the stored size); returns the new offset.

    A body cut off midway keeps what arrived (the client resumes from there), unless a checksum
    was given: then the whole body must arrive and match, or nothing of it is kept (460).
    """
    if upload.completed_at is not None and offset == upload.length and content_length in (0, None):
        return upload.length
    remaining = upload.length - offset
    if content_length is not None and content_length > remaining:
        raise FileTooLarge(
            f"This body of {content_length} bytes would go past the upload's length of {upload.length} bytes."
        )
    with _locked_part(upload.id, mode="r+b", busy=UploadLocked()) as part:
        stored = os.fstat(part.fileno()).st_size
        if offset != stored:
            raise UploadConflict(
                f"The upload is at byte {stored}, not {offset}; ask for its offset (HEAD) and continue from there.",
                details={"offset": stored},
            )
        part.seek(offset)
        _release_pooled_connection()
        digest = CHECKSUM_ALGORITHMS[checksum[0]]() if checksum else None
        wanted = remaining if content_length is None else content_length
        written = 0
        try:
            written = _copy_body(stream, part, wanted, digest)
            part.flush()
        except OSError as e:
            # Our side failed (a full disk): nothing of this body is kept, and the client may retry.
            part.seek(offset)
            part.truncate(offset)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageError("The server's disk is full; please try again later.") from e
            raise StorageError("The upload could not be stored; please try again.") from e
        except BaseException:
            if digest is not None:
                part.truncate(offset)  # an unverified body is not kept
            raise
        if digest is not None and (written != wanted or digest.digest() != checksum[1]):  # type: ignore[index]
            part.truncate(offset)
            raise ChecksumMismatch()
        new_offset = offset + written
        if new_offset == upload.length:
            # No fsync: a direct upload is not synced either, and forcing 500 MB out to disk here
            # would cost the last PATCH seconds; after a crash the client resumes from what is there.
            _mark_completed(upload)
    return new_offset


def _release_pooled_connection() -> None:
    """Hand the database connection back to the web tier's pool before the body is read: under
    ASGI the body arrives while the view reads it (config/asgi.py), and a slow client must not hold
    one of the pool's few connections for as long as it takes. Without a pool, or inside a
    transaction, the connection stays."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _copy_body(stream: IO[bytes] | Any, part: IO[bytes], wanted: int, digest: Any) -> int:
    written = 0
    while written < wanted:
        try:
            chunk = stream.read(min(WRITE_CHUNK_SIZE, wanted - written))
        except OSError as e:
            # The client went away midway: what arrived stays, to be resumed from.
            logger.info("Upload body cut off after %s bytes (%s)", written, e)
            break
        if not chunk:
            break
        _write(part, chunk)
        written += len(chunk)
        if digest is not None:
            digest.update(chunk)
    return written


def _write(part: IO[bytes], chunk: bytes) -> None:
    part.write(chunk)


def _mark_completed(upload: Upload) -> None:
    upload.completed_at = timezone.now()
    Upload.objects.filter(id=upload.id, completed_at__isnull=True).update(completed_at=upload.completed_at)


def upload_terminate(*, upload: Upload) -> None:
    """Termination: the upload and its bytes are gone; its URL is 404 from now on."""
    Upload.objects.filter(id=upload.id).delete()
    part_path(upload.id).unlink(missing_ok=True)


# --- consume --------------------------------------------------------------------------------------------
class _FinishedUpload(TemporaryUploadedFile):
    """A finished part, linked to a temporary name, as the uploaded temp file a direct upload
    would be (``operation_create`` inspects it in place and local storage renames it)."""

    def __init__(self, path: Path, name: str, size: int) -> None:
        # TemporaryUploadedFile.__init__ would make a new empty temp file; this one exists.
        UploadedFile.__init__(self, path.open("rb"), name, "application/octet-stream", size, None)
        self._path = path

    def temporary_file_path(self) -> str:
        return str(self._path)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def upload_consumed_by_idempotent_create(*, session_key: str, idempotency_key: str | None) -> bool:
    """Whether a create with this Idempotency-Key already happened (and so consumed its upload)."""
    return bool(idempotency_key) and _idempotent_match(session_key, idempotency_key) is not None


def _idempotent_match(session_key: str, idempotency_key: str | None) -> Operation | None:
    if not idempotency_key:
        return None
    return selectors.operation_by_idempotency_key(
        session_key=session_key, idempotency_key=idempotency_key, within_hours=IDEMPOTENCY_WINDOW_HOURS
    )


def operation_create_from_upload(
    *,
    session_key: str,
    upload: Upload | None,
    definition: OperationDefinition,
    parameters: dict[str, Any],
    idempotency_key: str | None = None,
    webhook_url: str = "",
    public_base_url: str = "",
) -> OperationCreateResult:
    """Create an operation whose input is a finished upload (already checked for name and size by
    the caller), with the same content checks as a direct upload, and consume the upload.
    ``upload`` is None for a retried create whose first attempt consumed it: that one answers."""
    if upload is None:
        existing = _idempotent_match(session_key, idempotency_key)
        if existing is None:
            raise NotFound("There is no such upload in this session.")
        return OperationCreateResult(operation=existing, created=False)
    if upload.completed_at is None:
        offset = part_path(upload.id).stat().st_size if part_path(upload.id).exists() else 0
        raise ValidationFailed(
            f"This upload is not finished: {offset} of {upload.length} bytes have arrived.",
            details={"upload": [f"{offset} of {upload.length} bytes have arrived; finish it first."]},
        )
    source = part_path(upload.id)
    # One consumer at a time (the lock PATCH takes too), and only while the upload still exists:
    # two creates naming the same upload make one operation, not two.
    busy = InvalidState("This upload is being used by another request; try again in a moment.")
    with _locked_part(upload.id, mode="rb", busy=busy), transaction.atomic():
        # The upload's row goes in the transaction that records the operation: the quota then
        # counts its bytes once, as the new input, not also as the upload's reservation; and a
        # refused create (415, 503, an idempotent replay) rolls the row back, leaving it usable.
        if not Upload.objects.filter(id=upload.id).delete()[0]:
            raise ValidationFailed(
                "There is no such upload in this session.", details={"upload": ["It was used or removed meanwhile."]}
            )
        result = _create_from_part(
            source,
            upload,
            session_key,
            definition,
            parameters,
            idempotency_key,
            webhook_url=webhook_url,
            public_base_url=public_base_url,
        )
        if not result.created:
            transaction.set_rollback(True)
    if result.created:
        source.unlink(missing_ok=True)
    return result


def _create_from_part(
    source: Path,
    upload: Upload,
    session_key: str,
    definition: OperationDefinition,
    parameters: dict[str, Any],
    idempotency_key: str | None,
    *,
    webhook_url: str = "",
    public_base_url: str = "",
) -> OperationCreateResult:
    link = source.with_name(f".{source.name}.{uuid.uuid4().hex}.consume")
    try:
        os.link(source, link)
    except OSError:
        shutil.copyfile(source, link)  # a filesystem without hard links
    finished = _FinishedUpload(link, upload.file_name or "upload", upload.length)
    try:
        return operation_create(
            session_key=session_key,
            definition=definition,
            parameters=parameters,
            upload=finished,
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            public_base_url=public_base_url,
        )
    finally:
        finished.close()
        link.unlink(missing_ok=True)


def operation_create_from_url(
    *,
    session_key: str,
    definition: OperationDefinition,
    parameters: dict[str, Any],
    source_url: str,
    idempotency_key: str | None = None,
    webhook_url: str = "",
    public_base_url: str = "",
) -> OperationCreateResult:
    """Record an operation whose input a worker fetches from ``source_url`` (already checked by the
    outbound guard) and queue it; the fetch, its limits and the content checks happen there."""
    existing = _idempotent_match(session_key, idempotency_key)
    if existing is not None:
        return OperationCreateResult(operation=existing, created=False)
    try:
        with transaction.atomic():
            # The same fairness as an upload's: the input's size is not known until the worker
            # fetches it, so only the active-operations limit and the bytes already stored count.
            quotas.session_lock(session_key=session_key)
            quotas.session_check_capacity(session_key=session_key, incoming=0)
            operation = Operation.objects.create(
                session_key=session_key,
                operation=definition.name,
                parameters=parameters,
                idempotency_key=idempotency_key,
                source_url=source_url,
                webhook_url=webhook_url,
                public_base_url=public_base_url if webhook_url else "",
            )
    except IntegrityError:
        existing = _idempotent_match(session_key, idempotency_key)
        if existing is None:
            raise
        return OperationCreateResult(operation=existing, created=False)
    enqueue_on_commit(operation_id=operation.id)
    operation.refresh_from_db()
    return OperationCreateResult(operation=operation, created=True)


# --- expiry ---------------------------------------------------------------------------------------------
def upload_remove_expired(*, now: datetime | None = None, limit: int = 500) -> int:
    """Remove expired uploads (finished or not, never used) and part files no row accounts for."""
    now = now or timezone.now()
    removed = 0
    for upload_id in list(Upload.objects.filter(expires_at__lte=now).values_list("id", flat=True)[:limit]):
        # The row goes first: a PATCH arriving now finds no upload instead of writing to a dying file.
        if Upload.objects.filter(id=upload_id, expires_at__lte=now).delete()[0]:
            part_path(upload_id).unlink(missing_ok=True)
            removed += 1
    root = parts_root()
    if root.is_dir():
        cutoff = (now - timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)).timestamp()
        for entry in root.iterdir():
            if not entry.is_file() or entry.stat().st_mtime > cutoff:
                continue
            name = entry.name.lstrip(".").split(".", 1)[0]
            try:
                known = Upload.objects.filter(id=uuid.UUID(name)).exists()
            except ValueError:
                continue  # not ours
            if not known or entry.name.endswith(".consume"):
                entry.unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.info("Removed %s expired uploads", removed)
    return removed
