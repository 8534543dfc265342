"""API views: thin adapters from HTTP to the selectors and services.

Each view validates its input with a serializer, makes one selector or service call and returns
the envelope. Errors are raised, not built here: ``apps.api.exceptions`` turns them into the
error envelope (the one exception is a degraded health report, which carries its checks along).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, OpenApiResponse, extend_schema
from prometheus_client.exposition import choose_encoder
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from apps.api import serializers as s
from apps.api.events import status_events, status_once
from apps.api.exceptions import error_body
from apps.api.pagination import EnvelopePagination
from apps.api.parsers import JSONBodyParser, UploadParser
from apps.api.ranges import ranged_file_response
from apps.api.schema import CREATE_REQUEST_ENCODING
from apps.api.status_poll import read_ahead_of
from apps.api.throttling import (
    DEFAULT_THROTTLES,
    HEALTH_THROTTLES,
    STATUS_THROTTLES,
    UPLOAD_THROTTLES,
    CountedWhenAcceptedThrottle,
)
from apps.api.utils import (
    IgnoreAcceptNegotiation,
    attachment_disposition,
    existing_session_key,
    session_key,
    success,
)
from apps.api.validators import IDEMPOTENCY_KEY_HEADER, validate_idempotency_key
from apps.core.exceptions import NotFound
from apps.operations import selectors
from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import operations_manager, uploads, webhooks
from apps.operations.services.events import status_as_dict
from apps.operations.services.health import run_health_checks
from apps.operations.services.metrics import metrics_registry
from apps.processors.presets import PRESETS
from apps.processors.registry import OPERATIONS


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "validation_error: a field or parameter is not valid (details per field).",
        403: "permission_denied: a cookie-session write from a page on another site.",
        404: "not_found: no such operation in this session.",
        409: "invalid_state: the operation is not in a state that allows this.",
        410: "expired: the files have expired or were deleted.",
        413: (
            "file_too_large: the upload is over the operation's limit; or quota_exceeded: the session's stored "
            "files would go over its quota (details.quota, details.used). Nothing was kept."
        ),
        415: "unsupported_media: the extension or the content is not accepted.",
        422: "idempotency_key_mismatch: the Idempotency-Key was used for a different request.",
        429: (
            "throttled: too many requests, or too many of the session's operations waiting or running; "
            "see the Retry-After header."
        ),
        503: "service_unavailable: a dependency is down; nothing half-done was left behind.",
    }
    return {code: OpenApiResponse(s.ErrorEnvelopeSerializer, description=descriptions[code]) for code in codes}


RETRY_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, description="On 429: seconds to wait.", response=[429]
)
OPERATION_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The operation's id.")


class OperationViewSet(viewsets.GenericViewSet):
    """A session's operations: upload, follow, download, retry, cancel, delete."""

    pagination_class = EnvelopePagination
    # multipart (a file, or an upload id / source_url as form fields), or a JSON body without a file.
    parser_classes = [UploadParser, FormParser, JSONBodyParser]
    serializer_class = s.OperationSerializer

    # What an accepted upload answers: a replayed create (200) or any refusal is not counted.
    UPLOAD_ACCEPTED = {"create": 201, "retry": 200}

    def get_throttles(self) -> list[BaseThrottle]:
        self._throttles_in_use: list[BaseThrottle]
        if self.action in self.UPLOAD_ACCEPTED:
            classes = UPLOAD_THROTTLES
        elif self.action in ("status", "events"):
            if (ahead := read_ahead_of(self.request)) is not None:
                # Already judged in the event loop (apps/api/status_poll.py).
                self._throttles_in_use = list(ahead.throttles)
                return self._throttles_in_use
            # A stream counts once, when it is opened, in the polling budget it replaces.
            classes = STATUS_THROTTLES
        else:
            classes = DEFAULT_THROTTLES
        self._throttles_in_use = [throttle() for throttle in classes]
        return self._throttles_in_use

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        accepted = self.UPLOAD_ACCEPTED.get(self.action or "")
        if accepted is not None and response.status_code != accepted:
            for throttle in getattr(self, "_throttles_in_use", []):
                if isinstance(throttle, CountedWhenAcceptedThrottle):
                    throttle.forget()
        return super().finalize_response(request, response, *args, **kwargs)

    def _operation(self, request: Request, pk: str) -> Operation:
        return selectors.operation_get(session_key=self._owner(request), operation_id=pk)

    @staticmethod
    def _owner(request: Request) -> str:
        """The session an operation must belong to; a caller without one owns none (and gets no
        new session for asking)."""
        key = existing_session_key(request)
        if key is None:
            raise NotFound(selectors.NOT_FOUND_MESSAGE)
        return key

    def _data(self, operation: Operation) -> dict:
        return s.OperationSerializer(operation, context=self.get_serializer_context()).data

    @extend_schema(
        summary="List the session's operations",
        parameters=[s.OperationListQuerySerializer, RETRY_AFTER],
        responses={200: s.OperationSerializer(many=True), **_errors(400, 404, 429)},
    )
    def list(self, request: Request) -> Response:
        filters = s.OperationListQuerySerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        operations = selectors.operation_list(session_key=session_key(request), **filters.validated_data)
        page = self.paginate_queryset(operations)
        return self.get_paginated_response(
            s.OperationSerializer(page, many=True, context=self.get_serializer_context()).data
        )

    @extend_schema(
        summary="Upload a file and start an operation",
        description=(
            "201 with the new operation, status `queued` (`pending` when the job queue is unreachable: the upload "
            "is kept and queued later). With an `Idempotency-Key` already used by this session in the last 24 "
            "hours: 200 with that earlier operation."
        ),
        request={
            "multipart/form-data": OpenApiRequest(s.OperationCreateSerializer, encoding=CREATE_REQUEST_ENCODING),
            "application/json": s.OperationCreateSerializer,
        },
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_KEY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Makes a retried upload safe: the same key returns the first operation.",
            ),
            RETRY_AFTER,
        ],
        responses={
            201: s.OperationEnvelope,
            200: OpenApiResponse(s.OperationEnvelope, description="The operation created earlier with this key."),
            **_errors(400, 403, 413, 415, 422, 429, 503),
        },
    )
    def create(self, request: Request) -> Response:
        idempotency_key = validate_idempotency_key(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        serializer = s.OperationCreateSerializer(
            data=request.data, context={"session_key": session_key(request), "idempotency_key": idempotency_key}
        )
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["public_base_url"] = request.build_absolute_uri("/") if data.get("webhook_url") else ""
        if "tus_upload" in data:
            result = uploads.operation_create_from_upload(
                session_key=session_key(request), idempotency_key=idempotency_key, upload=data.pop("tus_upload"), **data
            )
        elif "source_url" in data:
            result = uploads.operation_create_from_url(
                session_key=session_key(request), idempotency_key=idempotency_key, **data
            )
        else:
            result = operations_manager.operation_create(
                session_key=session_key(request), idempotency_key=idempotency_key, **data
            )
        if not result.created:
            return success(self._data(result.operation), message="This upload was already received.")
        message = (
            "Operation created and queued for processing."
            if result.operation.status == OperationStatus.QUEUED
            else "Operation created; it will be queued as soon as the job queue is reachable."
        )
        return success(self._data(result.operation), message=message, status=201)

    @extend_schema(
        summary="An operation in full",
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={200: s.OperationEnvelope, **_errors(404, 429)},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return success(self._data(self._operation(request, pk)))

    @extend_schema(
        summary="Delete an operation and its files",
        description="Cancels running work and removes the files; the id is 404 afterwards.",
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={200: s.OperationDeletedEnvelope, **_errors(403, 404, 429)},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        operations_manager.operation_delete(operation=self._operation(request, pk))
        return success(None, message="The operation and its files were deleted.")

    @extend_schema(
        summary="Small status object for polling",
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={200: s.OperationStatusEnvelope, **_errors(404, 429)},
    )
    @action(detail=True, methods=["get"])
    def status(self, request: Request, pk: str) -> Response:
        # The hot path of every client: the key the caller sent is matched against the operation's
        # own key in the one query, without loading the session first (a made-up key matches no
        # operation; a key is a 32-character secret either way). Saves a query on every poll.
        if (ahead := read_ahead_of(request)) is not None:
            info = ahead.result()  # read in the event loop (apps/api/status_poll.py)
        else:
            key = request.session.session_key
            if key is None:
                raise NotFound(selectors.NOT_FOUND_MESSAGE)
            info = selectors.operation_status(session_key=key, operation_id=pk)
        # The status object as the live stream sends it: OperationStatusSerializer describes it for
        # the schema, but building a serializer per poll cost more CPU than the rest of the view
        # after the query (its fields are deep-copied on every instance).
        return success(status_as_dict(info))

    @extend_schema(
        summary="Live status (Server-Sent Events)",
        description=(
            "A `text/event-stream`: an event `status` carrying the status object at once and on every change "
            "(at most about one a second), a comment line every 15 s, and the end after a terminal status. "
            "Counted once in the status_checks rate limit."
        ),
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={
            # Typeless, as for a download: the body is a stream of text events, not one JSON value.
            (200, "text/event-stream"): OpenApiResponse(
                {"description": "event: status / data: <the status object as JSON>, repeated."},
                description="The status stream.",
            ),
            **{(code, "application/json"): response for code, response in _errors(404, 429).items()},
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=IgnoreAcceptNegotiation)
    def events(self, request: Request, pk: str) -> HttpResponseBase:
        info = selectors.operation_status(session_key=session_key(request), operation_id=pk)
        if "wsgi.version" in request.META:
            # A WSGI server would give the stream a worker thread for its whole life: one status, then
            # the end (EventSource reconnects after its retry delay).
            stream: Iterator[bytes] | AsyncIterator[bytes] = status_once(status_as_dict(info))
        else:
            stream = status_events(session_key=session_key(request), operation_id=info.id)
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx and others: pass each event on at once
        return response

    @extend_schema(
        summary="The webhook delivery log",
        description="Every attempt to deliver the operation's webhook events, newest first.",
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={200: s.WebhookAttemptSerializer(many=True), **_errors(404, 429)},
    )
    @action(detail=True, methods=["get"])
    def webhooks(self, request: Request, pk: str) -> Response:
        attempts = selectors.webhook_attempts(operation=self._operation(request, pk))
        page = self.paginate_queryset(attempts)
        return self.get_paginated_response(s.WebhookAttemptSerializer(page, many=True).data)

    @extend_schema(
        summary="Deliver the latest webhook event again",
        description="Same webhook-id, a new attempt now (and retries after it as configured). 202.",
        request=None,
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={202: s.WebhookRedeliveryEnvelope, **_errors(404, 409, 429)},
    )
    @action(detail=True, methods=["post"], url_path="webhooks/redeliver")
    def redeliver(self, request: Request, pk: str) -> Response:
        event = webhooks.event_redeliver(operation=self._operation(request, pk))
        return success(
            {"event_id": str(event.id), "type": event.type},
            message="The event will be delivered again shortly.",
            status=202,
        )

    @extend_schema(
        summary="Download the result",
        description="Streams the file as an attachment (local storage) or redirects to it (Cloudinary).",
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={
            # Any bytes: under OpenAPI 3.1 a binary body is described by its media type, not a string type.
            (200, "*/*"): OpenApiResponse({"description": "The file's bytes."}, description="The result file."),
            302: OpenApiResponse(description="Redirect to the stored file."),
            **{(code, "application/json"): response for code, response in _errors(404, 409, 410, 429, 503).items()},
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=IgnoreAcceptNegotiation)
    def download(self, request: Request, pk: str) -> HttpResponseBase:
        download = operations_manager.operation_download(operation=self._operation(request, pk))
        if download.target.url:
            return HttpResponseRedirect(download.target.url)
        if download.target.stream is None:
            raise RuntimeError("The storage gave neither a stream nor a URL to download from.")
        response = ranged_file_response(
            request,
            stream=download.target.stream,
            size=download.target.size,
            content_type=download.mime_type,
            disposition=attachment_disposition(download.file_name),
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @extend_schema(
        summary="Retry a failed or cancelled operation",
        description="Queues it again with the same input; the id stays the same.",
        request=None,
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={200: s.OperationEnvelope, **_errors(403, 404, 409, 410, 429)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        operation = operations_manager.operation_retry(operation=self._operation(request, pk))
        return success(self._data(operation), message="The operation was queued again.")

    @extend_schema(
        summary="Cancel a pending, queued or processing operation",
        request=None,
        parameters=[OPERATION_ID, RETRY_AFTER],
        responses={200: s.OperationEnvelope, **_errors(403, 404, 409, 429)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        operation = operations_manager.operation_cancel(operation=self._operation(request, pk))
        return success(self._data(operation), message="The operation was cancelled.")


class OperationDefinitionListView(APIView):
    """The operations Konvrt offers, from the registry: formats, limits, parameter schema."""

    throttle_classes = DEFAULT_THROTTLES

    @extend_schema(
        operation_id="v1_operation_definitions_list",
        summary="Every operation on offer",
        parameters=[RETRY_AFTER],
        responses={200: s.OperationDefinitionListEnvelope, **_errors(429)},
    )
    def get(self, request: Request) -> Response:
        return success(s.OperationDefinitionSerializer(OPERATIONS.values(), many=True).data)


class OperationDefinitionDetailView(APIView):
    throttle_classes = DEFAULT_THROTTLES

    @extend_schema(
        operation_id="v1_operation_definitions_retrieve",
        summary="One operation, with its parameters' JSON Schema",
        parameters=[
            OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, enum=sorted(OPERATIONS)),
            RETRY_AFTER,
        ],
        responses={200: s.OperationDefinitionEnvelope, **_errors(404, 429)},
    )
    def get(self, request: Request, name: str) -> Response:
        definition = OPERATIONS.get(name)
        if definition is None:
            raise NotFound(f"There is no operation named {name!r}.")
        return success(s.OperationDefinitionSerializer(definition).data)


class PresetListView(APIView):
    """Operations with parameters chosen for a common goal; send a preset's name as `preset` on
    create."""

    throttle_classes = DEFAULT_THROTTLES

    @extend_schema(
        summary="Presets: an operation and its parameters for a common goal (Discord, email, podcast, ...)",
        parameters=[RETRY_AFTER],
        responses={200: s.PresetListEnvelope, **_errors(429)},
    )
    def get(self, request: Request) -> Response:
        return success(s.PresetSerializer(PRESETS.values(), many=True).data)


class VocabularyView(APIView):
    """The statuses and phases an operation goes through, with their labels and the actions each
    status allows, so that clients need not copy them."""

    throttle_classes = DEFAULT_THROTTLES

    @extend_schema(
        summary="Statuses and phases: labels, and which are terminal, cancellable, retryable",
        parameters=[RETRY_AFTER],
        responses={200: s.VocabularyEnvelope, **_errors(429)},
    )
    def get(self, request: Request) -> Response:
        return success(
            s.VocabularySerializer({"statuses": list(OperationStatus), "phases": list(ProcessingPhase)}).data
        )


class HealthView(APIView):
    throttle_classes = HEALTH_THROTTLES

    @extend_schema(
        summary="Whether the API's dependencies work",
        parameters=[RETRY_AFTER],
        responses={
            200: s.HealthEnvelope,
            503: OpenApiResponse(s.HealthEnvelope, description="degraded: at least one check failed."),
            **_errors(429),
        },
    )
    def get(self, request: Request) -> Response:
        checks = run_health_checks()
        failed = sorted(name for name, result in checks.items() if not result.ok)
        data = {
            "status": "degraded" if failed else "healthy",
            "checks": {name: asdict(result) for name, result in checks.items()},
        }
        if not failed:
            return success(data)
        # Degraded is still a report: the checks go along with the error, for monitors to read.
        message = f"Some dependencies are not working: {', '.join(failed)}."
        return Response({**error_body("service_unavailable", message, {"failed": failed}), "data": data}, status=503)


class QueuesView(APIView):
    throttle_classes = DEFAULT_THROTTLES

    @extend_schema(
        summary="Jobs and workers per queue",
        parameters=[RETRY_AFTER],
        responses={200: s.QueuesEnvelope, **_errors(429, 503)},
    )
    def get(self, request: Request) -> Response:
        return success(selectors.queue_statistics())


class SessionView(APIView):
    throttle_classes = DEFAULT_THROTTLES

    @extend_schema(
        summary="The caller's session and its operations by status",
        parameters=[RETRY_AFTER],
        responses={200: s.SessionEnvelope, **_errors(429)},
    )
    def get(self, request: Request) -> Response:
        return success(selectors.session_summary(session_key=session_key(request)))


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of the deployment's figures (docs/metrics.md): only with
    ``METRICS_TOKEN`` set and ``Authorization: Bearer <token>``; anything else is a 404, so that the
    endpoint's existence is not advertised."""
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Http404("Not found.")
    # The format the scraper asks for (Prometheus text, or OpenMetrics), as prometheus-client chooses.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(metrics_registry()), content_type=content_type)
