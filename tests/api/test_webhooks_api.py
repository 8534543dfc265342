"""webhook_url on create, GET /operations/{id}/webhooks/ and POST .../webhooks/redeliver/."""

from __future__ import annotations

from collections.abc import Iterator

import django_rq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rq import SimpleWorker

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation, WebhookAttempt, WebhookEvent
from apps.operations.services import webhooks
from tests.api.conftest import API, session_key_of, stored_files, upload
from tests.webhook_receiver import SECRET, Answer, Receiver, receiving

S = OperationStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WEBHOOK_SECRET = SECRET
    settings.WEBHOOK_RETRY_DELAYS = [60]
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    yield from receiving()


def _create(client, media, **fields):
    data = {"operation": "image_convert", "parameters": '{"output_format": "jpg"}', **fields}
    data["file"] = SimpleUploadedFile("photo.png", media.sample("png").read_bytes())
    return client.post(f"{API}/operations/", data)


def test_webhook_url_is_taken_and_echoed(client, media, receiver):
    response = _create(client, media, webhook_url=receiver.url)

    assert response.status_code == 201, response.json()
    created = response.json()["data"]
    assert created["webhook_url"] == receiver.url
    shown = client.get(f"{API}/operations/{created['id']}/").json()["data"]
    assert shown["webhook_url"] == receiver.url
    operation = Operation.objects.get(id=created["id"])
    assert operation.public_base_url == "http://testserver/"


def test_without_webhook_secret_a_webhook_url_is_a_400_naming_the_setting(client, media, settings, storage_root):
    settings.WEBHOOK_SECRET = None

    response = _create(client, media, webhook_url="http://127.0.0.1:9/konvrt")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "WEBHOOK_SECRET" in error["message"]
    assert error["details"]["webhook_url"] == [
        "Webhooks are not enabled on this server: set WEBHOOK_SECRET to use webhook_url."
    ]
    assert not Operation.objects.exists()
    assert stored_files(storage_root / "uploads") == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/x", "The webhook URL must be an absolute http:// or https:// address."),
        ("/relative/path", "The webhook URL must be an absolute http:// or https:// address."),
        ("https://user:secret@hooks.example.com/x", "The webhook URL must not contain a user name or password."),
        ("https://hooks.example.com:99999/x", "The webhook URL is not a valid URL."),
        ("https://hooks.example.com/" + "a" * 2030, "The webhook URL is longer than 2048 characters."),
    ],
)
def test_a_bad_webhook_url_is_a_400_on_the_field_and_nothing_is_kept(
    client, media, receiver, storage_root, url, message
):
    response = _create(client, media, webhook_url=url)

    assert response.status_code == 400
    assert response.json()["error"]["details"]["webhook_url"] == [message]
    assert not Operation.objects.exists()
    assert stored_files(storage_root / "uploads") == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/hooks", "http://[::1]/hooks", "http://169.254.169.254/latest/", "http://10.1.2.3/"]
)
def test_a_webhook_url_the_outbound_guard_refuses_is_a_400_on_the_field(client, media, settings, storage_root, url):
    settings.WEBHOOK_SECRET = SECRET

    response = _create(client, media, webhook_url=url)

    assert response.status_code == 400
    (message,) = response.json()["error"]["details"]["webhook_url"]
    assert message.startswith("Konvrt may not send requests to ")
    assert not Operation.objects.exists()
    assert stored_files(storage_root / "uploads") == []


def test_a_webhook_url_of_exactly_2048_characters_is_taken(client, media, receiver):
    url = receiver.url + "/" + "a" * (2047 - len(receiver.url))

    response = _create(client, media, webhook_url=url)

    assert response.status_code == 201
    assert response.json()["data"]["webhook_url"] == url


def test_a_create_without_webhook_url_is_unchanged(client, media):
    response = upload(client, media.sample("png"), operation="image_convert", parameters={"output_format": "jpg"})

    assert response.status_code == 201
    assert response.json()["data"]["webhook_url"] is None


def _deliver(redis_connection, django_capture_on_commit_callbacks) -> None:
    worker = SimpleWorker([django_rq.get_queue("webhook_queue")], connection=redis_connection)
    with django_capture_on_commit_callbacks(execute=True):
        worker.work(burst=True, logging_level="WARNING")


def test_the_delivery_log_lists_attempts_newest_first(
    client, make_operation, receiver, redis_connection, django_capture_on_commit_callbacks
):
    receiver.answers = [Answer(500)]
    with django_capture_on_commit_callbacks(execute=True):
        operation = make_operation(
            session_key_of(client), operation="image_convert", status=S.COMPLETED, webhook_url=receiver.url
        )
    _deliver(redis_connection, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{API}/operations/{operation.id}/webhooks/redeliver/")
    _deliver(redis_connection, django_capture_on_commit_callbacks)

    response = client.get(f"{API}/operations/{operation.id}/webhooks/")

    assert response.status_code == 200
    body = response.json()
    assert body["pagination"]["count"] == 2
    newest, oldest = body["data"]
    event = WebhookEvent.objects.get(operation=operation)
    assert set(newest) == {
        "event_id",
        "type",
        "attempt",
        "url",
        "status_code",
        "error",
        "duration_ms",
        "attempted_at",
        "next_attempt_at",
    }
    assert (newest["event_id"], newest["type"], newest["attempt"], newest["status_code"]) == (
        str(event.id),
        "operation.completed",
        2,
        200,
    )
    assert newest["next_attempt_at"] is None and newest["error"] is None
    assert (oldest["attempt"], oldest["status_code"]) == (1, 500)
    assert oldest["next_attempt_at"] is not None
    assert newest["url"] == oldest["url"] == receiver.url


def test_redeliver_answers_202_and_sends_the_same_webhook_id_again(
    client, make_operation, receiver, redis_connection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        operation = make_operation(
            session_key_of(client), operation="image_convert", status=S.FAILED, webhook_url=receiver.url
        )
    _deliver(redis_connection, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{API}/operations/{operation.id}/webhooks/redeliver/")
    _deliver(redis_connection, django_capture_on_commit_callbacks)

    assert response.status_code == 202
    event = WebhookEvent.objects.get(operation=operation)
    assert response.json()["data"] == {"event_id": str(event.id), "type": "operation.failed"}
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id == str(event.id)
    assert second.verified
    assert WebhookAttempt.objects.filter(event=event).count() == 2


def test_redeliver_without_any_event_is_a_409(client, make_operation, receiver):
    operation = make_operation(session_key_of(client), operation="image_convert", status=S.COMPLETED)

    response = client.post(f"{API}/operations/{operation.id}/webhooks/redeliver/")

    assert response.status_code == 409
    assert response.json()["error"]["message"] == "This operation has no webhook event to deliver again."


def test_another_sessions_delivery_log_and_redelivery_are_404(client, make_operation, receiver):
    operation = make_operation("o" * 32, operation="image_convert", status=S.COMPLETED, webhook_url=receiver.url)

    assert client.get(f"{API}/operations/{operation.id}/webhooks/").status_code == 404
    assert client.post(f"{API}/operations/{operation.id}/webhooks/redeliver/").status_code == 404
    assert WebhookEvent.objects.get(operation=operation).attempts == 0


def test_the_job_id_of_an_attempt_names_the_event_and_the_attempt():
    assert webhooks.job_id_for("e", 3) == "webhook-e-3"
