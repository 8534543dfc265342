"""Webhook delivery (apps/operations/services/webhooks.py) against a real receiver that verifies every
delivery with the Standard Webhooks reference library, through a real RQ worker and RQ's scheduler."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import django_rq
import pytest
from django.utils import timezone
from rq import SimpleWorker
from rq.job import Job
from standardwebhooks.webhooks import Webhook

from apps.operations.enums import OperationStatus, WebhookOutcome, WebhookState
from apps.operations.models import Operation, WebhookAttempt, WebhookEvent
from apps.operations.services import lifecycle, webhooks
from tests.webhook_receiver import SECRET, Answer, Receiver, receiving

S = OperationStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def webhooks_on(settings) -> None:
    settings.WEBHOOK_SECRET = SECRET
    settings.WEBHOOK_RETRY_DELAYS = [1, 1]
    settings.WEBHOOK_TIMEOUT = 2
    settings.PUBLIC_BASE_URL = None
    # The receivers listen on loopback, which the outbound guard refuses unless allowed.
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def receiver(webhooks_on) -> Iterator[Receiver]:
    yield from receiving()


@pytest.fixture
def finish(make_operation, django_capture_on_commit_callbacks) -> Callable[..., Operation]:
    """An operation that reaches ``status`` with ``webhook_url``, its event queued as on commit."""

    def finish(status: OperationStatus, url: str, **options) -> Operation:
        with django_capture_on_commit_callbacks(execute=True):
            return make_operation(operation="image_convert", status=status, webhook_url=url, **options)

    return finish


@pytest.fixture
def deliver(redis_connection, django_capture_on_commit_callbacks) -> Callable[..., None]:
    """Run a real RQ worker on the webhook queue until it is empty (``scheduled``: first moving the
    retries that are due, as RQ's scheduler does)."""

    def deliver(*, scheduled: bool = False) -> None:
        worker = SimpleWorker([django_rq.get_queue("webhook_queue")], connection=redis_connection)
        with django_capture_on_commit_callbacks(execute=True):
            worker.work(burst=True, with_scheduler=scheduled, logging_level="WARNING")

    return deliver


def _event(operation: Operation) -> WebhookEvent:
    return WebhookEvent.objects.get(operation=operation)


def _wait_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.05)


def test_a_completed_operation_posts_a_signed_event_that_the_reference_library_verifies(receiver, finish, deliver):
    operation = finish(S.COMPLETED, receiver.url)

    deliver()

    (delivery,) = receiver.wait_for(1)
    event = _event(operation)
    assert delivery.verified, delivery.error
    assert delivery.path == "/hooks"
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.webhook_id == str(event.id)
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 10
    assert delivery.headers["webhook-signature"].startswith("v1,")
    payload = delivery.payload
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "operation.completed"
    assert datetime.fromisoformat(payload["timestamp"]) <= timezone.now()
    data = payload["data"]
    assert data["id"] == str(operation.id)
    assert data["status"] == "completed"
    assert data["progress"] == 100
    assert data["webhook_url"] == receiver.url
    # Absolute, from the address the operation was created through (PUBLIC_BASE_URL unset).
    assert data["output_file"]["download_url"] == f"http://testserver/api/v1/operations/{operation.id}/download/"
    event.refresh_from_db()
    assert (event.state, event.attempts, event.next_attempt_at) == (WebhookState.DELIVERED, 1, None)
    (attempt,) = WebhookAttempt.objects.filter(event=event)
    assert (attempt.attempt, attempt.status_code, attempt.outcome, attempt.error) == (
        1,
        200,
        WebhookOutcome.DELIVERED,
        "",
    )
    assert attempt.next_attempt_at is None
    assert attempt.url == receiver.url


def test_the_download_url_is_built_from_public_base_url_when_it_is_set(receiver, finish, deliver, settings):
    settings.PUBLIC_BASE_URL = "https://media.example.com"
    operation = finish(S.COMPLETED, receiver.url)

    deliver()

    (delivery,) = receiver.wait_for(1)
    assert delivery.payload["data"]["output_file"]["download_url"] == (
        f"https://media.example.com/api/v1/operations/{operation.id}/download/"
    )


@pytest.mark.parametrize(
    ("status", "event_type"), [(S.FAILED, "operation.failed"), (S.CANCELLED, "operation.cancelled")]
)
def test_failed_and_cancelled_operations_send_their_event(receiver, finish, deliver, status, event_type):
    operation = finish(status, receiver.url)

    deliver()

    (delivery,) = receiver.wait_for(1)
    assert delivery.verified
    assert delivery.payload["type"] == event_type
    assert delivery.payload["data"]["status"] == status
    assert delivery.payload["data"]["output_file"] is None
    if status == S.FAILED:
        assert delivery.payload["data"]["error_message"] == operation.error_message


