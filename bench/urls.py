"""Konvrt's URLs plus the baselines served by the same server: a bare Django JSON view (what the
status endpoint is compared with) and a bare upload sink (what receiving an upload is compared with)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from config.urls import handler400, handler404, handler500  # noqa: F401

UPLOAD_CHUNK = 256 * 1024


def bare_status(request: HttpRequest, pk: str) -> JsonResponse:
    """The status object's shape with nothing behind it: no session, no throttle, no query."""
    return JsonResponse(
        {
            "success": True,
            "data": {
                "id": pk,
                "status": "queued",
                "progress": 0,
                "eta_seconds": None,
                "error_message": None,
                "phase": None,
                "queue_position": 1,
                "waiting_reason": None,
            },
        }
    )


@csrf_exempt
def bare_upload(request: HttpRequest) -> JsonResponse:
    """Reads the request body and throws it away: the server's own receiving speed."""
    received = 0
    while chunk := request.read(UPLOAD_CHUNK):
        received += len(chunk)
    return JsonResponse({"success": True, "data": {"received": received}})


urlpatterns = [
    path("bench/status/<str:pk>/", bare_status),
    path("bench/upload/", bare_upload),
    path("", include("config.urls")),
]
