"""Request validation and response shapes, including the envelopes the OpenAPI schema publishes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from apps.api.validators import validate_extension, validate_size
from apps.core.exceptions import Expired, NotFound, ValidationFailed
from apps.core.outbound import OutboundRefused, check_url
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import WEBHOOK_URL_MAX_LENGTH, File, Operation, Upload, WebhookAttempt
from apps.operations.selectors import operation_eta_seconds
from apps.operations.services import uploads
from apps.operations.services.webhooks import webhook_url_check
from apps.processors.formats import MediaType
from apps.processors.parameters import validate_parameters
from apps.processors.presets import PRESETS, Preset
from apps.processors.registry import OPERATIONS, OperationDefinition

# --- requests -------------------------------------------------------------------------------------
INPUT_FIELDS = ("file", "upload", "source_url")
ONE_INPUT_MESSAGE = "Send exactly one of file, upload (a finished tus upload) or source_url."
OPERATION_MISSING = "This field is required (or give a preset instead)."


class ParametersField(serializers.CharField):
    """A JSON object as text (a multipart form's part), or as an object in a JSON body."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, dict):
            return json.dumps(data)
        return super().to_internal_value(data)


class OperationCreateSerializer(serializers.Serializer):
    operation = serializers.CharField(
        required=False, help_text="The operation's name, e.g. video_compress. Required unless a preset is given."
    )
    preset = serializers.CharField(
        required=False,
        help_text="A preset's name (GET /presets/), instead of an operation; parameters given override the preset's.",
    )
    parameters = ParametersField(
        required=False,
        allow_blank=True,
        trim_whitespace=True,
        help_text='The parameters as a JSON object, e.g. {"quality": 23}. Omitted: the defaults.',
    )
    file = serializers.FileField(
        required=False, allow_empty_file=False, use_url=False, help_text="The media file to process."
    )
    upload = serializers.CharField(
        required=False,
        max_length=2048,
        help_text="Instead of file: the id (or URL) of a finished tus upload of this session; it is consumed.",
    )
    source_url = serializers.CharField(
        required=False,
        max_length=2048,
        help_text="Instead of file: an http(s) URL the worker fetches the input from.",
    )
    webhook_url = serializers.CharField(
        required=False,
        allow_blank=True,
        # Longer ones get the service's sentence rather than DRF's.
        max_length=WEBHOOK_URL_MAX_LENGTH * 2,
        help_text=(
            "Optional: an absolute http(s) URL that gets a signed POST (Standard Webhooks) when the operation "
            "completes, fails or is cancelled. Needs WEBHOOK_SECRET on the server."
        ),
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Every missing piece is reported at once: neither an operation nor a preset, and not
        # exactly one input (a request missing both the operation and its file hears about both).
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's own 400 for a body that is not an object
        given = [name for name in INPUT_FIELDS if data.get(name) not in (None, "")]
        operation_missing = not (data.get("operation") or data.get("preset"))
        errors: dict[str, Any] = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as e:
            errors = dict(e.detail) if isinstance(e.detail, dict) else {"non_field_errors": e.detail}
            value = {}
        if operation_missing:
            errors.setdefault("operation", [serializers.ErrorDetail(OPERATION_MISSING, code="required")])
        if len(given) != 1:
            for name in given or ["file"]:
                errors.setdefault(name, [ONE_INPUT_MESSAGE])
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_operation(self, value: str) -> OperationDefinition:
        definition = OPERATIONS.get(value)
        if definition is None:
            raise serializers.ValidationError(
                f"Unknown operation {value!r}. Available operations: {', '.join(sorted(OPERATIONS))}."
            )
        return definition

    def validate_preset(self, value: str) -> Preset:
        preset = PRESETS.get(value)
        if preset is None:
            raise serializers.ValidationError(f"Unknown preset {value!r}. Available presets: {', '.join(PRESETS)}.")
        return preset

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        definition: OperationDefinition | None = attrs.get("operation")
        preset: Preset | None = attrs.get("preset")
        given = _parse_json_object(attrs.get("parameters"))
        if preset is not None:
            if definition is not None:
                raise ValidationFailed(
                    "Give an operation or a preset, not both.",
                    details={
                        "preset": [f"The preset {preset.name!r} already says its operation ({preset.operation})."]
                    },
                )
            definition = preset.definition
            if isinstance(given, dict):
                given = preset.merged_parameters(given)
        if definition is None:
            raise ValidationFailed("Say which operation to run.", details={"operation": [OPERATION_MISSING]})
        attrs["parameters"] = validate_parameters(definition, given)
        webhook_url = attrs.get("webhook_url") or ""
        validated = {
            "definition": definition,
            "parameters": attrs["parameters"],
            "webhook_url": webhook_url_check(webhook_url) if webhook_url.strip() else "",
        }
        if attrs.get("upload"):
            return {**validated, "tus_upload": self._finished_upload(definition, attrs["upload"])}
        if attrs.get("source_url"):
            return {**validated, "source_url": _checked_source_url(attrs["source_url"])}
        upload = attrs["file"]
        validate_extension(definition=definition, file_name=upload.name or "")
        validate_size(size=upload.size, limit=definition.max_file_size)
        return {**validated, "upload": upload}

    def _finished_upload(self, definition: OperationDefinition, reference: str) -> Upload | None:
        """The session's tus upload named by its id or URL, checked like a direct upload's name and size."""
        upload_id = reference.strip().rstrip("/").rsplit("/", 1)[-1]
        try:
            upload = uploads.upload_get(session_key=self.context["session_key"], upload_id=upload_id)
        except (NotFound, Expired) as e:
            if uploads.upload_consumed_by_idempotent_create(
                session_key=self.context["session_key"], idempotency_key=self.context.get("idempotency_key")
            ):
                return None  # a retried create whose first attempt consumed the upload: it answers
            raise ValidationFailed(e.message, details={"upload": [e.message]}) from e
        validate_extension(definition=definition, file_name=upload.file_name)
        validate_size(size=upload.length, limit=definition.max_file_size)
        return upload


def _checked_source_url(url: str) -> str:
    try:
        return check_url(url).url
    except OutboundRefused as e:
        raise ValidationFailed(e.message, details={"source_url": [e.message]}) from e


def _parse_json_object(text: str | None) -> Any:
    if not text:
        return {}
    try:
        parsed = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ValidationFailed(
            "The parameters are not valid JSON.",
            details={"parameters": [f"Not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})."]},
        ) from e
    except (ValueError, RecursionError) as e:
        # An integer past Python's int-to-str digit limit, NaN/Infinity, or nesting deeper than the
        # decoder's recursion: no parameter of any operation looks like that.
        raise ValidationFailed(
            "The parameters are not valid JSON.",
            details={"parameters": [f"Not valid JSON: {_json_refusal(e)}"]},
        ) from e
    if parsed is None:
        # Omitting the field means the defaults; an explicit null is a mistake worth naming.
        raise ValidationFailed(
            "Parameters must be a JSON object.",
            details={"parameters": ['Expected a JSON object such as {"quality": 23}, or no parameters at all.']},
        )
    return parsed


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows.")


def _json_refusal(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "it is nested too deeply."
    if "digits" in str(error):
        return "a number has too many digits."
    return str(error)


class OperationListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=OperationStatus.choices, required=False, help_text="Only this status.")
    operation = serializers.ChoiceField(
        choices=sorted(OPERATIONS), required=False, help_text="Only operations of this kind."
    )

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads an empty query value of an optional field as "not given"; the schema (an enum)
        # says it is not a value, and so does the API: a 400 rather than a silently unfiltered list.
        blank = [name for name in self.fields.keys() if name in data and data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: ["Leave the filter out to list everything."] for name in blank})
        return super().to_internal_value(data)


# --- responses ------------------------------------------------------------------------------------
class FileSerializer(serializers.Serializer):
    file_name = serializers.CharField(help_text="The original name, sanitised.")
    file_size = serializers.IntegerField(help_text="Bytes.")
    mime_type = serializers.CharField()
    metadata = serializers.DictField(help_text="As probed: format, duration, width, height, codecs, bitrate, ...")


class OutputFileSerializer(FileSerializer):
    download_url = serializers.SerializerMethodField()

    def get_download_url(self, file: File) -> str:
        path = reverse("operation-download", args=[file.operation_id])
        request = self.context.get("request")
        if request is not None:
            return request.build_absolute_uri(path)
        base_url = self.context.get("base_url")
        return f"{base_url.rstrip('/')}{path}" if base_url else path


class OperationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    operation = serializers.CharField()
    status = serializers.ChoiceField(choices=OperationStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    parameters = serializers.DictField(help_text="As validated, with defaults filled in.")
    error_message = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    eta_seconds = serializers.SerializerMethodField()
    input_file = serializers.SerializerMethodField()
    output_file = serializers.SerializerMethodField()
    webhook_url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_webhook_url(self, operation: Operation) -> str | None:
        return operation.webhook_url or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error_message(self, operation: Operation) -> str | None:
        return operation.error_message or None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_eta_seconds(self, operation: Operation) -> int | None:
        return operation_eta_seconds(operation)

    @extend_schema_field(FileSerializer(allow_null=True))
    def get_input_file(self, operation: Operation) -> dict[str, Any] | None:
        file = _file_of(operation, FileType.INPUT)
        return FileSerializer(file).data if file is not None else None

    @extend_schema_field(OutputFileSerializer(allow_null=True))
    def get_output_file(self, operation: Operation) -> dict[str, Any] | None:
        file = _file_of(operation, FileType.OUTPUT)
        if file is None or operation.status != OperationStatus.COMPLETED:
            return None
        return OutputFileSerializer(file, context=self.context).data


def operation_payload(operation: Operation, base_url: str) -> dict[str, Any]:
    """The operation as ``GET /operations/{id}/`` shows it, outside a request: a webhook event's
    ``data``, with ``download_url`` made absolute from ``base_url`` when one is known."""
    return dict(OperationSerializer(operation, context={"base_url": base_url}).data)


def _file_of(operation: Operation, file_type: FileType) -> File | None:
    # Iterating the prefetched files costs no query; filter() would cost one per operation.
    return next((file for file in operation.files.all() if file.file_type == file_type), None)


class OperationStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=OperationStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    eta_seconds = serializers.IntegerField(allow_null=True, help_text="Seconds left, while processing.")
    error_message = serializers.CharField(allow_null=True)
    phase = serializers.ChoiceField(
        choices=ProcessingPhase.choices, allow_null=True, help_text="What a processing job is doing now."
    )
    queue_position = serializers.IntegerField(allow_null=True, help_text="While queued: 1 means next.")
    waiting_reason = serializers.CharField(allow_null=True, help_text="Why a waiting operation is not running.")


class WebhookAttemptSerializer(serializers.Serializer):
    event_id = serializers.UUIDField(help_text="The event's webhook-id, the same on every attempt.")
    type = serializers.CharField(source="event.type", help_text="operation.completed, .failed or .cancelled.")
    attempt = serializers.IntegerField(help_text="1 for the first POST of the event, then 2, 3, ...")
    url = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True, help_text="The receiver's answer; null when none came.")
    error = serializers.SerializerMethodField()
    duration_ms = serializers.IntegerField()
    attempted_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="Null once delivery has ended.")

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error(self, attempt: WebhookAttempt) -> str | None:
        return attempt.error or None


class OperationDefinitionSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField(help_text="A short name for people, e.g. Compress video.")
    media_type = serializers.ChoiceField(choices=MediaType.choices, help_text="The media type of the input.")
    description = serializers.CharField()
    queue = serializers.CharField(help_text="The RQ queue that runs it, e.g. video_queue.")
    input_formats = serializers.ListField(child=serializers.CharField())
    output_formats = serializers.ListField(child=serializers.CharField())
    max_file_size = serializers.IntegerField(help_text="The largest accepted upload, in bytes.")
    parameters = serializers.DictField(source="parameters_schema", help_text="A JSON Schema of the parameters.")


class PresetSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="What to send as `preset` on create, e.g. discord.")
    title = serializers.CharField(help_text="A short name for people, e.g. For Discord.")
    description = serializers.CharField()
    operation = serializers.CharField(help_text="The operation it runs.")
    parameters = serializers.DictField(help_text="The parameters it sets; parameters given on create override them.")


class StatusTermSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=OperationStatus.choices, source="value")
    # DRF takes declared fields off the class, so this "label" never meets Field.label; mypy cannot know.
    label = serializers.CharField(help_text="The status in words.")  # type: ignore[assignment]
    terminal = serializers.SerializerMethodField(help_text="Finished: it changes no more unless retried.")
    cancellable = serializers.SerializerMethodField(help_text="cancel/ is accepted in this status.")
    retryable = serializers.SerializerMethodField(
        help_text="retry/ is accepted in this status (410 once the files have expired)."
    )

    def get_terminal(self, status: OperationStatus) -> bool:
        return status in OperationStatus.terminal()

    def get_cancellable(self, status: OperationStatus) -> bool:
        return status in OperationStatus.cancellable()

    def get_retryable(self, status: OperationStatus) -> bool:
        return status in OperationStatus.retryable()


class PhaseTermSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=ProcessingPhase.choices, source="value")
    label = serializers.CharField(help_text="What a processing job is doing, in words.")  # type: ignore[assignment]


class VocabularySerializer(serializers.Serializer):
    """The words of the status object and what each status allows, from ``{"statuses":
    list(OperationStatus), "phases": list(ProcessingPhase)}``."""

    statuses = StatusTermSerializer(many=True, help_text="Every status, in the order of the lifecycle.")
    phases = PhaseTermSerializer(many=True, help_text="The phases of a processing job, in order.")


class HealthCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    error = serializers.CharField(allow_null=True)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded"])
    checks = serializers.DictField(
        child=HealthCheckSerializer(), help_text="database, redis, storage, and cloudinary when it is enabled."
    )


class QueueStatisticsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    started = serializers.IntegerField()
    finished = serializers.IntegerField()
    failed = serializers.IntegerField()
    scheduled = serializers.IntegerField(help_text="Jobs waiting for a retry.")
    deferred = serializers.IntegerField()
    workers = serializers.IntegerField(help_text="Workers listening on the queue.")


class SessionSerializer(serializers.Serializer):
    session_key = serializers.CharField(help_text="Send it back in the X-Session-Key header.")
    operations_total = serializers.IntegerField()
    operations_by_status = serializers.DictField(child=serializers.IntegerField())


