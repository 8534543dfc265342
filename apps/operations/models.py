"""Operations (one processing job each) and their input and output files."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from apps.operations.enums import (
    FileType,
    OperationStatus,
    ProcessingPhase,
    WebhookEventType,
    WebhookOutcome,
    WebhookState,
)

WEBHOOK_URL_MAX_LENGTH = 2048


class Operation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session_key = models.CharField(max_length=40)
    operation = models.CharField(max_length=50)
    status = models.CharField(max_length=20, choices=OperationStatus.choices, default=OperationStatus.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    parameters = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    is_deleted = models.BooleanField(default=False)

    # What the contract adds to the original's fields.
    phase = models.CharField(max_length=20, choices=ProcessingPhase.choices, blank=True, default="")
    job_id = models.CharField(max_length=100, blank=True, default="", help_text="The RQ job id of the current attempt.")
    attempt = models.PositiveIntegerField(
        default=0, help_text="Raised on every claim by a worker; a worker's writes apply only while it matches."
    )
    retry_count = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # NULL, not "", so that the unique constraint ignores operations created without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    metadata = models.JSONField(default=dict, blank=True, help_text="Operator details: FFmpeg stderr tail, timings.")
    # Import from a URL: the worker fetches the input from here (phase ``fetching``) before probing.
    source_url = models.CharField(max_length=2048, blank=True, default="")
    webhook_url = models.CharField(
        max_length=WEBHOOK_URL_MAX_LENGTH, blank=True, default="", help_text="Where its terminal events are POSTed."
    )
    public_base_url = models.CharField(
        max_length=300,
        blank=True,
        default="",
        help_text="The address it was created through, for absolute links in its events when PUBLIC_BASE_URL is unset.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # A session's operations, newest first (list, session summary).
            models.Index(fields=["session_key", "-created_at"], name="operation_session_recent"),
            # Sweeps: stuck or pending rows by status and age.
            models.Index(fields=["status", "created_at"], name="operation_status_created"),
            # Retention: expired rows that still hold files.
            models.Index(fields=["expires_at"], name="operation_expiry", condition=Q(is_deleted=False)),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["session_key", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="operation_unique_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="operation_progress_at_most_100"),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in OperationStatus.terminal()


class File(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="files")
    file_type = models.CharField(max_length=10, choices=FileType.choices)
    file_path = models.CharField(max_length=500, help_text="The storage key, generated from ids.")
    file_name = models.CharField(max_length=255, help_text="The client's original name, sanitised; data only.")
    file_size = models.BigIntegerField(default=0)
    mime_type = models.CharField(max_length=100, blank=True, default="")
    cloudinary_public_id = models.CharField(max_length=255, blank=True, default="")
    cloudinary_url = models.URLField(max_length=1000, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One input and at most one output per operation: a job processed twice still
            # leaves a single output.
            models.UniqueConstraint(fields=["operation", "file_type"], name="file_one_per_role"),
        ]

    def __str__(self) -> str:
        return f"{self.file_type} {self.file_name}"


class Upload(models.Model):
    """A resumable (tus) upload, unfinished or finished, that no operation has used yet.

    Its bytes live in a part file under the storage root (``tus/<id>``), so that any web process
    sharing that directory can continue it; the part file's size is the upload's offset, so no
    write of the body has to be mirrored here. Creating an operation with it consumes it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session_key = models.CharField(max_length=40)
    length = models.BigIntegerField(help_text="Upload-Length: the size the upload will have.")
    file_name = models.CharField(max_length=255, blank=True, default="", help_text="The filename metadata, sanitised.")
    metadata = models.JSONField(default=dict, blank=True, help_text="Upload-Metadata as the client sent it.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Unfinished or unused, it is removed after this.")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["session_key"], name="upload_session"),
            models.Index(fields=["expires_at"], name="upload_expiry"),
        ]

    def __str__(self) -> str:
        return f"upload {self.id} ({self.file_name or 'unnamed'}, {self.length} bytes)"


class WebhookEvent(models.Model):
    """One event to deliver (the outbox): written in the same transaction as the status change it
    reports, so that it exists exactly when the change does, and delivered by RQ jobs until it is
    answered with a 2xx or a 410, or its retries run out. The row, not Redis, is the truth: a lost
    job is found again by the webhook sweep through ``state`` and ``next_attempt_at``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="Its webhook-id.")
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=40, choices=WebhookEventType.choices)
    url = models.CharField(max_length=WEBHOOK_URL_MAX_LENGTH)
    body = models.TextField(help_text="The JSON body exactly as signed and sent on every attempt.")
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=20, choices=WebhookState.choices, default=WebhookState.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started (claimed), the last one included.")
    round_start = models.PositiveIntegerField(
        default=1,
        help_text="The first attempt of the current round (a redelivery starts a new one): retries count from it.",
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While pending: when the next attempt is due (while one runs, when it is given up as lost).",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweep: pending events whose attempt is overdue.
            models.Index(fields=["next_attempt_at"], name="webhook_event_due", condition=Q(state=WebhookState.PENDING)),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of an event and what came of it: the delivery log."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="attempt_log")
    attempt = models.PositiveIntegerField()
    url = models.CharField(max_length=WEBHOOK_URL_MAX_LENGTH)
    outcome = models.CharField(max_length=20, choices=WebhookOutcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    attempted_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-attempt"]
        constraints = [models.UniqueConstraint(fields=["event", "attempt"], name="webhook_attempt_once")]

    def __str__(self) -> str:
        return f"attempt {self.attempt} of {self.event_id}: {self.status_code or self.error}"
