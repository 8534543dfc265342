"""Domain errors. API-facing ones carry an HTTP status and a stable code, like DRF's exceptions,
so that one exception handler can turn every one of them into the error envelope."""

from __future__ import annotations

from typing import Any


class KonvrtError(Exception):
    status_code = 500
    default_code = "internal_error"
    default_detail = "Something went wrong on our side."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_detail
        self.details = details or {}
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the error's response carries (Retry-After on a 429)."""
        return {}


class ValidationFailed(KonvrtError):
    status_code = 400
    default_code = "validation_error"
    default_detail = "The request is not valid."


class NotFound(KonvrtError):
    status_code = 404
    default_code = "not_found"
    default_detail = "Not found."


class InvalidState(KonvrtError):
    status_code = 409
    default_code = "invalid_state"
    default_detail = "The operation is not in a state that allows this."


class Expired(KonvrtError):
    status_code = 410
    default_code = "expired"
    default_detail = "The files of this operation have expired or been deleted."


class FileTooLarge(KonvrtError):
    status_code = 413
    default_code = "file_too_large"
    default_detail = "The file is larger than this operation accepts."


class UnsupportedMedia(KonvrtError):
    status_code = 415
    default_code = "unsupported_media"
    default_detail = "This file type is not supported for this operation."


class ServiceUnavailable(KonvrtError):
    status_code = 503
    default_code = "service_unavailable"
    default_detail = "A service Konvrt depends on is unavailable; please try again shortly."


class StorageError(KonvrtError):
    """A storage backend failed. ``permanent`` tells a job that trying again cannot help (a missing
    file, a refused key); otherwise (a timeout, a 5xx) it may."""

    status_code = 503
    default_code = "service_unavailable"
    default_detail = "File storage is unavailable; please try again shortly."

    def __init__(self, message: str | None = None, *, permanent: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permanent = permanent


class Throttled(KonvrtError):
    """Too much at once: the client should wait ``retry_after`` seconds (sent as Retry-After)."""

    status_code = 429
    default_code = "throttled"
    default_detail = "Too many requests. Please wait and try again."

    def __init__(self, message: str | None = None, *, retry_after: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "retry_after": retry_after})
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class QuotaExceeded(KonvrtError):
    status_code = 413
    default_code = "quota_exceeded"
    default_detail = "Your session stores as much as it may; delete some operations first."


class IdempotencyKeyMismatch(KonvrtError):
    """An Idempotency-Key reused for a different request (the IETF Idempotency-Key draft's 422)."""

    status_code = 422
    default_code = "idempotency_key_mismatch"
    default_detail = "This Idempotency-Key was already used for a different request."


class Forbidden(KonvrtError):
    status_code = 403
    default_code = "permission_denied"
    default_detail = "You are not allowed to do this."
