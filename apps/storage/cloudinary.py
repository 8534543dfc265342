"""Files in Cloudinary: shared object storage for web and worker machines alike.

Storage keys map to public ids under ``CLOUDINARY_STORAGE``'s folders
(``uploads/<operation id>/input.mp4`` → ``mediaprocessor/uploads/<operation id>/input``), images
as resource type ``image`` and video and audio as ``video``. Konvrt does its own processing:
nothing here asks Cloudinary for a transformation, and files come back byte for byte from their
delivery URL.

Every asset is stored with the access type ``authenticated``: its delivery URL works only when
signed with the API secret, so neither an output's link nor a guess at a public id reaches a file.
Workers read through signed delivery URLs; a user's download is redirected to Cloudinary's
download API, signed, flagged as an attachment and expiring after ``DOWNLOAD_URL_TTL`` seconds.

That API names the attachment after the public id's last segment and the format, and takes no
other name (a named ``fl_attachment`` delivery URL expires only with token authentication, a paid
add-on). So an output's key, and its public id, end in its download name made safe rather than in
``output``: ``outputs/<operation id>/holiday_compressed.mp4``. The name is a slug (ASCII letters,
digits, ``_`` and ``-``, at most ``DOWNLOAD_SLUG_LENGTH``) of the name the worker derived, under the
generated per-operation prefix: the client's file name can shape that one leaf and nothing else (no
path, no other operation's folder, no input). Inputs stay ``uploads/<operation id>/input.<ext>``.

Errors become ``StorageError``: retryable for timeouts, refused connections, rate limits and
Cloudinary's own 5xx; permanent for a missing resource or a request Cloudinary refuses.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import certifi
import cloudinary
import cloudinary.api
import cloudinary.api_client.call_api
import cloudinary.exceptions
import cloudinary.uploader
import cloudinary.utils
import urllib3
from django.conf import settings

from apps.core.exceptions import StorageError
from apps.processors.formats import MediaType
from apps.storage.backend import INPUT, OUTPUT, DownloadTarget, StoredObject, UploadSource, UploadStream, object_key

logger = logging.getLogger(__name__)

DOWNLOAD_CHUNK_SIZE = 1024 * 1024
# The health check must answer quickly even when the configured timeout is generous.
CHECK_TIMEOUT = 5.0
# The access type of every stored asset: delivery needs a signature. Files stored before Konvrt 1.2
# are public "upload" assets; they are still found, fetched, downloaded and deleted.
ACCESS_TYPE = "authenticated"
LEGACY_ACCESS_TYPE = "upload"
LISTING_PAGE_SIZE = 500
DOWNLOAD_SLUG_LENGTH = 100
_KEY = re.compile(
    r"^(?:(?P<upload>uploads)|outputs)/"
    r"(?P<operation_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"/(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,%d})\.(?P<extension>[a-z0-9]{1,8})$" % (DOWNLOAD_SLUG_LENGTH - 1)
)
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
# Every request retries a refused connection at once, nothing else: a timeout or an error status
# is left to the job's own retry (RQ Retry), which waits long enough for Cloudinary to recover, and
# the health check answers within one timeout (urllib3's default would try a GET four times).
_RETRIES = urllib3.Retry(total=None, connect=2, read=0, status=0, other=0, redirect=5, backoff_factor=0.2)


@dataclass(frozen=True)
class CloudinaryLocation:
    public_id: str
    extension: str

    @property
    def filename(self) -> str:
        return f"{self.public_id.rsplit('/', 1)[-1]}.{self.extension}"


def public_id_for_key(key: str) -> CloudinaryLocation:
    """Where a storage key lives in Cloudinary. Only keys made by ``object_key`` are accepted."""
    match = _KEY.match(key)
    if match is None or (match["upload"] and match["name"] != INPUT):
        raise StorageError(f"Refusing a storage key that Konvrt did not generate: {key!r}.", permanent=True)
    folders = settings.CLOUDINARY_STORAGE
    folder = folders["UPLOADS_FOLDER"] if match["upload"] else folders["OUTPUTS_FOLDER"]
    parts = [folders["ROOT_FOLDER"].strip("/"), folder.strip("/"), match["operation_id"], match["name"]]
    return CloudinaryLocation(public_id="/".join(part for part in parts if part), extension=match["extension"])


def key_for_public_id(public_id: str, extension: str) -> str | None:
    """The storage key of a listed asset, or ``None`` for one Konvrt did not name."""
    folders = settings.CLOUDINARY_STORAGE
    for kind, folder in (("uploads", folders["UPLOADS_FOLDER"]), ("outputs", folders["OUTPUTS_FOLDER"])):
        prefix = "/".join(part.strip("/") for part in (folders["ROOT_FOLDER"], folder) if part.strip("/")) + "/"
        if public_id.startswith(prefix):
            key = f"{kind}/{public_id[len(prefix) :]}.{extension}"
            match = _KEY.match(key)
            return key if match and not (match["upload"] and match["name"] != INPUT) else None
    return None


def output_key(*, operation_id: uuid.UUID, extension: str, download_name: str) -> str:
    """An output's key, ending in a slug of its download name (``holiday_compressed.mp4`` →
    ``outputs/<operation id>/holiday_compressed.mp4``), ``output`` when nothing of it is left."""
    generated = object_key(operation_id=operation_id, file_type=OUTPUT, extension=extension)
    return f"{generated.rsplit('/', 1)[0]}/{download_slug(download_name)}.{extension}"


def download_slug(download_name: str) -> str:
    """The stem of ``download_name`` in ASCII letters, digits, ``_`` and ``-`` (accents dropped,
    anything else one ``_``), starting with a letter or digit, at most ``DOWNLOAD_SLUG_LENGTH``."""
    stem = download_name.rsplit("/", 1)[-1].rsplit(".", 1)[0] if "." in download_name else download_name
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("_", ascii_stem).lstrip("_-")[:DOWNLOAD_SLUG_LENGTH].rstrip("_-")
    return slug or OUTPUT


def resource_type_for(media_type: MediaType) -> str:
    # Cloudinary keeps audio with video; "raw" would lose the media handling of its delivery.
    return "image" if media_type == MediaType.IMAGE else "video"



# --- configuring the SDK --------------------------------------------------------------------------
# The SDK keeps one global configuration and module-level HTTP connectors. They are (re)built here
# whenever the settings change (tests switch endpoints), once per process otherwise.
_sdk_lock = threading.Lock()
_sdk_state: dict[str, Any] = {"fingerprint": None, "http": None}


def _configure_sdk() -> urllib3.PoolManager:
    fingerprint = (
        settings.CLOUDINARY_URL,
        tuple(sorted(settings.CLOUDINARY_CREDENTIALS.items())),
        settings.CLOUDINARY_CA_BUNDLE,
    )
    with _sdk_lock:
        if _sdk_state["fingerprint"] == fingerprint:
            return _sdk_state["http"]
        cloudinary.reset_config()
        config = cloudinary.config()
        if settings.CLOUDINARY_URL:
            # The SDK's own parser, the one it applies to the CLOUDINARY_URL environment variable:
            # query parameters (upload_prefix, secure_distribution, cname, api_proxy...) reach the
            # SDK exactly as written, and nothing below overrides them.
            config._load_from_url(settings.CLOUDINARY_URL)
        else:
            cloudinary.config(**settings.CLOUDINARY_CREDENTIALS)
        # The SDK pins certifi's CA bundle in connectors it builds at import time. Rebuild them with
        # the SDK's own factory (which honours api_proxy and keep-alive settings) and the configured
        # bundle, so REQUESTS_CA_BUNDLE / SSL_CERT_FILE apply to uploads, the Admin API and downloads.
        http = cloudinary.utils.get_http_connector(
            config,
            {
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": settings.CLOUDINARY_CA_BUNDLE or certifi.where(),
                "retries": _RETRIES,
            },
        )
        cloudinary.uploader._http = http
        cloudinary.api_client.call_api._http = http
        _sdk_state.update(fingerprint=fingerprint, http=http)
        return http


# --- errors ---------------------------------------------------------------------------------------
def _sdk_error(error: Exception, *, action: str, key: str) -> StorageError:
    """Classify an SDK exception by its class (the SDK maps HTTP statuses to classes)."""
    logger.warning("Cloudinary %s of %s failed: %r", action, key, error)
    if isinstance(error, cloudinary.exceptions.NotFound):
        return StorageError(
            "The stored file is missing from Cloudinary; it may have expired or been deleted.", permanent=True
        )
    if isinstance(error, cloudinary.exceptions.AuthorizationRequired | cloudinary.exceptions.NotAllowed):
        return StorageError(
            "Cloudinary refused the request: check the Cloudinary credentials and the account's limits.",
            permanent=True,
        )
    if isinstance(error, cloudinary.exceptions.BadRequest | cloudinary.exceptions.AlreadyExists):
        return StorageError(f"Cloudinary rejected the file: {error}", permanent=True)
    # RateLimited, GeneralError (Cloudinary's 5xx) and the base Error, which the SDK raises for
    # timeouts, refused connections and answers that are not JSON (a gateway's error page).
    return StorageError(
        "Cloudinary could not be reached or had a temporary problem; please try again shortly.", permanent=False
    )


def _status_error(status: int, *, action: str, key: str) -> StorageError:
    logger.warning("Cloudinary %s of %s answered HTTP %s", action, key, status)
    if status in (404, 410):
        return StorageError(
            "The stored file is missing from Cloudinary; it may have expired or been deleted.", permanent=True
        )
    if status in (408, 420, 429) or status >= 500:
        return StorageError(
            "Cloudinary could not be reached or had a temporary problem; please try again shortly.", permanent=False
        )
    return StorageError(f"Cloudinary refused to deliver the stored file (HTTP {status}).", permanent=True)


def _network_error(error: Exception, *, action: str, key: str) -> StorageError:
    logger.warning("Cloudinary %s of %s failed: %r", action, key, error)
    return StorageError(
        "Cloudinary could not be reached or had a temporary problem; please try again shortly.", permanent=False
    )


class _BorrowedStream:
    """A caller's stream handed to ``upload_large``, which closes what it reads; this one stays open."""

    def __init__(self, stream: UploadStream, name: str) -> None:
        self._stream = stream
        self.name = name

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def __enter__(self) -> _BorrowedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class CloudinaryStorage:
    name = "cloudinary"

    def __init__(self) -> None:
        self._http = _configure_sdk()
        self.timeout = settings.CLOUDINARY_TIMEOUT
        self.large_file_threshold = settings.CLOUDINARY_LARGE_FILE_THRESHOLD
        self.chunk_size = settings.CLOUDINARY_CHUNK_SIZE

    # --- the storage interface --------------------------------------------------------------
    def save_upload(
        self, *, operation_id: uuid.UUID, source: UploadSource, extension: str, media_type: MediaType
    ) -> StoredObject:
        key = object_key(operation_id=operation_id, file_type=INPUT, extension=extension)
        if hasattr(source, "temporary_file_path"):
            # A large Django upload already sits in a temp file: let the SDK read it from disk.
            source = Path(source.temporary_file_path())
        elif not isinstance(source, Path) and hasattr(source, "chunks"):
            # Django files are read from their start, as LocalStorage's chunks() does.
            source.seek(0)
        return self._upload(key=key, source=source, media_type=media_type)

    def save_output(
        self,
        *,
        operation_id: uuid.UUID,
        local_path: Path,
        extension: str,
        media_type: MediaType,
        download_name: str = "",
    ) -> StoredObject:
        key = output_key(operation_id=operation_id, extension=extension, download_name=download_name)
        stored = self._upload(key=key, source=local_path, media_type=media_type)
        # Same contract as LocalStorage, which moves the file: the worker's copy is no longer needed.
        local_path.unlink(missing_ok=True)
        return stored

    def fetch_to_path(self, *, key: str, destination: Path, media_type: MediaType) -> Path:
        location = public_id_for_key(key)
        resource_type = resource_type_for(media_type)
        destination.parent.mkdir(parents=True, exist_ok=True)
        access_type = self._access_type(location, resource_type=resource_type, key=key) or ACCESS_TYPE
        url = self._delivery_url(location, resource_type=resource_type, access_type=access_type)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
        try:
            response = self._http.request("GET", url, preload_content=False, timeout=self._timeout())
        except urllib3.exceptions.HTTPError as e:
            raise _network_error(e, action="download", key=key) from e
        finished = False
        try:
            if response.status != 200:
                raise _status_error(response.status, action="download", key=key)
            # Streamed to disk chunk by chunk; urllib3 raises if fewer bytes arrive than announced.
            with partial.open("wb") as out:
                for chunk in response.stream(DOWNLOAD_CHUNK_SIZE):
                    out.write(chunk)
            partial.replace(destination)
            finished = True
        except urllib3.exceptions.HTTPError as e:
            raise _network_error(e, action="download", key=key) from e
        finally:
            if not finished:
                # Unread bytes would be taken for the next answer on this connection: drop it.
                response.close()
            response.release_conn()
            partial.unlink(missing_ok=True)
        return destination

    def open_for_download(
        self, *, key: str, media_type: MediaType, download_name: str = "", mime_type: str = ""
    ) -> DownloadTarget:
        location = public_id_for_key(key)
        resource_type = resource_type_for(media_type)
        access_type = self._access_type(location, resource_type=resource_type, key=key)
        if access_type is None:
            raise StorageError(
                "The stored file is missing from Cloudinary; it may have expired or been deleted.", permanent=True
            )
        # Cloudinary's download API: signed with the API secret, valid until expires_at, and sent
        # with Content-Disposition: attachment. The one kind of Cloudinary link that expires
        # without token authentication (an add-on of the higher plans).
        url = cloudinary.utils.private_download_url(
            location.public_id,
            location.extension,
            resource_type=resource_type,
            type=access_type,
            expires_at=int(time.time()) + settings.DOWNLOAD_URL_TTL,
            attachment=True,
        )
        return DownloadTarget(url=url)

    def delete(self, *, key: str, media_type: MediaType) -> None:
        location = public_id_for_key(key)
        for access_type in (ACCESS_TYPE, LEGACY_ACCESS_TYPE):
            try:
                result = cloudinary.uploader.destroy(
                    location.public_id,
                    resource_type=resource_type_for(media_type),
                    type=access_type,
                    invalidate=True,
                    timeout=self.timeout,
                )
            except cloudinary.exceptions.Error as e:
                raise _sdk_error(e, action="delete", key=key) from e
            # "not found" is success too: deleting is idempotent (and a pre-1.2 file is "upload").
            if result.get("result") != "not found":
                if result.get("result") != "ok":
                    logger.warning("Cloudinary delete of %s answered %r", key, result)
                return

    def exists(self, *, key: str, media_type: MediaType) -> bool:
        location = public_id_for_key(key)
        return self._access_type(location, resource_type=resource_type_for(media_type), key=key) is not None

    def _access_type(self, location: CloudinaryLocation, *, resource_type: str, key: str) -> str | None:
        """The access type the asset is stored under (``authenticated``, or ``upload`` for a file
        stored before 1.2), by a HEAD of its signed delivery URL; ``None`` when it is not stored."""
        for access_type in (ACCESS_TYPE, LEGACY_ACCESS_TYPE):
            url = self._delivery_url(location, resource_type=resource_type, access_type=access_type)
            try:
                response = self._http.request("HEAD", url, timeout=self._timeout())
            except urllib3.exceptions.HTTPError as e:
                raise _network_error(e, action="lookup", key=key) from e
            if response.status == 200:
                return access_type
            if response.status not in (404, 410):
                raise _status_error(response.status, action="lookup", key=key)
        return None

    def check(self) -> None:
        try:
            cloudinary.api.ping(timeout=min(self.timeout, CHECK_TIMEOUT))
        except Exception as e:
            # The Admin API raises plain Exception for statuses it has no class for: any failure
            # here means Cloudinary cannot be used right now.
            logger.warning("Cloudinary ping failed: %r", e)
            raise StorageError(f"Cloudinary is not reachable: {e}") from e

    def stored_keys(self, *, older_than: datetime) -> Iterator[str]:
        """Konvrt's assets, listed by the Admin API per resource type and folder (a few calls an
        hour, well inside its rate limit)."""
        folders = settings.CLOUDINARY_STORAGE
        for resource_type in ("image", "video"):
            for folder in (folders["UPLOADS_FOLDER"], folders["OUTPUTS_FOLDER"]):
                prefix = "/".join(part.strip("/") for part in (folders["ROOT_FOLDER"], folder) if part.strip("/"))
                yield from self._listed_keys(resource_type=resource_type, prefix=f"{prefix}/", older_than=older_than)

    def _listed_keys(self, *, resource_type: str, prefix: str, older_than: datetime) -> Iterator[str]:
        cursor: str | None = None
        while True:
            options: dict[str, Any] = {"max_results": LISTING_PAGE_SIZE, "timeout": self.timeout}
            if cursor:
                options["next_cursor"] = cursor
            try:
                page = cloudinary.api.resources(resource_type=resource_type, type=ACCESS_TYPE, prefix=prefix, **options)
            except cloudinary.exceptions.Error as e:
                raise _sdk_error(e, action="listing", key=prefix) from e
            for resource in page.get("resources", ()):
                created = datetime.strptime(resource["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                key = key_for_public_id(resource["public_id"], resource.get("format", ""))
                if key is not None and created < older_than:
                    yield key
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # --- helpers ----------------------------------------------------------------------------
    def _timeout(self) -> urllib3.Timeout:
        return urllib3.Timeout(connect=self.timeout, read=self.timeout)

    def _delivery_url(
        self, location: CloudinaryLocation, *, resource_type: str, access_type: str = ACCESS_TYPE
    ) -> str:
        # The SDK's URL builder: host, private CDN, cname and secure_distribution come from the
        # configuration. The format is the one stored, so Cloudinary serves the original bytes;
        # signed, because an authenticated asset is delivered only to a signed URL. For workers
        # only: a user's download gets the expiring URL of open_for_download instead.
        url, _ = cloudinary.utils.cloudinary_url(
            location.public_id,
            resource_type=resource_type,
            type=access_type,
            format=location.extension,
            secure=True,
            sign_url=True,
        )
        return url

    def _upload(self, *, key: str, source: UploadSource, media_type: MediaType) -> StoredObject:
        location = public_id_for_key(key)
        size = source.stat().st_size if isinstance(source, Path) else _stream_size(source)
        options: dict[str, Any] = {
            # The full path as the public id rather than the `folder` parameter: the id is then the
            # same in fixed- and dynamic-folder accounts and in every chunk of a chunked upload, so
            # it can always be derived from the storage key.
            "public_id": location.public_id,
            "resource_type": resource_type_for(media_type),
            "type": ACCESS_TYPE,
            "overwrite": True,
            # A retried job uploads again under the same id: stale CDN copies must go.
            "invalidate": True,
            "filename": location.filename,
            "timeout": self.timeout,
        }
        try:
            if size > self.large_file_threshold:
                file = str(source) if isinstance(source, Path) else _BorrowedStream(source, location.filename)
                result = cloudinary.uploader.upload_large(file, chunk_size=self.chunk_size, **options)
            else:
                result = cloudinary.uploader.upload(source, **options)
        except cloudinary.exceptions.Error as e:
            raise _sdk_error(e, action="upload", key=key) from e
        except OSError as e:
            raise StorageError(f"Could not read the file to store: {e.strerror}.", permanent=True) from e
        if result.get("public_id") != location.public_id:
            logger.error("Cloudinary stored %s as %r instead of %r", key, result.get("public_id"), location.public_id)
        return StoredObject(
            key=key,
            size=int(result.get("bytes") or size),
            url=result.get("secure_url", ""),
            public_id=result.get("public_id", location.public_id),
        )


def _stream_size(stream: UploadStream) -> int:
    size = getattr(stream, "size", None)
    if isinstance(size, int):
        return size
    position = stream.tell()
    stream.seek(0, 2)
    end = stream.tell()
    stream.seek(position)
    return end - position
