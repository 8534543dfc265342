"""Import from a URL: the worker's ``fetching`` phase for an operation created with ``source_url``.

The file is fetched through the outbound guard (``apps/core/outbound.py``: resolved once, the
checked address connected to, every redirect checked again), at most ``URL_IMPORT_MAX_REDIRECTS``
redirects, ``URL_IMPORT_TIMEOUT`` in all and a byte cap equal to the operation's size limit. Then
it goes through the same content checks as an upload, is stored as the operation's input and
recorded, and processing carries on as for any upload. Every failure ends the operation with a
sentence ("The server at example.com answered 404.").
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction
from django.utils.http import parse_header_parameters

from apps.core.exceptions import KonvrtError
from apps.core.outbound import OutboundFailed, OutboundRefused, OutboundResponse, outbound_request
from apps.core.utils import file_extension, sanitize_filename
from apps.operations.enums import FileType
from apps.operations.models import File, Operation
from apps.processors.exceptions import ProcessingError
from apps.processors.registry import OperationDefinition
from apps.processors.sniffing import inspect_upload
from apps.storage.backend import get_storage

logger = logging.getLogger(__name__)

USER_AGENT = "Konvrt URL import"


def operation_fetch_source(
    *, operation: Operation, definition: OperationDefinition, workspace: Path, deadline: float
) -> File:
    """Fetch ``operation.source_url`` into storage as the operation's input; returns its File row.
    Raises ``ProcessingError`` (permanent) with a sentence for the user when anything is wrong."""
    timeout = max(1.0, min(float(settings.URL_IMPORT_TIMEOUT), deadline - time.monotonic()))
    download = workspace / "download"
    try:
        with download.open("wb") as sink:
            response = outbound_request(
                "GET",
                operation.source_url,
                headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
                timeout=timeout,
                max_redirects=settings.URL_IMPORT_MAX_REDIRECTS,
                max_bytes=definition.max_file_size,
                sink=sink,
            )
    except (OutboundRefused, OutboundFailed) as e:
        raise ProcessingError(e.message, operator_detail=f"{operation.source_url}: {e!r}") from e
    if not 200 <= response.status < 300:
        raise ProcessingError(
            _refusal_sentence(response.host, response.status),
            operator_detail=f"{response.url}: {response.status} {response.body[:500]!r}",
        )
    if response.bytes_read == 0:
        raise ProcessingError(f"The server at {response.host} sent an empty file.")

    try:
        inspection = inspect_upload(path=download, definition=definition)
    except KonvrtError as e:
        # The same checks (and sentences) as an upload's, ending the operation instead of a 415.
        raise ProcessingError(e.message, operator_detail=f"{response.url}: {e!r}") from e

    file_name = _file_name(response, fallback_extension=inspection.extension)
    stored = get_storage().save_upload(
        operation_id=operation.id, source=download, extension=inspection.extension, media_type=definition.media_type
    )
    with transaction.atomic():
        input_file = File.objects.create(
            operation=operation,
            file_type=FileType.INPUT,
            file_path=stored.key,
            file_name=file_name,
            file_size=stored.size,
            mime_type=inspection.mime_type,
            cloudinary_public_id=stored.public_id,
            cloudinary_url=stored.url,
            metadata={**inspection.metadata, "container": inspection.container, "source_url": response.url},
        )
    logger.info("Fetched %s bytes for %s from %s", stored.size, operation.id, response.host)
    return input_file


def _file_name(response: OutboundResponse, *, fallback_extension: str) -> str:
    """The name from Content-Disposition (``filename*`` first), else the last segment of the URL
    path that answered; with the sniffed extension when it has none."""
    name = ""
    disposition = response.headers.get("content-disposition", "")
    if disposition:
        _kind, parameters = parse_header_parameters(disposition)
        name = parameters.get("filename*") or parameters.get("filename") or ""
    if not name:
        name = unquote(urlsplit(response.url).path.rstrip("/").rsplit("/", 1)[-1])
    name = sanitize_filename(name, fallback="")
    if not name:
        return f"download.{fallback_extension}"
    if not file_extension(name):
        return f"{name}.{fallback_extension}"
    return name


def _refusal_sentence(host: str, status: int) -> str:
    """What the user can do about a source that did not send the file: the bare number alone
    ("answered 403") leaves them guessing."""
    try:
        answered = f"{status} ({HTTPStatus(status).phrase.lower()})"
    except ValueError:
        answered = str(status)
    if status in (401, 403):
        advice = "The file must be downloadable without signing in: use a public or shared link."
    elif status in (404, 410):
        advice = "Check the address: the file is not there."
    elif status >= 500:
        advice = "That server has a problem; try again later."
    else:
        advice = "Check that the address leads straight to the file."
    return f"The server at {host} answered {answered} instead of the file. {advice}"
