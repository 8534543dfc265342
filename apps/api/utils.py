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

__all__ = [
    "IgnoreAcceptNegotiation",
    "attachment_disposition",
    "existing_session_key",
    "session_key",
    "success",
    "success_body",
]


def success(data: Any, *, message: str | None = None, status: int = 200) -> Response:
    """``{"success": true, "data": ..., "message": ...}``."""
    return Response(success_body(data, message=message), status=status)


def success_body(data: Any, *, message: str | None = None) -> dict[str, Any]:
    """The success envelope itself (what ``success`` answers with)."""
    body: dict[str, Any] = {"success": True, "data": data}
    if message:
        body["message"] = message
    return body


def session_key(request: Request) -> str:
    """The caller's session key, creating the session when the caller has none yet.

    Views call this only once the throttles have let the request through, so that refused and
    misdirected requests create no session (see apps/core/middleware.py)."""
    key = existing_session_key(request)
    if key is None:
        # create() stores it now so that the view can scope rows by its key; modified makes
        # SessionMiddleware send the cookie as well.
        request.session.create()
        request.session.modified = True
        key = request.session.session_key
    if key is None:
        raise ImproperlyConfigured("The session store did not create a session.")
    return key


def existing_session_key(request: Request) -> str | None:
    """The caller's session key when the request carries a valid one (cookie or header), else None.
    Loading the session drops a key that is unknown or expired."""
    session = request.session
    if session.session_key is None:
        return None
    session.keys()
    return session.session_key


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