def test_deleting_an_active_operation_sends_its_cancelled_event(receiver, make_operation):
    operation = make_operation(operation="image_convert", status=S.QUEUED, webhook_url=receiver.url)

    lifecycle.operation_mark_deleted(operation=operation)

    event = _event(operation)
    assert event.type == "operation.cancelled"


def test_an_operation_without_webhook_url_records_no_event(webhooks_on, make_operation):
    operation = make_operation(operation="image_convert", status=S.COMPLETED)

    assert not WebhookEvent.objects.filter(operation=operation).exists()


def test_non_terminal_changes_send_nothing(receiver, make_operation):
    operation = make_operation(operation="image_convert", status=S.PROCESSING, progress=40, webhook_url=receiver.url)

    assert not WebhookEvent.objects.filter(operation=operation).exists()


def test_a_500_is_retried_through_rqs_scheduler_with_the_same_webhook_id(receiver, finish, deliver, redis_connection):
    receiver.answers = [Answer(500)]
    operation = finish(S.COMPLETED, receiver.url)

    deliver()

    receiver.wait_for(1)
    event = _event(operation)
    assert event.state == WebhookState.PENDING
    first = WebhookAttempt.objects.get(event=event)
    assert (first.status_code, first.outcome) == (500, WebhookOutcome.REJECTED)
    # Due after the first delay, and held by RQ's scheduler until then.
    assert first.next_attempt_at == event.next_attempt_at
    assert timedelta(seconds=0.5) < event.next_attempt_at - first.attempted_at < timedelta(seconds=3)
    queue = django_rq.get_queue("webhook_queue")
    assert webhooks.job_id_for(event.id, 2) in queue.scheduled_job_registry.get_job_ids()
    assert queue.count == 0

    _wait_until(event.next_attempt_at)
    deliver(scheduled=True)

    first_delivery, second_delivery = receiver.wait_for(2)
    assert second_delivery.verified
    assert second_delivery.webhook_id == first_delivery.webhook_id == str(event.id)
    assert second_delivery.body == first_delivery.body
    event.refresh_from_db()
    assert (event.state, event.attempts, event.next_attempt_at) == (WebhookState.DELIVERED, 2, None)
    assert list(WebhookAttempt.objects.filter(event=event).values_list("attempt", "status_code")) == [
        (2, 200),
        (1, 500),
    ]


def test_a_410_stops_delivery(receiver, finish, deliver):
    receiver.default = Answer(410)
    operation = finish(S.COMPLETED, receiver.url)

    deliver()

    receiver.wait_for(1)
    event = _event(operation)
    assert (event.state, event.next_attempt_at) == (WebhookState.GONE, None)
    assert django_rq.get_queue("webhook_queue").scheduled_job_registry.count == 0
    assert WebhookAttempt.objects.get(event=event).status_code == 410


def test_a_redirect_is_not_followed_and_is_retried(receiver, finish, deliver):
    receiver.answers = [Answer(302, location=f"http://127.0.0.1:{receiver.port}/elsewhere")]
    operation = finish(S.COMPLETED, receiver.url)

    deliver()

    time.sleep(0.3)  # a followed redirect would arrive now
    assert [delivery.path for delivery in receiver.deliveries] == ["/hooks"]
    event = _event(operation)
    attempt = WebhookAttempt.objects.get(event=event)
    assert attempt.status_code == 302
    assert attempt.error == "The receiver answered with a redirect; redirects are not followed."
    assert event.state == WebhookState.PENDING and event.next_attempt_at is not None


def test_delivery_ends_as_failed_once_every_retry_is_spent(receiver, finish, deliver, settings):
    settings.WEBHOOK_RETRY_DELAYS = [1]
    receiver.default = Answer(503)
    operation = finish(S.COMPLETED, receiver.url)

    deliver()
    event = _event(operation)
    _wait_until(event.next_attempt_at)
    deliver(scheduled=True)

    receiver.wait_for(2)
    event.refresh_from_db()
    assert (event.state, event.attempts, event.next_attempt_at) == (WebhookState.FAILED, 2, None)
    last = WebhookAttempt.objects.filter(event=event).first()
    assert (last.attempt, last.status_code, last.next_attempt_at) == (2, 503, None)


def test_a_receiver_that_does_not_answer_in_time_is_an_attempt_without_status(receiver, finish, deliver, settings):
    settings.WEBHOOK_TIMEOUT = 1
    receiver.answers = [Answer(200, delay=3)]
    operation = finish(S.COMPLETED, receiver.url)

    deliver()

    attempt = WebhookAttempt.objects.get(event=_event(operation))
    assert attempt.status_code is None
    assert attempt.outcome == WebhookOutcome.UNREACHABLE
    assert attempt.error == "The server at 127.0.0.1 did not answer within 1 seconds."
    assert 900 <= attempt.duration_ms < 2900


