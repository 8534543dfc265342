"""tus 1.0.0 at /api/v1/uploads/: thin adapters from the protocol's headers to the upload service.

Extensions: creation, creation-with-upload, termination, expiration, checksum (sha1, sha256,
md5). ``Tus-Max-Size`` is the largest operation limit (a file's own extension may lower it at
creation). Every response carries ``Tus-Resumable``; errors carry the error envelope as their body,
which tus clients ignore. The logic (and why it is ours) is in
``apps/operations/services/uploads.py``.
"""

from __future__ import annotations

import base64
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.urls import reverse
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from apps.api.throttling import DEFAULT_THROTTLES
from apps.api.utils import session_key
from apps.api.validators import largest_upload_limit, upload_limit_for
from apps.core.exceptions import KonvrtError, NotFound, ValidationFailed
from apps.operations.models import Upload
from apps.operations.services import uploads as service

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
OVERRIDABLE_METHODS = frozenset({"PATCH", "DELETE", "HEAD"})


class TusVersionMismatch(KonvrtError):
    status_code = 412
    default_code = "validation_error"
    default_detail = "This server speaks tus 1.0.0; send Tus-Resumable: 1.0.0."


class NotOffsetStream(KonvrtError):
    status_code = 415
    default_code = "unsupported_media"
    default_detail = f"Upload data must be sent as {OFFSET_CONTENT_TYPE}."


def _integer_header(request: Request, name: str) -> int:
    raw = request.headers.get(name)
    if raw is None or raw.strip() == "":
        raise ValidationFailed(f"The {name} header is missing.", details={name: ["This header is required."]})
    value = raw.strip()
    if not value.isdigit() or len(value) > 18:
        raise ValidationFailed(f"The {name} header must be a whole number of bytes.", details={name: [raw[:50]]})
    return int(value)


def _content_length(request: Request) -> int | None:
    raw = request.META.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.isdigit() else None


def _has_body(request: Request) -> bool:
    return (_content_length(request) or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _is_offset_stream(request: Request) -> bool:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() == OFFSET_CONTENT_TYPE


def _expires(upload: Upload) -> str:
    return http_date(upload.expires_at.timestamp())


def _encoded_metadata(upload: Upload) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" if value else key
        for key, value in upload.metadata.items()
    )


class TusView(APIView):
    """What the two tus resources share: the version check, method override and headers."""

    def get_throttles(self) -> list[BaseThrottle]:
        # Creating counts like any request; the PATCHes of one upload (a hundred for 500 MB in
        # 5 MB chunks) and its HEADs must not use up the per-minute budget of the whole API.
        return [throttle() for throttle in DEFAULT_THROTTLES] if self.request.method == "POST" else []

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        override = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
        if request.method == "POST" and override in OVERRIDABLE_METHODS:
            request.method = override  # for clients behind proxies that allow only GET and POST
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != service.TUS_VERSION:
            raise TusVersionMismatch()

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = service.TUS_VERSION
        if response.status_code == 412:
            response["Tus-Version"] = service.TUS_VERSION
        return response

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        return Response(
            status=204,
            headers={
                "Tus-Version": service.TUS_VERSION,
                "Tus-Extension": ",".join(service.TUS_EXTENSIONS),
                "Tus-Max-Size": str(largest_upload_limit()),
                "Tus-Checksum-Algorithm": ",".join(service.CHECKSUM_ALGORITHMS),
            },
        )

    def _upload_headers(self, upload: Upload, offset: int) -> dict[str, str]:
        return {"Upload-Offset": str(offset), "Upload-Expires": _expires(upload), "Cache-Control": "no-store"}

    def _append(self, request: Request, upload: Upload, offset: int) -> int:
        if not _is_offset_stream(request):
            raise NotOffsetStream()
        return service.upload_append(
            upload=upload,
            offset=offset,
            # Django's request itself rather than DRF's request.stream, which is None for a body
            # without Content-Length (Transfer-Encoding: chunked, as curl sends from a pipe).
            stream=request._request if _has_body(request) else None,
            content_length=_content_length(request) if _has_body(request) else 0,
            checksum=service.parse_checksum(request.headers.get("Upload-Checksum")),
        )


