"""Listing and reading operations: scoped to the caller's session, paginated, filtered, newest first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from tests.api.conftest import API, session_key_of

pytestmark = pytest.mark.django_db
S = OperationStatus


def test_list_is_the_sessions_operations_newest_first(client, make_operation):
    key = session_key_of(client)
    older = make_operation(key, status=S.COMPLETED)
    Operation.objects.filter(id=older.id).update(created_at=timezone.now() - timedelta(hours=1))
    newer = make_operation(key, status=S.QUEUED)
    make_operation(session_key_of(Client()), status=S.QUEUED)  # someone else's

    response = client.get(f"{API}/operations/")

    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["data"]] == [str(newer.id), str(older.id)]
    assert body["pagination"] == {
        "count": 2,
        "page": 1,
        "page_size": 20,
        "total_pages": 1,
        "next": None,
        "previous": None,
    }
    completed = body["data"][1]
    assert completed["output_file"]["download_url"] == f"http://testserver{API}/operations/{older.id}/download/"
    assert completed["output_file"]["mime_type"] == "video/mp4"
    assert body["data"][0]["output_file"] is None


def test_list_pages_and_caps_the_page_size(client):
    key = session_key_of(client)
    Operation.objects.bulk_create([Operation(session_key=key, operation="image_resize") for _ in range(5)])

    second = client.get(f"{API}/operations/", {"page": 2, "page_size": 2}).json()
    capped = client.get(f"{API}/operations/", {"page_size": 1000}).json()

    assert len(second["data"]) == 2
    assert second["pagination"]["total_pages"] == 3
    assert second["pagination"]["next"].endswith("page=3&page_size=2")
    assert second["pagination"]["previous"] is not None
    assert capped["pagination"]["page_size"] == 100


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5"])
def test_a_page_that_is_not_a_number_is_a_400(client, page):
    response = client.get(f"{API}/operations/", {"page": page})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "page" in response.json()["error"]["details"]


def test_list_filters_by_status_and_operation(client):
    key = session_key_of(client)
    Operation.objects.create(session_key=key, operation="image_resize", status=S.FAILED)
    Operation.objects.create(session_key=key, operation="image_resize", status=S.QUEUED)
    Operation.objects.create(session_key=key, operation="video_compress", status=S.FAILED)

    failed = client.get(f"{API}/operations/", {"status": "failed"}).json()["data"]
    resizes = client.get(f"{API}/operations/", {"operation": "image_resize", "status": "failed"}).json()["data"]

    assert {item["operation"] for item in failed} == {"image_resize", "video_compress"}
    assert len(resizes) == 1


def test_unknown_filter_values_are_a_400(client):
    response = client.get(f"{API}/operations/", {"status": "lost", "operation": "nope"})

    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"status", "operation"}


def test_a_page_past_the_end_is_a_404(client):
    response = client.get(f"{API}/operations/", {"page": 9})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_does_not_query_per_operation(client):
    key = session_key_of(client)
    for _ in range(3):
        Operation.objects.create(session_key=key, operation="image_resize")
    with CaptureQueriesContext(connection) as few:
        client.get(f"{API}/operations/")
    for _ in range(6):
        Operation.objects.create(session_key=key, operation="image_resize")
    with CaptureQueriesContext(connection) as many:
        client.get(f"{API}/operations/")

    assert len(many) == len(few)


def test_detail_is_the_full_operation(client, make_operation):
    operation = make_operation(session_key_of(client), status=S.PROCESSING, progress=25)
    Operation.objects.filter(id=operation.id).update(started_at=timezone.now() - timedelta(seconds=30))

    data = client.get(f"{API}/operations/{operation.id}/").json()["data"]

    assert set(data) == {
        "id",
        "operation",
        "status",
        "progress",
        "parameters",
        "error_message",
        "created_at",
        "started_at",
        "completed_at",
        "expires_at",
        "eta_seconds",
        "input_file",
        "output_file",
    }
    assert data["status"] == "processing"
    assert 85 <= data["eta_seconds"] <= 95  # 30 s for 25 %: about 90 s to go
    assert data["input_file"]["file_name"] == "holiday.mov"
    assert data["error_message"] is None


def test_an_id_that_is_not_a_uuid_is_a_404(client):
    response = client.get(f"{API}/operations/not-a-uuid/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