def test_a_refused_connection_is_an_attempt_without_status_and_is_retried(webhooks_on, finish, deliver):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    operation = finish(S.COMPLETED, f"http://127.0.0.1:{port}/hooks")

    deliver()

    event = _event(operation)
    attempt = WebhookAttempt.objects.get(event=event)
    assert (attempt.status_code, attempt.outcome) == (None, WebhookOutcome.UNREACHABLE)
    assert attempt.error == "Could not connect to the server at 127.0.0.1."
    assert event.state == WebhookState.PENDING


def test_the_outbound_guard_is_asked_again_at_delivery_and_nothing_connects(receiver, finish, deliver, settings):
    operation = finish(S.COMPLETED, receiver.url)
    settings.OUTBOUND_ALLOWED_NETWORKS = []  # the address is no longer one the deployment allows

    deliver()

    time.sleep(0.2)
    assert receiver.deliveries == []
    attempt = WebhookAttempt.objects.get(event=_event(operation))
    assert (attempt.status_code, attempt.outcome) == (None, WebhookOutcome.UNREACHABLE)
    assert attempt.error == "Konvrt may not send requests to 127.0.0.1: it points to a loopback address (this machine)."


def test_an_event_whose_job_redis_lost_is_queued_again_by_the_sweep_and_delivered(
    receiver, finish, deliver, redis_connection
):
    operation = finish(S.COMPLETED, receiver.url)
    redis_connection.flushdb()  # Redis restarted without its data: the job is gone, the row is not
    event = _event(operation)
    assert webhooks.webhook_sweep_run() == 0  # not overdue yet: RQ may still be about to run it

    assert webhooks.webhook_sweep_run(now=timezone.now() + timedelta(minutes=1)) == 1

    deliver()
    (delivery,) = receiver.wait_for(1)
    assert delivery.webhook_id == str(event.id)
    event.refresh_from_db()
    assert event.state == WebhookState.DELIVERED


def test_the_sweep_leaves_alone_an_event_whose_job_is_still_queued(receiver, finish):
    operation = finish(S.COMPLETED, receiver.url)

    assert webhooks.webhook_sweep_run(now=timezone.now() + timedelta(minutes=1)) == 0

    event = _event(operation)
    job = Job.fetch(webhooks.job_id_for(event.id, 1), connection=django_rq.get_connection("webhook_queue"))
    assert job.get_status() == "queued"


def test_a_second_job_for_the_same_attempt_sends_nothing(receiver, finish, deliver):
    operation = finish(S.COMPLETED, receiver.url)
    event = _event(operation)
    assert webhooks.event_enqueue(event_id=event.id, attempt=1)  # a duplicate, as a sweep could add
    django_rq.get_queue("webhook_queue").enqueue(webhooks.JOB_FUNCTION, str(event.id))

    deliver()

    time.sleep(0.2)
    assert len(receiver.deliveries) == 1


def test_redelivery_sends_the_same_event_again_as_a_new_attempt(
    receiver, finish, deliver, django_capture_on_commit_callbacks
):
    operation = finish(S.COMPLETED, receiver.url)
    deliver()

    with django_capture_on_commit_callbacks(execute=True):
        webhooks.event_redeliver(operation=operation)
    deliver()

    first, second = receiver.wait_for(2)
    assert second.webhook_id == first.webhook_id
    assert second.body == first.body
    assert second.verified
    assert list(WebhookAttempt.objects.filter(event=_event(operation)).values_list("attempt", flat=True)) == [2, 1]


def test_a_failed_redelivery_is_retried_from_the_first_delay_again(
    receiver, finish, deliver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_DELAYS = [1]
    receiver.default = Answer(500)
    operation = finish(S.COMPLETED, receiver.url)
    deliver()
    event = _event(operation)
    _wait_until(event.next_attempt_at)
    deliver(scheduled=True)
    event.refresh_from_db()
    assert event.state == WebhookState.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        webhooks.event_redeliver(operation=operation)
    deliver()

    event.refresh_from_db()
    assert (event.state, event.attempts) == (WebhookState.PENDING, 3)
    assert event.next_attempt_at is not None


def test_our_signature_is_the_reference_librarys():
    body = '{"type":"operation.completed","data":{"id":"x"}}'
    moment = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    ours = webhooks.signature(secret=SECRET, webhook_id="msg_1", timestamp=int(moment.timestamp()), body=body)

    assert ours == Webhook(SECRET).sign("msg_1", moment, body)