TUS_HEADERS = [
    OpenApiParameter("Tus-Resumable", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True, enum=["1.0.0"]),
]


class UploadCollectionView(TusView):
    """POST creates an upload (with its first bytes, when the body has any)."""

    @extend_schema(
        summary="Start a resumable (tus 1.0.0) upload",
        description=(
            "tus creation: `Upload-Length` (bytes) and `Upload-Metadata` (`filename <base64>`); with a body of "
            "`application/offset+octet-stream`, its first bytes too (creation-with-upload). 201 with `Location`."
        ),
        request={OFFSET_CONTENT_TYPE: OpenApiTypes.BINARY},
        parameters=[
            *TUS_HEADERS,
            OpenApiParameter("Upload-Length", OpenApiTypes.INT, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("Upload-Metadata", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={201: OpenApiResponse(description="Created; Location names the upload."), 413: None, 415: None},
    )
    def post(self, request: Request) -> Response:
        if request.headers.get("Upload-Defer-Length"):
            raise ValidationFailed("Upload-Defer-Length is not supported: send Upload-Length.")
        if request.headers.get("Upload-Concat"):
            raise ValidationFailed("Upload-Concat (the concatenation extension) is not supported.")
        length = _integer_header(request, "Upload-Length")
        metadata = service.parse_metadata(request.headers.get("Upload-Metadata"))
        filename = metadata.get("filename", "")
        upload = service.upload_create(
            session_key=session_key(request),
            length=length,
            metadata=metadata,
            max_size=upload_limit_for(filename) if filename else largest_upload_limit(),
        )
        # creation-with-upload: a body of upload data carries the first bytes (any other body is no data).
        offset = self._append(request, upload, 0) if _has_body(request) and _is_offset_stream(request) else 0
        location = request.build_absolute_uri(reverse("upload-detail", args=[upload.id]))
        return Response(status=201, headers={"Location": location, **self._upload_headers(upload, offset)})


class UploadDetailView(TusView):
    """HEAD tells the offset, PATCH appends, DELETE terminates."""

    def _upload(self, request: Request, upload_id: str, *, remembered: bool = True) -> Upload:
        # The key the caller sent is matched against the upload's own key, without loading the
        # session first (as the status poll does): a made-up key matches no upload, and a hundred
        # PATCHes of one upload save a hundred queries. No key, no upload (and no new session for
        # asking). HEAD and PATCH take the upload from the process's memory after the first time
        # (upload_find says why that is sound).
        key = request.session.session_key
        if key is None:
            raise NotFound("There is no such upload in this session.")
        if remembered:
            return service.upload_find(session_key=key, upload_id=upload_id)
        return service.upload_get(session_key=key, upload_id=upload_id)

    @extend_schema(exclude=True)
    def head(self, request: Request, upload_id: str) -> Response:
        upload = self._upload(request, upload_id)
        headers = {**self._upload_headers(upload, service.upload_offset(upload)), "Upload-Length": str(upload.length)}
        if upload.metadata:
            headers["Upload-Metadata"] = _encoded_metadata(upload)
        return Response(status=200, headers=headers)

    @extend_schema(
        summary="Append to a resumable upload (tus PATCH)",
        request={OFFSET_CONTENT_TYPE: OpenApiTypes.BINARY},
        parameters=[
            *TUS_HEADERS,
            OpenApiParameter("Upload-Offset", OpenApiTypes.INT, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("Upload-Checksum", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={204: OpenApiResponse(description="Stored; Upload-Offset is the new offset.")},
    )
    def patch(self, request: Request, upload_id: str) -> Response:
        upload = self._upload(request, upload_id)
        offset = _integer_header(request, "Upload-Offset")
        new_offset = self._append(request, upload, offset)
        return Response(status=204, headers=self._upload_headers(upload, new_offset))

    @extend_schema(
        summary="Abandon a resumable upload (tus termination)",
        parameters=TUS_HEADERS,
        request=None,
        responses={204: OpenApiResponse(description="The upload and its bytes are gone.")},
    )
    def delete(self, request: Request, upload_id: str) -> Response:
        service.upload_terminate(upload=self._upload(request, upload_id, remembered=False))
        return Response(status=204)
