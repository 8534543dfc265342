"""One exception handler: every error of the API leaves in the error envelope.

    {"success": false, "error": {"code": "...", "message": "...", "details": {...}}}

Domain errors (``apps.core.exceptions``) carry their status and code; DRF's and Django's own
errors are mapped to the codes of the contract. Anything unexpected becomes a 500 with a plain
sentence, and the traceback only when DEBUG is on. The same envelope is used by the URL-level
handlers (unknown API paths, errors raised outside a view).
"""

from __future__ import annotations

import errno
import logging
import math
import traceback
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from apps.core.exceptions import KonvrtError

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "Something went wrong on our side. Please try again later."

# DRF's exceptions by the code of the contract they stand for.
_DRF_CODES: dict[type[exceptions.APIException], tuple[str, str]] = {
    exceptions.ValidationError: ("validation_error", "The request is not valid."),
    exceptions.ParseError: ("validation_error", "The request body could not be read."),
    exceptions.NotFound: ("not_found", ""),
    exceptions.MethodNotAllowed: ("method_not_allowed", ""),
    exceptions.NotAcceptable: ("not_acceptable", "The response cannot be given in the requested format."),
    exceptions.UnsupportedMediaType: ("unsupported_media", ""),
    exceptions.Throttled: ("throttled", ""),
    exceptions.PermissionDenied: ("permission_denied", "You are not allowed to do this."),
    exceptions.NotAuthenticated: ("permission_denied", "You are not allowed to do this."),
    exceptions.AuthenticationFailed: ("permission_denied", "You are not allowed to do this."),
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message, "details": details or {}}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: never returns None, so no error escapes as HTML."""
    set_rollback()
    if isinstance(exc, KonvrtError):
        if exc.status_code >= 500:
            logger.warning("%s: %s", type(exc).__name__, exc.message)
        return Response(
            error_body(exc.default_code, exc.message, exc.details), status=exc.status_code, headers=exc.headers
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("file_too_large", "The form fields of this request are too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # The disk filled while a request body was being received (an upload's temporary file,
        # which Django deletes as the request ends).
        logger.error("Out of disk space while receiving %s: %s", getattr(context.get("request"), "path", "?"), exc)
        return Response(
            error_body(
                "service_unavailable",
                "The server has run out of disk space, so this upload was not kept. Please try again later.",
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    elif isinstance(exc, SuspiciousOperation):
        # Too many fields or files, a malformed multipart body: the client's request is at fault.
        logger.info("Suspicious request rejected: %s", exc)
        return Response(error_body("validation_error", "The request is not valid."), status=400)
    if isinstance(exc, exceptions.APIException):
        return _drf_error(exc)
    return _unhandled(exc, context.get("request"))


def _drf_error(exc: exceptions.APIException) -> Response:
    code, message = next(
        (mapped for cls, mapped in _DRF_CODES.items() if isinstance(exc, cls)),
        (exc.default_code, ""),
    )
    headers: dict[str, str] = {}
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        details = _field_errors(exc.detail)
    elif isinstance(exc, exceptions.Throttled):
        # djangorestframework-stubs leave out Throttled.wait, which Throttled.__init__ sets.
        wait = max(1, math.ceil(exc.wait or 1))  # type: ignore[attr-defined]
        headers["Retry-After"] = str(wait)
        details = {"retry_after": wait}
        message = f"Too many requests. Please wait {wait} seconds and try again."
    return Response(error_body(code, message or str(exc.detail), details), status=exc.status_code, headers=headers)


def _field_errors(detail: Any) -> dict[str, Any]:
    """DRF's error detail as ``{field: [sentences]}``; errors not tied to a field go under
    ``non_field_errors``."""
    if isinstance(detail, dict):
        return {str(field): _messages(value) for field, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _messages(item) for key, item in value.items()}
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


def _unhandled(exc: Exception, request: Any) -> Response:
    path = getattr(request, "path", "?")
    logger.error("Unhandled error on %s", path, exc_info=exc)
    details: dict[str, Any] = {}
    if settings.DEBUG:
        details = {"exception": repr(exc), "traceback": traceback.format_exception(exc)}
    return Response(error_body("internal_error", INTERNAL_ERROR_MESSAGE, details), status=500)


# --- URL-level handlers (config/urls.py): errors that never reached a DRF view -------------------
def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


# Exempt: a POST or DELETE to a path that does not exist is a 404, not Django's HTML page about a
# missing CSRF cookie (the API's own views are exempt too: they use no cookie authentication).
@csrf_exempt
def unknown_endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The last route under /api/: an unknown path, with any method, is a 404 in the envelope, in
    DEBUG too."""
    message = f"There is no API endpoint at {request.path}. Every path ends with a slash."
    return JsonResponse(error_body("not_found", message), status=404)


def not_found(request: HttpRequest, exception: Exception) -> Any:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> Any:
    if _is_api(request):
        return JsonResponse(error_body("validation_error", "The request is not valid."), status=400)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> Any:
    if _is_api(request):
        return JsonResponse(error_body("internal_error", INTERNAL_ERROR_MESSAGE), status=500)
    return defaults.server_error(request)
