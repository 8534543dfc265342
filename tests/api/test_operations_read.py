"""Listing and reading operations: scoped to the caller's session, paginated, filtered, newest first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.operations.enums import OperationStatus
from tests.api.conftest import API, session_key_of
from tests.factories import backdate

pytestmark = pytest.mark.django_db
S = OperationStatus


def eta_at(operation, now) -> int:
    """The ETA a processing operation has at ``now``: elapsed × (100 − progress) / progress."""
    elapsed = (now - operation.started_at).total_seconds()
    return round(elapsed * (100 - operation.progress) / operation.progress)


def test_list_is_the_sessions_operations_newest_first(client, make_operation):
    key = session_key_of(client)
    older = backdate(make_operation(key, status=S.COMPLETED), timedelta(hours=1))
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


def test_list_pages_and_caps_the_page_size(client, make_operation):
    key = session_key_of(client)
    for _ in range(5):
        make_operation(key, operation="image_resize")

    second = client.get(f"{API}/operations/", {"page": 2, "page_size": 2}).json()
    capped = client.get(f"{API}/operations/", {"page_size": 1000}).json()

    assert len(second["data"]) == 2
    assert second["pagination"]["total_pages"] == 3
    assert second["pagination"]["next"].endswith("page=3&page_size=2")
    assert second["pagination"]["previous"] is not None
    assert capped["pagination"]["page_size"] == 100


@pytest.mark.parametrize("name", ["page", "page_size"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", "", "٣"])
def test_a_page_or_page_size_that_is_not_a_whole_number_from_1_is_a_400(client, name, value):
    response = client.get(f"{API}/operations/", {name: value})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert name in response.json()["error"]["details"]


@pytest.mark.parametrize("name", ["status", "operation"])
def test_an_empty_filter_is_a_400_not_an_unfiltered_list(client, name):
    response = client.get(f"{API}/operations/", {name: ""})

    assert response.status_code == 400
    assert name in response.json()["error"]["details"]


def test_the_schema_says_page_and_page_size_start_at_1(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/operations/"]["get"]["parameters"]}

    assert parameters["page"]["minimum"] == 1
    assert parameters["page_size"]["minimum"] == 1


def test_list_filters_by_status_and_operation(client, make_operation):
    key = session_key_of(client)
    make_operation(key, operation="image_resize", status=S.FAILED)
    make_operation(key, operation="image_resize", status=S.QUEUED)
    make_operation(key, operation="video_compress", status=S.FAILED)

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


def test_list_does_not_query_per_operation(client, make_operation):
    key = session_key_of(client)
    for _ in range(3):
        make_operation(key, operation="image_resize")
    with CaptureQueriesContext(connection) as few:
        client.get(f"{API}/operations/")
    for _ in range(6):
        make_operation(key, operation="image_resize")
    with CaptureQueriesContext(connection) as many:
        client.get(f"{API}/operations/")

    assert len(many) == len(few)


def test_detail_is_the_full_operation(client, make_operation):
    operation = make_operation(session_key_of(client), status=S.PROCESSING, progress=25)
    operation = backdate(operation, timedelta(seconds=30))

    before = timezone.now()
    data = client.get(f"{API}/operations/{operation.id}/").json()["data"]
    after = timezone.now()

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
        "webhook_url",
    }
    assert data["status"] == "processing"
    assert data["webhook_url"] is None
    # 30 s (and the time the request took) for 25 %: three times that to go.
    assert eta_at(operation, before) <= data["eta_seconds"] <= eta_at(operation, after)
    assert eta_at(operation, before) >= 90
    assert data["input_file"]["file_name"] == "holiday.mov"
    assert data["error_message"] is None


def test_an_id_that_is_not_a_uuid_is_a_404(client):
    response = client.get(f"{API}/operations/not-a-uuid/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "query", [{"page_size": 0}, {"page_size": -5}, {"page_size": "ten"}, {"page": 0}, {"page": "²"}]
)
def test_a_page_or_page_size_below_one_is_a_400(client, query):
    response = client.get(f"{API}/operations/", query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert list(response.json()["error"]["details"]) == list(query)


def test_the_schema_says_page_and_page_size_start_at_one(openapi_spec):
    parameters = {p["name"]: p for p in openapi_spec["paths"]["/api/v1/operations/"]["get"]["parameters"]}

    assert parameters["page"]["schema"]["minimum"] == 1
    assert parameters["page_size"]["schema"]["minimum"] == 1
