"""The storage integration: one interface for every place files can live.

Keys are generated from operation ids (``uploads/<operation id>/input.mp4``), never from a
client's filename. Every call that touches a stored object names its media type, so that a backend
never has to guess it (Cloudinary keeps images apart from video and audio) and never needs to know
which operations or formats exist. Backends: the local filesystem (``local.py``), Cloudinary
(``cloudinary.py``) and S3-compatible object storage (``s3.py``), chosen by ``STORAGE_BACKEND``
(``USE_CLOUDINARY=True`` selects Cloudinary too).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings
from django.core.files.base import File

from apps.processors.formats import MediaType

_EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")

# An upload as it can be handed to storage: an open binary file or a Django file (a client's
# upload) to read, or a local path.
UploadStream = BinaryIO | File
UploadSource = UploadStream | Path


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    url: str = ""
    public_id: str = ""


@dataclass(frozen=True)
class DownloadTarget:
    """Either a stream to send (local storage) or a URL to redirect to (object storage)."""

    stream: BinaryIO | None = None
    url: str = ""
    size: int | None = None


class StorageBackend(Protocol):
    name: str

    def save_upload(
        self, *, operation_id: uuid.UUID, source: UploadSource, extension: str, media_type: MediaType
    ) -> StoredObject:
        """Store a client's upload (an open file, a Django upload or a local path)."""

    def save_output(
        self,
        *,
        operation_id: uuid.UUID,
        local_path: Path,
        extension: str,
        media_type: MediaType,
        download_name: str = "",
    ) -> StoredObject:
        """Store a processed file from the worker's temp directory. ``download_name`` is the name
        the result is downloaded as; only Cloudinary keeps it in the key (see its module)."""

    def fetch_to_path(self, *, key: str, destination: Path, media_type: MediaType) -> Path:
        """Bring a stored object into a local file for processing; returns ``destination``."""

    def open_for_download(
        self, *, key: str, media_type: MediaType, download_name: str = "", mime_type: str = ""
    ) -> DownloadTarget:
        """What the download endpoint should send or redirect to. A URL (object storage) is signed,
        expires after ``DOWNLOAD_URL_TTL`` seconds and makes the browser save the file as
        ``download_name``."""

    def delete(self, *, key: str, media_type: MediaType) -> None:
        """Remove an object; removing one that is already gone is not an error."""

    def exists(self, *, key: str, media_type: MediaType) -> bool: ...

    def check(self) -> None:
        """Raise ``StorageError`` when the backend cannot be used (for the health check)."""

    def stored_keys(self, *, older_than: datetime) -> Iterator[str]:
        """Every key under ``uploads/`` and ``outputs/`` last written before ``older_than``: what
        the orphan sweep compares with the File rows. A backend that cannot list cheaply yields
        nothing."""


# The two roles a stored file has (the values of ``apps.operations.enums.FileType``).
INPUT, OUTPUT = "input", "output"


def object_key(*, operation_id: uuid.UUID, file_type: str, extension: str) -> str:
    """The storage key of an operation's input or output: generated, never client-chosen."""
    if not _EXTENSION.match(extension):
        raise ValueError(f"Refusing to build a storage key with extension {extension!r}.")
    if file_type not in (INPUT, OUTPUT):
        raise ValueError(f"Refusing to build a storage key for a {file_type!r} file.")
    folder = "uploads" if file_type == INPUT else "outputs"
    return f"{folder}/{uuid.UUID(str(operation_id))}/{file_type}.{extension}"


def storage_backend_name() -> str:
    """``local``, ``cloudinary`` or ``s3``: ``STORAGE_BACKEND``, with ``USE_CLOUDINARY`` on
    choosing Cloudinary as it always has."""
    return "cloudinary" if settings.USE_CLOUDINARY else settings.STORAGE_BACKEND


def get_storage() -> StorageBackend:
    """The configured backend. Cheap to build, and read from settings on every call so that a
    test's settings override takes effect."""
    name = storage_backend_name()
    if name == "cloudinary":
        from apps.storage.cloudinary import CloudinaryStorage

        return CloudinaryStorage()
    if name == "s3":
        from apps.storage.s3 import S3Storage

        return S3Storage()
    from apps.storage.local import LocalStorage

    return LocalStorage(root=Path(settings.STORAGE_ROOT))
