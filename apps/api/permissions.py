"""Who may write: a browser's cookie session only from the site itself or an allowed frontend.

A session cookie is sent by the browser with any request to this site, whichever page made it;
SameSite=Lax keeps it off cross-site POSTs today, but not off requests from a sibling subdomain or
from browsers that do not enforce it. So a write (POST, PUT, PATCH, DELETE) that relies on the
cookie must come from an allowed origin: the ``Origin`` header (or, without it, the ``Referer``'s
origin) names this site's host or one of ``CORS_ALLOWED_ORIGINS`` / ``CSRF_TRUSTED_ORIGINS``.

Not checked, because no other site can forge them: requests carrying the session in the
``X-Session-Key`` header (a page elsewhere cannot read the key, and a custom header needs a CORS
preflight), requests without the session cookie (they act for no one), and requests naming no
origin at all (not a browser: every browser sends ``Origin`` on a cross-origin write).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from apps.core.exceptions import Forbidden


class CookieWritesFromAllowedOrigins(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if request.headers.get(settings.SESSION_HEADER_NAME, "").strip():
            return True
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return True
        origin = request.headers.get("Origin") or _origin_of(request.headers.get("Referer", ""))
        if not origin or _is_allowed(origin, request):
            return True
        raise Forbidden(
            "This request came from a page on another site, so it cannot act for your session. "
            "Use Konvrt from its own page, or send the session in the X-Session-Key header.",
            details={"origin": origin[:200]},
        )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _is_allowed(origin: str, request: Request) -> bool:
    allowed = {*settings.CORS_ALLOWED_ORIGINS, *getattr(settings, "CSRF_TRUSTED_ORIGINS", [])}
    if origin.rstrip("/") in {item.rstrip("/") for item in allowed}:
        return True
    # This site itself, by host: behind a TLS-terminating proxy the scheme Django sees may differ.
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.get_host().lower()
