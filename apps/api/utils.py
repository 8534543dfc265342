"""Small helpers the API's views share: the success envelope, the caller's session."""

from __future__ import annotations

from typing import Any

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
