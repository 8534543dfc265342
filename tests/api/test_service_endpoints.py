"""Operation definitions, health, queues and session: what clients discover and operators watch."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.contrib.sessions.models import Session
from rq import Worker

from apps.operations.enums import OperationStatus
from apps.processors.registry import OPERATIONS
from tests.api.conftest import API, session_key_of

pytestmark = pytest.mark.django_db


# --- operation definitions ------------------------------------------------------------------------
def test_definitions_list_every_operation_from_the_registry(client, settings):
    response = client.get(f"{API}/operation-definitions/")

    assert response.status_code == 200
    definitions = {item["name"]: item for item in response.json()["data"]}
    assert set(definitions) == set(OPERATIONS)
    extract = definitions["audio_extract"]
    assert extract["media_type"] == "video"
    assert extract["queue"] == "audio_queue"
    assert extract["max_file_size"] == settings.MAX_FILE_SIZE["video"]
    assert extract["input_formats"] == [
        "mp4",
        "m4v",
        "mov",
        "3gp",
        "avi",
        "mkv",
        "webm",
        "wmv",
        "flv",
        "mpg",
        "mpeg",
        "ts",
    ]
    assert definitions["video_compress"]["queue"] == "video_queue"
    for name, item in definitions.items():
        assert item["parameters"] == OPERATIONS[name].parameters_schema
        assert item["title"] == OPERATIONS[name].title
    # Words for people, as the page shows them.
    assert definitions["audio_extract"]["title"] == "Extract audio"
    assert definitions["image_resize"]["title"] == "Resize image"


def test_definition_detail_publishes_the_schema_the_api_validates_against(client):
    data = client.get(f"{API}/operation-definitions/video_compress/").json()["data"]

    quality = data["parameters"]["properties"]["quality"]
    assert (quality["minimum"], quality["maximum"], quality["default"]) == (18, 28, 23)
    assert data["parameters"]["additionalProperties"] is False
    assert data["output_formats"] == ["mp4"]


def test_unknown_definition_is_a_404(client):
    response = client.get(f"{API}/operation-definitions/video_explode/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- vocabulary -----------------------------------------------------------------------------------
def test_vocabulary_lists_every_status_with_what_it_allows_and_every_phase_in_order(client):
    response = client.get(f"{API}/vocabulary/")

    assert response.status_code == 200
    data = response.json()["data"]
    statuses = {status["name"]: status for status in data["statuses"]}
    assert list(statuses) == ["pending", "queued", "processing", "completed", "failed", "cancelled"]
    assert {name for name, status in statuses.items() if status["terminal"]} == {"completed", "failed", "cancelled"}
    assert {name for name, status in statuses.items() if status["cancellable"]} == {"pending", "queued", "processing"}
    assert {name for name, status in statuses.items() if status["retryable"]} == {"failed", "cancelled"}
    assert statuses["completed"]["label"] == "Completed"
    assert [phase["name"] for phase in data["phases"]] == ["fetching", "probing", "processing", "storing"]
    assert data["phases"][0]["label"] == "Fetching the input"


@pytest.mark.parametrize("status", list(OperationStatus))
def test_the_published_status_rules_are_what_cancel_and_retry_do(client, make_operation, media, status):
    published = {item["name"]: item for item in client.get(f"{API}/vocabulary/").json()["data"]["statuses"]}
    key = session_key_of(client)
    png = media.png()
    to_cancel = make_operation(key, operation="image_resize", status=status, source=png, name="a.png")
    to_retry = make_operation(key, operation="image_resize", status=status, source=png, name="b.png")

    cancel = client.post(f"{API}/operations/{to_cancel.id}/cancel/")
    retry = client.post(f"{API}/operations/{to_retry.id}/retry/")

    assert cancel.status_code == (200 if published[status]["cancellable"] else 409)
    assert retry.status_code == (200 if published[status]["retryable"] else 409)
    # Cancelled now, or finished already: either way a status a client stops polling at.
    to_cancel.refresh_from_db()
    assert published[to_cancel.status]["terminal"] is True


# --- health ---------------------------------------------------------------------------------------
def test_health_is_healthy_with_every_check_timed(client):
    response = client.get(f"{API}/health/")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["data"]["status"] == "healthy"
    assert set(body["data"]["checks"]) == {"database", "redis", "storage"}
    for check in body["data"]["checks"].values():
        assert check["ok"] is True and check["error"] is None and check["latency_ms"] >= 0
    assert Session.objects.count() == 0


def test_health_with_redis_stopped_is_a_503_naming_it(client, own_redis):
    own_redis.stop()

    response = client.get(f"{API}/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False
    assert body["data"]["status"] == "degraded"
    assert body["data"]["checks"]["redis"]["ok"] is False
    assert "ConnectionError" in body["data"]["checks"]["redis"]["error"]
    assert body["data"]["checks"]["database"]["ok"] is True
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["details"] == {"failed": ["redis"]}


# --- queues ---------------------------------------------------------------------------------------
def test_queues_count_jobs_by_state_and_live_workers(client, redis_connection, make_operation):
    for _ in range(2):
        make_operation(operation="video_compress", status=OperationStatus.QUEUED)
    image_queue = django_rq.get_queue("image_queue")
    image_queue.enqueue_in(timedelta(minutes=5), "tests.jobs.write_marker", "/dev/null", "x")
    worker = Worker([image_queue], connection=redis_connection)
    worker.register_birth()

    response = client.get(f"{API}/queues/")

    worker.register_death()
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {"video_queue", "image_queue", "audio_queue", "webhook_queue"}
    assert data["video_queue"] == {
        "queued": 2,
        "started": 0,
        "finished": 0,
        "failed": 0,
        "scheduled": 0,
        "deferred": 0,
        "workers": 0,
    }
    assert data["image_queue"]["scheduled"] == 1
    assert data["image_queue"]["workers"] == 1


@pytest.mark.django_db(transaction=True)
def test_queues_count_operations_as_finished_work_not_the_periodic_passes(client, make_operation, run_worker, tmp_path):
    make_operation(
        operation="image_convert", parameters={"output_format": "png", "quality": 85}, status=OperationStatus.QUEUED
    )
    # What config/cron.py enqueues every 30 s: a job under RQ's own id on the image queue.
    django_rq.get_queue("image_queue").enqueue("tests.jobs.write_marker", str(tmp_path / "pass"), "done")

    run_worker("image_queue")

    assert (tmp_path / "pass").read_text() == "done"
    assert client.get(f"{API}/queues/").json()["data"]["image_queue"]["finished"] == 1


def test_queues_with_redis_stopped_is_a_503(client, own_redis):
    own_redis.stop()

    response = client.get(f"{API}/queues/")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


# --- session --------------------------------------------------------------------------------------
def test_session_counts_its_operations_by_status(client, make_operation):
    key = session_key_of(client)
    for status in (OperationStatus.QUEUED, OperationStatus.QUEUED, OperationStatus.FAILED):
        make_operation(key, operation="image_resize", status=status)
    make_operation(key, operation="image_resize", deleted=True)
    make_operation("someone-else", operation="image_resize")

    data = client.get(f"{API}/session/").json()["data"]

    assert data["session_key"] == key
    assert data["operations_total"] == 3
    assert data["operations_by_status"] == {
        "pending": 0,
        "queued": 2,
        "processing": 0,
        "completed": 0,
        "failed": 1,
        "cancelled": 0,
    }


# --- CORS -----------------------------------------------------------------------------------------
def test_cors_preflight_allows_the_session_and_idempotency_headers(client):
    response = client.options(
        f"{API}/operations/",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-session-key, idempotency-key",
        },
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "http://localhost:3000"
    allowed = response["Access-Control-Allow-Headers"].lower()
    assert "x-session-key" in allowed and "idempotency-key" in allowed


def test_cors_exposes_the_session_key_to_the_frontend(client):
    response = client.get(f"{API}/session/", headers={"Origin": "http://localhost:3000"})

    assert response["Access-Control-Allow-Origin"] == "http://localhost:3000"
    exposed = response["Access-Control-Expose-Headers"].lower()
    assert "x-session-key" in exposed and "retry-after" in exposed and "content-disposition" in exposed


def test_cors_ignores_unknown_origins(client):
    response = client.get(f"{API}/session/", headers={"Origin": "http://evil.example"})

    assert "Access-Control-Allow-Origin" not in response.headers
