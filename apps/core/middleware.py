"""Anonymous identity for API clients.

An API client is identified by a Django session. A browser on our own origin carries it in the
session cookie; a frontend on another domain (where third-party cookies are blocked) sends the key
in the ``X-Session-Key`` header instead. The header wins when both are present. The key is returned
in the same header on every API response that has one, so that clients can store it.

A new session is created only when a view that passed the throttles needs one
(``apps.api.utils.session_key``): an unknown path, a 405, a 429 or a health probe creates no row,
so that traffic which reaches nothing cannot fill the session table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.module_loading import import_string

API_PREFIX = "/api/v1/"
# Load balancers poll health; it never needs a session, so none is loaded for it either.
SESSIONLESS_PATHS = frozenset({"/api/v1/health/"})


def session_named_by(request: HttpRequest) -> SessionBase:
    """The session an API request names, not loaded: its ``X-Session-Key`` header when it sends one
    (even an invalid one: then it names none), else its session cookie (what SessionMiddleware
    reads)."""
    header_key = request.headers.get(settings.SESSION_HEADER_NAME, "").strip()
    store = session_store(settings.SESSION_ENGINE)
    return store(session_key=header_key or request.COOKIES.get(settings.SESSION_COOKIE_NAME))


@functools.cache
def session_store(engine: str) -> type[SessionBase]:
    """The SessionStore class of a session engine (imported once: the status poll names one per request)."""
    store: type[SessionBase] = import_string(f"{engine}.SessionStore")
    return store


def echo_session_key(request: HttpRequest, response: HttpResponseBase) -> None:
    """Return the request's session key in the response's ``X-Session-Key`` header, if it has one.

    Read after the view, which may have created the session (or rotated its key). A view that
    loaded the session has dropped a key that is unknown or expired, so a made-up key never becomes
    an identity that someone else could guess into. Views that need no session (and the status
    poll, which matches the key against its operation without loading the session) echo the key
    as it was sent."""
    session_key = request.session.session_key
    if session_key is not None:
        response[settings.SESSION_HEADER_NAME] = session_key


class ApiSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header_name = settings.SESSION_HEADER_NAME

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self._is_api_request(request):
            return self.get_response(request)

        if request.headers.get(self.header_name, "").strip():
            request.session = session_named_by(request)

        response = self.get_response(request)
        echo_session_key(request, response)
        return response

    @staticmethod
    def _is_api_request(request: HttpRequest) -> bool:
        return request.path.startswith(API_PREFIX) and request.path not in SESSIONLESS_PATHS