# --- envelopes (for the schema; views build the same shapes through apps.api.utils) ---------------
class ErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=[
            "validation_error",
            "not_found",
            "method_not_allowed",
            "not_acceptable",
            "invalid_state",
            "expired",
            "file_too_large",
            "quota_exceeded",
            "unsupported_media",
            "idempotency_key_mismatch",
            "throttled",
            "permission_denied",
            "service_unavailable",
            "internal_error",
        ]
    )
    message = serializers.CharField(help_text="A sentence for the person using the client.")
    details = serializers.DictField(help_text="Per-field messages for validation errors; else extra facts.")


ErrorEnvelopeSerializer = inline_serializer(
    "ErrorEnvelope", {"success": serializers.BooleanField(), "error": ErrorSerializer()}
)


def envelope(name: str, data: serializers.Field) -> serializers.Serializer:
    """The success envelope around ``data``, as a named schema component."""
    return inline_serializer(
        name,
        {"success": serializers.BooleanField(), "data": data, "message": serializers.CharField(required=False)},
    )


OperationEnvelope = envelope("OperationEnvelope", OperationSerializer())
OperationStatusEnvelope = envelope("OperationStatusEnvelope", OperationStatusSerializer())
WebhookRedeliveryEnvelope = envelope(
    "WebhookRedeliveryEnvelope",
    inline_serializer("WebhookRedelivery", {"event_id": serializers.UUIDField(), "type": serializers.CharField()}),
)
OperationDeletedEnvelope = envelope("OperationDeletedEnvelope", serializers.DictField(allow_null=True))
OperationDefinitionEnvelope = envelope("OperationDefinitionEnvelope", OperationDefinitionSerializer())
OperationDefinitionListEnvelope = envelope("OperationDefinitionListEnvelope", OperationDefinitionSerializer(many=True))
PresetListEnvelope = envelope("PresetListEnvelope", PresetSerializer(many=True))
VocabularyEnvelope = envelope("VocabularyEnvelope", VocabularySerializer())
QueuesEnvelope = envelope("QueuesEnvelope", serializers.DictField(child=QueueStatisticsSerializer()))
SessionEnvelope = envelope("SessionEnvelope", SessionSerializer())
HealthEnvelope = inline_serializer(
    "HealthEnvelope",
    {
        "success": serializers.BooleanField(),
        "data": HealthSerializer(),
        "error": ErrorSerializer(required=False, help_text="Present when degraded (503)."),
    },
)
