"""GET /operations/{id}/status/: small, one query for the operation, queue position and why it waits."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq import Worker

from apps.api.serializers import OperationStatusSerializer
from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.selectors import operation_status
from apps.operations.services.events import status_as_dict
from tests.api.conftest import API, session_key_of
from tests.factories import backdate

pytestmark = pytest.mark.django_db
S = OperationStatus


def status_of(client, operation):
    response = client.get(f"{API}/operations/{operation.id}/status/")
    assert response.status_code == 200
    return response.json()["data"]


@pytest.fixture
def queued(make_operation):
    """``queued(client, operation)``: an operation of the client's session, on its queue."""
    return lambda client, operation="video_compress": make_operation(
        session_key_of(client), operation=operation, status=S.QUEUED
    )


def test_queued_operations_know_their_place_and_that_no_worker_runs(client, queued):
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


def test_audio_extract_waits_for_an_audio_worker(client, queued):
    assert status_of(client, queued(client, "audio_extract"))["waiting_reason"].startswith("No audio worker is running")


def test_no_waiting_reason_while_a_worker_listens(client, queued, redis_connection):
    operation = queued(client)
    worker = Worker([django_rq.get_queue("video_queue")], connection=redis_connection)
    worker.register_birth()
    try:
        assert status_of(client, operation)["waiting_reason"] is None
    finally:
        worker.register_death()
    assert status_of(client, operation)["waiting_reason"].startswith("No video worker")


def test_a_killed_worker_left_in_rqs_registry_does_not_count(client, queued, redis_connection):
    operation = queued(client)
    # A SIGKILLed worker never unregisters; its own key expired with its heartbeat.
    redis_connection.sadd("rq:workers:video_queue", "rq:worker:gone")

    assert status_of(client, operation)["waiting_reason"].startswith("No video worker")


@pytest.mark.parametrize("silent_for", [120, 1001])
def test_a_silent_worker_shows_frozen_progress_honestly_without_a_climbing_eta(client, make_operation, silent_for):
    """Its host is gone (killed, or cut off): the progress stays, the ETA goes, and the status says
    why, until the recovery sweep moves the work to another worker."""
    operation = make_operation(
        session_key_of(client), status=S.PROCESSING, progress=25, phase=ProcessingPhase.PROCESSING
    )
    operation = backdate(operation, timedelta(seconds=silent_for))

    data = status_of(client, operation)

    assert (data["status"], data["progress"]) == ("processing", 25)
    assert data["eta_seconds"] is None
    assert data["waiting_reason"].startswith(
        f"The worker processing this file has not been heard from for {silent_for}"
    )


def test_processing_has_phase_progress_and_eta(client, make_operation):
    operation = make_operation(
        session_key_of(client), status=S.PROCESSING, progress=50, phase=ProcessingPhase.PROCESSING
    )
    operation = backdate(operation, timedelta(seconds=20))

    before = timezone.now()
    data = status_of(client, operation)
    after = timezone.now()

    assert (data["status"], data["progress"], data["phase"]) == ("processing", 50, "processing")
    # Half done in 20 s (and the time the request took): as long again to go.
    elapsed = [round((moment - operation.started_at).total_seconds()) for moment in (before, after)]
    assert elapsed[0] >= 20
    assert elapsed[0] <= data["eta_seconds"] <= elapsed[1]
    assert data["queue_position"] is None and data["waiting_reason"] is None


def test_pending_says_why(client, make_operation):
    operation = make_operation(session_key_of(client), status=S.PENDING)

    assert "queued automatically" in status_of(client, operation)["waiting_reason"]


def test_failed_shows_its_message(client, make_operation):
    operation = make_operation(
        session_key_of(client),
        operation="audio_extract",
        status=S.FAILED,
        error_message="This video has no audio track to extract.",
    )

    data = status_of(client, operation)

    assert data["error_message"] == "This video has no audio track to extract."
    assert data["waiting_reason"] is None


def test_status_reads_the_operation_with_one_query(client, queued):
    operation = queued(client)

    with CaptureQueriesContext(connection) as queries:
        status_of(client, operation)

    assert len([q for q in queries if "operations_operation" in q["sql"]]) == 1


def test_redis_down_still_answers_with_a_reason(client, queued, own_redis):
    operation = queued(client)
    own_redis.stop()

    data = status_of(client, operation)

    assert data["status"] == "queued"
    assert data["queue_position"] is None
    assert "cannot be reached" in data["waiting_reason"]


@pytest.mark.parametrize("status", [S.PENDING, S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED])
def test_the_status_object_is_what_its_serializer_describes(client, make_operation, status):
    # Polls and the live stream send status_as_dict; the schema documents OperationStatusSerializer.
    operation = make_operation(session_key_of(client), operation="video_compress", status=status)
    info = operation_status(session_key=operation.session_key, operation_id=operation.id)

    assert status_as_dict(info) == OperationStatusSerializer(info).data
    assert status_of(client, operation) == OperationStatusSerializer(info).data
