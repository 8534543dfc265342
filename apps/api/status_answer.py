"""A plain status poll's 200, answered without running Django's chain for it.

Once its reads are done in the event loop (apps/api/status_poll.py), a poll still went through
the whole of Django's chain to be answered: ten middlewares, the URL resolver, DRF's request,
content negotiation, permission and throttle checks, and the renderer. That was a third of a
poll's CPU, and polls are most of what the web tier serves. For the common poll (its status read,
its rate limit passed, JSON or anything accepted, no redirect due) all that chain does is add
headers to the rendered status, so ``StatusAnswerer`` does only that: it renders the envelope with
the API's renderer and has each middleware add its headers through the middleware's own request
and response hooks, in the chain's order.

Everything else is left to the chain, which stays the reference: a poll that is refused, not
found or failed; an ``Accept`` other than JSON or ``*/*`` (DRF negotiates it); a redirect or a
refusal by the security or common middleware; and any MIDDLEWARE or renderer list other than the
one this module was written against, so that adding a middleware turns this path off instead of
silently skipping it. tests/serving compares the two byte for byte.
"""

from __future__ import annotations

from typing import Any

from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.exceptions import DisallowedHost, PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

from apps.api.renderers import SafeJSONRenderer
from apps.api.status_poll import ReadAhead
from apps.api.utils import success_body
from apps.api.views import OperationViewSet
from apps.core.middleware import echo_session_key
from apps.operations.services.events import status_as_dict

# config/settings/base.py's MIDDLEWARE, whose effect on a plain poll's 200 StatusAnswerer makes;
# a copy on purpose: a change to the setting must turn this path off until this module follows.
# Those it does not call add nothing to it: WhiteNoise serves only static paths, and the
# session, authentication and message middlewares change a response only when the view used
# the session, the user or messages, which the status view does not.
MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.ApiSessionMiddleware",
)
# What DRF negotiates to the JSON renderer without parameters (an ``indent``, say, would change
# the body): no Accept header, anything, or JSON itself.
PLAIN_ACCEPT = frozenset({"", "*/*", "application/json"})
# DRF's Allow header for the status action: GET, the HEAD Django derives from it, and DRF's OPTIONS.
ALLOW = "GET, HEAD, OPTIONS"


def _unused_view(request: HttpRequest) -> Any:
    raise AssertionError("Only the middlewares' hooks are called.")


class StatusAnswerer:
    """Made with the handler's chain (``load_middleware``), so that the middlewares it calls read
    their settings when the chain's own instances do."""

    def __init__(self) -> None:
        self.enabled = tuple(settings.MIDDLEWARE) == MIDDLEWARE and list(OperationViewSet.renderer_classes) == [
            SafeJSONRenderer
        ]
        self.renderer = SafeJSONRenderer()
        self.security = SecurityMiddleware(_unused_view)
        self.cors = CorsMiddleware(_unused_view)
        self.common = CommonMiddleware(_unused_view)
        self.csrf = CsrfViewMiddleware(_unused_view)
        self.frame = XFrameOptionsMiddleware(_unused_view)

    def answer(self, request: HttpRequest, ahead: ReadAhead) -> HttpResponse | None:
        """The poll's 200 as the chain would make it, or None when the chain must answer."""
        if not self.enabled or ahead.status is None:  # refused, not found or failed
            return None
        if request.headers.get("Accept", "").strip() not in PLAIN_ACCEPT:
            return None
        try:
            if self.security.process_request(request) is not None or self.common.process_request(request) is not None:
                return None  # a redirect
        except (DisallowedHost, PermissionDenied):
            return None  # the chain's 400 or 403
        self.csrf.process_request(request)
        body = self.renderer.render(success_body(status_as_dict(ahead.status)), self.renderer.media_type)
        response = HttpResponse(body, content_type=self.renderer.media_type)
        response["Allow"] = ALLOW
        # The response hooks, innermost middleware first, as the chain calls them.
        echo_session_key(request, response)
        self.frame.process_response(request, response)
        self.csrf.process_response(request, response)
        self.common.process_response(request, response)
        self.cors.add_response_headers(request, response)
        self.security.process_response(request, response)
        return response
