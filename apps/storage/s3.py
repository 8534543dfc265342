"""Files in an S3-compatible bucket (AWS S3, MinIO, R2, ...): shared storage for every machine.

Built on django-storages' ``S3Storage`` and boto3, never on hand-written signing: the keys are
Konvrt's own (``uploads/<operation id>/input.mp4``), the bucket stays private (no ACL is ever
set, so objects get the bucket's default: readable with the credentials only), files larger than
``S3_MULTIPART_THRESHOLD`` go up as a multipart upload through boto3's managed transfer, and
downloads redirect to a pre-signed GET that expires after ``DOWNLOAD_URL_TTL`` seconds and makes
the browser save the file under its download name.

Errors become ``StorageError`` as Cloudinary's do: retryable for timeouts, dropped connections,
throttling and the server's 5xx; permanent for a missing object or bucket, refused credentials
and any other refusal. botocore makes one attempt per call (its own retries are off), so that a
failing S3 costs a job one timeout and RQ's Retry waits long enough for it to recover.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.base import File
from storages.backends.s3 import S3Storage as DjangoS3Storage

from apps.core.exceptions import StorageError
from apps.core.utils import attachment_disposition
from apps.processors.formats import MediaType
from apps.storage.backend import (
    INPUT,
    OUTPUT,
    DownloadTarget,
    StoredObject,
    UploadSource,
    object_key,
)

logger = logging.getLogger(__name__)

MAX_CACHED_CONFIGURATIONS = 8
_storages: dict[tuple[object, ...], DjangoS3Storage] = {}
_storages_lock = threading.Lock()
# The health check must answer quickly even when the configured timeout is generous.
CHECK_TIMEOUT = 5
PREFIXES = ("uploads/", "outputs/")
# Error codes S3 (and MinIO, R2) send for a refusal that trying again will not change.
_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_REFUSED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AccountProblem",
    "AllAccessDisabled",
    "403",
}
_TEMPORARY = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "ServiceUnavailable", "InternalError", "Throttling"}
# What boto3 and botocore raise: the client's errors, the transfer manager's (which wrap them).
S3_ERRORS = (BotoCoreError, ClientError, Boto3Error)
_UNAVAILABLE = "S3 storage could not be reached or had a temporary problem; please try again shortly."


def _client_config(timeout: float) -> Config:
    return Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        # One attempt per call: the job's own retry (RQ Retry) waits long enough for S3 to recover.
        retries={"total_max_attempts": 1, "mode": "standard"},
        # A custom endpoint (MinIO, a local server) is addressed by path: its host name rarely has
        # the wildcard DNS that bucket subdomains need. AWS itself picks what suits the bucket.
        s3={"addressing_style": "path" if settings.AWS_S3_ENDPOINT_URL else "auto"},
        signature_version="s3v4",
    )


def s3_error(error: Exception, *, action: str, key: str) -> StorageError:
    """Classify a boto3/botocore failure (what ``upload_fileobj`` and friends raise)."""
    logger.warning("S3 %s of %s failed: %r", action, key, error)
    client_error = _client_error_of(error)
    if client_error is None:
        # BotoCoreError: timeouts, refused or dropped connections, a body cut short.
        return StorageError(_UNAVAILABLE, permanent=False)
    code = str(client_error.response.get("Error", {}).get("Code", ""))
    status = int(client_error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _MISSING or status in (404, 410):
        return StorageError("The stored file is missing from S3; it may have expired or been deleted.", permanent=True)
    if code in _TEMPORARY or status in (408, 429) or status >= 500:
        return StorageError(_UNAVAILABLE, permanent=False)
    if code in _REFUSED or status in (401, 403):
        return StorageError(
            "S3 refused the request: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy.",
            permanent=True,
        )
    return StorageError(f"S3 refused the request ({code or status}).", permanent=True)


def _client_error_of(error: BaseException) -> ClientError | None:
    """The ClientError behind ``error``: boto3's transfer manager wraps some in its own classes."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ClientError):
            return seen
        seen = getattr(seen, "last_exception", None) or seen.__cause__ or seen.__context__
    return None


