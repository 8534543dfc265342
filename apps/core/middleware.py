"""Anonymous identity for API clients.

Every API request gets a Django session. A browser on our own origin carries it in the session
cookie; a frontend on another domain (where third-party cookies are blocked) sends the key in the
``X-Session-Key`` header instead. The header wins when both are present. The key is returned in
the same header on every API response so that clients can store it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

API_PREFIX = "/api/v1/"
# Load balancers poll health; giving each probe a session row would fill the table for nothing.
SESSIONLESS_PATHS = frozenset({"/api/v1/health/"})


class ApiSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.session_store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
        self.header_name = settings.SESSION_HEADER_NAME

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self._is_api_request(request):
            return self.get_response(request)

        header_key = request.headers.get(self.header_name, "").strip()
        if header_key:
            request.session = self.session_store(session_key=header_key)
        # Loading drops a key that is unknown or expired, so a made-up key never becomes an
        # identity that someone else could guess into.
        request.session.keys()
        if not request.session.session_key:
            # Start a fresh session. create() stores it now so that the view can scope rows by
            # its key; modified makes SessionMiddleware send the cookie as well.
            request.session.create()
            request.session.modified = True

        response = self.get_response(request)
        # Read after the view, which could have rotated the key; a view that flushed the session
        # leaves none to hand back (no API view does either today).
        session_key = request.session.session_key
        if session_key is not None:
            response[self.header_name] = session_key
        return response

    @staticmethod
    def _is_api_request(request: HttpRequest) -> bool:
        return request.path.startswith(API_PREFIX) and request.path not in SESSIONLESS_PATHS
