"""Files on the local filesystem under STORAGE_ROOT: one machine, or a volume all machines share."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from django.core.files.move import file_move_safe
from django.core.files.uploadedfile import TemporaryUploadedFile

from apps.core.exceptions import StorageError
from apps.processors.formats import MediaType
from apps.storage.backend import INPUT, OUTPUT, DownloadTarget, StoredObject, UploadSource, UploadStream, object_key

COPY_CHUNK_SIZE = 1024 * 1024


class LocalStorage:
    name = "local"

    def __init__(self, *, root: Path) -> None:
        self.root = root.resolve()

    # --- the storage interface --------------------------------------------------------------
    def save_upload(
        self, *, operation_id: uuid.UUID, source: UploadSource, extension: str, media_type: MediaType
    ) -> StoredObject:
        key = object_key(operation_id=operation_id, file_type=INPUT, extension=extension)
        destination = self._path(key)
        if isinstance(source, TemporaryUploadedFile):
            # Large uploads already sit in a temp file on this filesystem: move, don't copy.
            self._prepare_directory(destination)
            file_move_safe(source.temporary_file_path(), str(destination), allow_overwrite=True)
        elif isinstance(source, Path):
            self._copy_file(source, destination)
        else:
            self._write_stream(source, destination)
        return StoredObject(key=key, size=destination.stat().st_size)

    def save_output(
        self,
        *,
        operation_id: uuid.UUID,
        local_path: Path,
        extension: str,
        media_type: MediaType,
        download_name: str = "",
    ) -> StoredObject:
        key = object_key(operation_id=operation_id, file_type=OUTPUT, extension=extension)
        destination = self._path(key)
        self._prepare_directory(destination)
        file_move_safe(str(local_path), str(destination), allow_overwrite=True)
        return StoredObject(key=key, size=destination.stat().st_size)

    def fetch_to_path(self, *, key: str, destination: Path, media_type: MediaType) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise StorageError("The stored input file is missing.", permanent=True)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A hard link costs nothing and the job still gets a file of its own to name.
            os.link(source, destination)
        except OSError:
            shutil.copyfile(source, destination)
        return destination

    def open_for_download(
        self, *, key: str, media_type: MediaType, download_name: str = "", mime_type: str = ""
    ) -> DownloadTarget:
        # Streamed by the web process, which names the download in its own headers.
        path = self._path(key)
        try:
            stream = path.open("rb")
        except FileNotFoundError as e:
            raise StorageError("The stored file is missing.", permanent=True) from e
        return DownloadTarget(stream=stream, size=path.stat().st_size)

    def delete(self, *, key: str, media_type: MediaType) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Remove the operation's folder once it is empty, never anything above it.
        try:
            path.parent.rmdir()
        except OSError:
            pass

    def exists(self, *, key: str, media_type: MediaType) -> bool:
        return self._path(key).is_file()

    def check(self) -> None:
        probe = self.root / "temp" / f".health-{uuid.uuid4().hex}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise StorageError(f"Local storage at {self.root} is not writable: {e.strerror}.") from e

    def stored_keys(self, *, older_than: datetime) -> Iterator[str]:
        # Local folders are swept by directory (cleanup claims each one by renaming it).
        return iter(())

    # --- helpers ----------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StorageError(f"Refusing a storage key outside the storage root: {key!r}.", permanent=True)
        return path

    @staticmethod
    def _prepare_directory(destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)

    def _write_stream(self, source: UploadStream, destination: Path) -> None:
        self._prepare_directory(destination)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as out:
                chunks = (
                    source.chunks(COPY_CHUNK_SIZE)
                    if hasattr(source, "chunks")
                    else iter(lambda: source.read(COPY_CHUNK_SIZE), b"")
                )
                for chunk in chunks:
                    out.write(chunk)
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)

    def _copy_file(self, source: Path, destination: Path) -> None:
        with source.open("rb") as stream:
            self._write_stream(stream, destination)