class S3Storage:
    name = "s3"

    def __init__(self) -> None:
        self.timeout = settings.S3_TIMEOUT
        self.bucket_name = settings.AWS_STORAGE_BUCKET_NAME
        self._s3 = self._django_storage(self.timeout)

    @staticmethod
    def _django_storage(timeout: float) -> DjangoS3Storage:
        """One django-storages S3Storage per configuration and process: building boto3's session
        and client loads the service model (a large part of a second), too much for every request.
        It keeps its connections per thread; a forked work-horse (another pid) builds its own, so
        no socket is shared across a fork."""
        key = (
            os.getpid(),
            timeout,
            settings.AWS_STORAGE_BUCKET_NAME,
            settings.AWS_S3_ENDPOINT_URL,
            settings.AWS_ACCESS_KEY_ID,
            settings.AWS_SECRET_ACCESS_KEY,
            settings.AWS_S3_REGION_NAME,
            settings.DOWNLOAD_URL_TTL,
            settings.S3_MULTIPART_THRESHOLD,
            settings.S3_MULTIPART_CHUNK_SIZE,
        )
        with _storages_lock:
            storage = _storages.get(key)
            if storage is None:
                if len(_storages) >= MAX_CACHED_CONFIGURATIONS:
                    _storages.clear()  # tests switch buckets; a deployment has one configuration
                storage = _storages[key] = S3Storage._new_django_storage(timeout)
        return storage

    @staticmethod
    def _new_django_storage(timeout: float) -> DjangoS3Storage:
        return DjangoS3Storage(
            bucket_name=settings.AWS_STORAGE_BUCKET_NAME,
            endpoint_url=settings.AWS_S3_ENDPOINT_URL,
            access_key=settings.AWS_ACCESS_KEY_ID,
            secret_key=settings.AWS_SECRET_ACCESS_KEY,
            region_name=settings.AWS_S3_REGION_NAME,
            # Private: no ACL on any object, links signed and short-lived.
            default_acl=None,
            querystring_auth=True,
            querystring_expire=settings.DOWNLOAD_URL_TTL,
            # The keys are generated and a retried job stores under the same one.
            file_overwrite=True,
            location="",
            client_config=_client_config(timeout),
            transfer_config=TransferConfig(
                multipart_threshold=settings.S3_MULTIPART_THRESHOLD,
                multipart_chunksize=settings.S3_MULTIPART_CHUNK_SIZE,
                # Like the client's: a broken download is the job's to retry, after RQ's delay.
                num_download_attempts=1,
            ),
        )

    # --- the storage interface --------------------------------------------------------------
    def save_upload(
        self, *, operation_id: uuid.UUID, source: UploadSource, extension: str, media_type: MediaType
    ) -> StoredObject:
        key = object_key(operation_id=operation_id, file_type=INPUT, extension=extension)
        if hasattr(source, "temporary_file_path"):
            # A large Django upload already sits in a temp file: boto3 reads it from disk in parts.
            source = Path(source.temporary_file_path())
        return self._upload(key=key, source=source)

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
        stored = self._upload(key=key, source=local_path)
        # Same contract as LocalStorage, which moves the file: the worker's copy is no longer needed.
        local_path.unlink(missing_ok=True)
        return stored

    def fetch_to_path(self, *, key: str, destination: Path, media_type: MediaType) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
        try:
            # boto3's managed transfer: large objects come down in ranged parts.
            self._s3.bucket.download_file(key, str(partial), Config=self._s3.transfer_config)
            partial.replace(destination)
        except S3_ERRORS as e:
            raise s3_error(e, action="download", key=key) from e
        finally:
            partial.unlink(missing_ok=True)
        return destination

    def open_for_download(
        self, *, key: str, media_type: MediaType, download_name: str = "", mime_type: str = ""
    ) -> DownloadTarget:
        parameters: dict[str, str] = {}
        if download_name:
            # Signed into the URL: S3 answers with this Content-Disposition, so the browser saves
            # holiday_compressed.mp4 rather than output.mp4.
            parameters["ResponseContentDisposition"] = attachment_disposition(download_name)
        if mime_type:
            parameters["ResponseContentType"] = mime_type
        try:
            url = self._s3.url(key, parameters=parameters, expire=settings.DOWNLOAD_URL_TTL)
        except S3_ERRORS as e:
            raise s3_error(e, action="signing", key=key) from e
        return DownloadTarget(url=url)

    def delete(self, *, key: str, media_type: MediaType) -> None:
        try:
            # django-storages treats a 404 as done; S3 itself answers 204 for a missing key.
            self._s3.delete(key)
        except S3_ERRORS as e:
            raise s3_error(e, action="delete", key=key) from e

    def exists(self, *, key: str, media_type: MediaType) -> bool:
        try:
            return bool(self._s3.exists(key))
        except S3_ERRORS as e:
            raise s3_error(e, action="lookup", key=key) from e

    def check(self) -> None:
        client = self._django_storage(min(self.timeout, CHECK_TIMEOUT)).connection.meta.client
        try:
            client.head_bucket(Bucket=self.bucket_name)
        except S3_ERRORS as e:
            error = s3_error(e, action="check", key=self.bucket_name or "")
            raise StorageError(f"S3 bucket {self.bucket_name!r} is not usable: {error.message}") from e

    def stored_keys(self, *, older_than: datetime) -> Iterator[str]:
        client = self._s3.connection.meta.client
        try:
            for prefix in PREFIXES:
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket_name, Prefix=prefix):
                    for entry in page.get("Contents", ()):
                        if entry["LastModified"] < older_than:
                            yield entry["Key"]
        except S3_ERRORS as e:
            raise s3_error(e, action="listing", key=self.bucket_name or "") from e

    # --- helpers ----------------------------------------------------------------------------
    def _upload(self, *, key: str, source: UploadSource) -> StoredObject:
        try:
            if isinstance(source, Path):
                with source.open("rb") as stream:
                    self._s3.save(key, File(stream, name=key))
            else:
                if hasattr(source, "seek"):
                    source.seek(0)
                self._s3.save(key, source if isinstance(source, File) else File(source, name=key))
            size = int(self._s3.size(key))
        except S3_ERRORS as e:
            raise s3_error(e, action="upload", key=key) from e
        except OSError as e:
            raise StorageError(f"Could not read the file to store: {e.strerror}.", permanent=True) from e
        return StoredObject(key=key, size=size)
