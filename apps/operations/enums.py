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
