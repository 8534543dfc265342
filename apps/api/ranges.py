"""Byte ranges for local downloads (RFC 9110 §14), so that players can seek and downloads resume.

Django's FileResponse sends whole files only. This answers one ``bytes`` range with 206 and
``Content-Range``, an unsatisfiable one with 416 (``Content-Range: bytes */size``) in the error
envelope, and anything else (no Range, another unit, several ranges, a malformed header, an
``If-Range`` we cannot confirm, having no validators) with the whole file: the RFC lets a server
ignore a Range it does not serve. Every answer says ``Accept-Ranges: bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.http import FileResponse, HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from apps.api.exceptions import error_body

CHUNK_SIZE = 64 * 1024
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(Exception):
    pass


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of ``header`` within a file of ``size`` bytes; None to send the whole file;
    RangeNotSatisfiable when the range starts past the end (or asks for the last 0 bytes)."""
    if not header:
        return None
    match = _SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # another unit, several ranges or a malformed header: the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # "-N": the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as the RFC says
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, min(int(last), size - 1) if last else size - 1)


def ranged_file_response(
    request: HttpRequest, *, stream: BinaryIO, size: int | None, content_type: str, disposition: str
) -> HttpResponseBase:
    """The file as a 200, the requested range of it as a 206, or a 416 (ranges only when the size
    is known)."""
    # If-Range asks for the range only while the file is unchanged; with no validator to compare,
    # the whole file is the safe answer.
    header = None if "if-range" in request.headers or size is None else request.headers.get("Range")
    try:
        byte_range = requested_range(header, size or 0)
    except RangeNotSatisfiable:
        stream.close()
        message = f"The requested range is outside the file ({size} bytes)."
        refused = JsonResponse(error_body("range_not_satisfiable", message, {"size": size}), status=416)
        refused["Content-Range"] = f"bytes */{size}"
        refused["Accept-Ranges"] = "bytes"
        return refused
    response: StreamingHttpResponse
    if byte_range is None:
        response = FileResponse(stream, content_type=content_type)
    else:
        stream.seek(byte_range.start)
        response = StreamingHttpResponse(_read(stream, byte_range.length), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        response["Content-Length"] = str(byte_range.length)
    response["Content-Disposition"] = disposition
    response["Accept-Ranges"] = "bytes" if size is not None else "none"
    return response


def _read(stream: BinaryIO, length: int) -> Iterator[bytes]:
    """``length`` bytes from the stream's position, closing it when done (or when the response is
    closed early: the generator's close runs the ``finally``)."""
    try:
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        stream.close()
