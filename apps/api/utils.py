"""Small helpers the API's views share: the success envelope, the caller's session, download headers."""

from __future__ import annotations

import unicodedata
from typing import Any

from django.utils.http import content_disposition_header
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response


def success(data: Any, *, message: str | None = None, status: int = 200) -> Response:
    """``{"success": true, "data": ..., "message": ...}``."""
    body: dict[str, Any] = {"success": True, "data": data}
    if message:
        body["message"] = message
    return Response(body, status=status)


def session_key(request: Request) -> str:
    """The caller's session key. ApiSessionMiddleware gives every API request a stored session."""
    return request.session.session_key


class IgnoreAcceptNegotiation(BaseContentNegotiation):
    """For downloads: the file is sent as what it is, whatever the Accept header asks for
    (``Accept: video/mp4`` must not be a 406); errors are still JSON."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


def attachment_disposition(file_name: str) -> str:
    """RFC 6266 ``Content-Disposition`` for a download: a plain ASCII ``filename`` that every
    client reads and, when the real name is not ASCII, ``filename*`` with it in UTF-8 (Django
    sends only the latter, which some clients ignore)."""
    header = content_disposition_header(as_attachment=True, filename=file_name)
    if "filename*=" not in header:
        return header
    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_").strip() or "download"
    return f'attachment; filename="{ascii_name}"; {header.split("; ", 1)[1]}'
