"""GET /operations/{id}/status/: small, one query for the operation, queue position and why it waits."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq import Worker

from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services.queue_manager import enqueue_operation
from tests.api.conftest import API, session_key_of

pytestmark = pytest.mark.django_db
S = OperationStatus


def status_of(client, operation):
    response = client.get(f"{API}/operations/{operation.id}/status/")
    assert response.status_code == 200
    return response.json()["data"]


def queued(client, operation="video_compress") -> Operation:
    instance = Operation.objects.create(session_key=session_key_of(client), operation=operation)
    assert enqueue_operation(operation=instance)
    return instance


def test_queued_operations_know_their_place_and_that_no_worker_runs(client):
    first, second = queued(client), queued(client)

    data = status_of(client, second)

    assert set(data) == {
        "id",
        "status",
        "progress",
        "eta_seconds",
        "error_message",
        "phase",
        "queue_position",
        "waiting_reason",
    }
    assert data["status"] == "queued"
    assert data["queue_position"] == 2
    assert status_of(client, first)["queue_position"] == 1
    assert data["waiting_reason"].startswith("No video worker is running")
    assert data["eta_seconds"] is None and data["phase"] is None


def test_audio_extract_waits_for_an_audio_worker(client):
    assert status_of(client, queued(client, "audio_extract"))["waiting_reason"].startswith("No audio worker is running")


def test_no_waiting_reason_while_a_worker_listens(client, redis_connection):
    operation = queued(client)
    worker = Worker([django_rq.get_queue("video_queue")], connection=redis_connection)
    worker.register_birth()
    try:
        assert status_of(client, operation)["waiting_reason"] is None
    finally:
        worker.register_death()
    assert status_of(client, operation)["waiting_reason"].startswith("No video worker")


def test_a_killed_worker_left_in_rqs_registry_does_not_count(client, redis_connection):
    operation = queued(client)
    # A SIGKILLed worker never unregisters; its own key expired with its heartbeat.
    redis_connection.sadd("rq:workers:video_queue", "rq:worker:gone")

    assert status_of(client, operation)["waiting_reason"].startswith("No video worker")


def test_processing_has_phase_progress_and_eta(client):
    operation = Operation.objects.create(
        session_key=session_key_of(client),
        operation="video_compress",
        status=S.PROCESSING,
        progress=50,
        phase=ProcessingPhase.PROCESSING,
        started_at=timezone.now() - timedelta(seconds=20),
    )

    data = status_of(client, operation)

    assert (data["status"], data["progress"], data["phase"]) == ("processing", 50, "processing")
    assert 19 <= data["eta_seconds"] <= 22
    assert data["queue_position"] is None and data["waiting_reason"] is None


def test_pending_says_why(client):
    operation = Operation.objects.create(session_key=session_key_of(client), operation="video_compress")

    assert "queued automatically" in status_of(client, operation)["waiting_reason"]


def test_failed_shows_its_message(client):
    operation = Operation.objects.create(
        session_key=session_key_of(client),
        operation="audio_extract",
        status=S.FAILED,
        error_message="This video has no audio track to extract.",
    )

    data = status_of(client, operation)

    assert data["error_message"] == "This video has no audio track to extract."
    assert data["waiting_reason"] is None


def test_status_reads_the_operation_with_one_query(client):
    operation = queued(client)

    with CaptureQueriesContext(connection) as queries:
        status_of(client, operation)

    assert len([q for q in queries if "operations_operation" in q["sql"]]) == 1


def test_redis_down_still_answers_with_a_reason(client, own_redis):
    operation = queued(client)
    own_redis.stop()

    data = status_of(client, operation)

    assert data["status"] == "queued"
    assert data["queue_position"] is None
    assert "cannot be reached" in data["waiting_reason"]
