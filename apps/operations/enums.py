"""The vocabularies of operations and files: statuses, phases and file roles (media types are the
formats catalog's, in ``apps.processors.formats``)."""

from __future__ import annotations

from django.db import models


class OperationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def terminal(cls) -> frozenset[OperationStatus]:
        return frozenset({cls.COMPLETED, cls.FAILED, cls.CANCELLED})

    @classmethod
    def active(cls) -> frozenset[OperationStatus]:
        return frozenset({cls.PENDING, cls.QUEUED, cls.PROCESSING})

    @classmethod
    def cancellable(cls) -> frozenset[OperationStatus]:
        """What its user may cancel: anything not finished."""
        return cls.active()

    @classmethod
    def retryable(cls) -> frozenset[OperationStatus]:
        """What its user may queue again with the same input."""
        return frozenset({cls.FAILED, cls.CANCELLED})


class ProcessingPhase(models.TextChoices):
    FETCHING = "fetching", "Fetching the input"
    PROBING = "probing", "Inspecting the input"
    PROCESSING = "processing", "Processing"
    STORING = "storing", "Storing the output"


class FileType(models.TextChoices):
    INPUT = "input", "Input"
    OUTPUT = "output", "Output"


class MediaType(models.TextChoices):
    VIDEO = "video", "Video"
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"


class WebhookEventType(models.TextChoices):
    COMPLETED = "operation.completed", "Operation completed"
    FAILED = "operation.failed", "Operation failed"
    CANCELLED = "operation.cancelled", "Operation cancelled"

    @classmethod
    def for_status(cls, status: str) -> WebhookEventType | None:
        """The event an operation reaching ``status`` sends, if any."""
        return {
            OperationStatus.COMPLETED: cls.COMPLETED,
            OperationStatus.FAILED: cls.FAILED,
            OperationStatus.CANCELLED: cls.CANCELLED,
        }.get(OperationStatus(status))


class WebhookState(models.TextChoices):
    PENDING = "pending", "Being delivered"
    DELIVERED = "delivered", "Delivered"
    GONE = "gone", "Refused for good (410)"
    FAILED = "failed", "Given up after every retry"


class WebhookOutcome(models.TextChoices):
    """What one delivery attempt got: a 2xx, another answer, or no answer at all."""

    DELIVERED = "delivered", "Answered 2xx"
    REJECTED = "rejected", "Answered with another status"
    UNREACHABLE = "unreachable", "No answer (refused, timed out, not allowed)"
