"""GET /metrics: Prometheus exposition of deployment-wide figures, behind METRICS_TOKEN."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

from apps.operations.enums import OperationStatus, WebhookOutcome
from apps.operations.models import Operation, WebhookAttempt, WebhookEvent
from tests.factories import backdate

S = OperationStatus
TOKEN = "metrics-token-for-tests"
pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics_on(settings) -> None:
    settings.METRICS_TOKEN = TOKEN


def scrape(client) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_without_a_token_configured_metrics_is_a_404(client, settings):
    settings.METRICS_TOKEN = None

    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"])
def test_a_request_without_the_right_bearer_token_is_a_404(client, metrics_on, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 404
    assert b"konvrt_" not in response.content


def test_the_figures_come_from_the_database_and_redis(client, metrics_on, make_operation, redis_connection):
    make_operation(operation="image_convert", status=S.COMPLETED)
    make_operation(operation="image_convert", status=S.COMPLETED)
    make_operation(operation="image_convert", status=S.FAILED)
    waiting = backdate(make_operation(operation="video_compress", status=S.QUEUED), timedelta(seconds=90))
    slow = make_operation(operation="audio_convert", status=S.COMPLETED)
    Operation.objects.filter(id=slow.id).update(completed_at=slow.started_at + timedelta(seconds=45))
    event = WebhookEvent.objects.create(operation=slow, type="operation.completed", url="http://x/", body="{}")
    for attempt, outcome in enumerate([WebhookOutcome.UNREACHABLE, WebhookOutcome.REJECTED, WebhookOutcome.DELIVERED]):
        WebhookAttempt.objects.create(
            event=event, attempt=attempt + 1, url="http://x/", outcome=outcome, attempted_at=waiting.created_at
        )
    worker = Worker(["image_queue"], connection=redis_connection)
    worker.register_birth()

    samples = scrape(client)

    worker.register_death()
    operations = samples["konvrt_operations_total"]
    assert operations[(("operation", "image_convert"), ("status", "completed"))] == 2
    assert operations[(("operation", "image_convert"), ("status", "failed"))] == 1
    assert operations[(("operation", "video_compress"), ("status", "queued"))] == 1
    assert operations[(("operation", "audio_extract"), ("status", "queued"))] == 0
    assert samples["konvrt_queue_jobs"][(("queue", "video_queue"), ("state", "queued"))] == 1
    assert samples["konvrt_workers"][(("queue", "image_queue"),)] == 1
    assert samples["konvrt_workers"][(("queue", "webhook_queue"),)] == 0
    assert 90 <= samples["konvrt_oldest_queued_seconds"][(("queue", "video_queue"),)] < 120
    assert samples["konvrt_oldest_queued_seconds"][(("queue", "image_queue"),)] == 0
    # The histogram, from started_at to completed_at of completed operations.
    audio = (("operation", "audio_convert"),)
    buckets = samples["konvrt_operation_duration_seconds_bucket"]
    assert buckets[(("le", "30.0"), ("operation", "audio_convert"))] == 0
    assert buckets[(("le", "60.0"), ("operation", "audio_convert"))] == 1
    assert buckets[(("le", "+Inf"), ("operation", "audio_convert"))] == 1
    assert samples["konvrt_operation_duration_seconds_count"][audio] == 1
    assert samples["konvrt_operation_duration_seconds_sum"][audio] == pytest.approx(45, abs=0.01)
    assert samples["konvrt_operation_duration_seconds_count"][(("operation", "image_convert"),)] == 2
    deliveries = samples["konvrt_webhook_deliveries_total"]
    assert deliveries == {(("outcome", outcome),): 1 for outcome in ("delivered", "rejected", "unreachable")}
    assert samples["konvrt_storage_free_bytes"][()] > 0


def test_with_redis_down_the_database_figures_are_still_served(client, metrics_on, make_operation, own_redis):
    make_operation(operation="image_convert", status=S.COMPLETED)
    own_redis.stop()

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    text = response.content.decode()
    assert 'konvrt_operations_total{operation="image_convert",status="completed"} 1.0' in text
    assert "konvrt_queue_jobs{" not in text
