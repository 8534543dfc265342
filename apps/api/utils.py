"""Small helpers the API's views share: the success envelope, the caller's session, download headers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.utils import attachment_disposition

__all__ = ["IgnoreAcceptNegotiation", "attachment_disposition", "session_key", "success"]


def success(data: Any, *, message: str | None = None, status: int = 200) -> Response:
    """``{"success": true, "data": ..., "message": ...}``."""
    body: dict[str, Any] = {"success": True, "data": data}
    if message:
        body["message"] = message
    return Response(body, status=status)


def session_key(request: Request) -> str:
    """The caller's session key. ApiSessionMiddleware gives every API request a stored session."""
    key = request.session.session_key
    if key is None:
        raise ImproperlyConfigured("API views need ApiSessionMiddleware, which gives every API request a session.")
    return key


class IgnoreAcceptNegotiation(BaseContentNegotiation):
    """For downloads: the file is sent as what it is, whatever the Accept header asks for
    (``Accept: video/mp4`` must not be a 406); errors are still JSON."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))  # a view always has at least one renderer
        return renderer, renderer.media_type
