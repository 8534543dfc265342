"""A webhook worker SIGKILLed in the middle of a delivery: the event still arrives (at least once,
same webhook-id), taken over by the webhook sweep once the lost attempt's lease runs out."""

from __future__ import annotations

import os
import signal
import time

from apps.operations.enums import OperationStatus, WebhookState
from apps.operations.models import WebhookAttempt, WebhookEvent
from tests.faults.conftest import FAULT_TEST
from tests.processors.processes import children_of, descendants, is_alive, wait_until
from tests.webhook_receiver import SECRET, Answer, Receiver

pytestmark = FAULT_TEST


def test_a_worker_killed_during_a_delivery_does_not_lose_the_event(fleet, make_operation, fault_timings):
    receiver = Receiver()
    # The first POST hangs at the receiver until long after its worker is dead.
    receiver.answers = [Answer(200, delay=20)]
    webhook_environment = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_TIMEOUT": "3", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}
    try:
        pool = fleet.start_pool("webhook_queue", **webhook_environment)
        fleet.start_cron()
        operation = make_operation(
            operation="image_convert", status=OperationStatus.COMPLETED, webhook_url=receiver.url
        )
        event = WebhookEvent.objects.get(operation=operation)

        (first,) = receiver.wait_for(1, timeout=60)
        (worker,) = children_of(pool.pid)
        # Its work-horse (sending the POST) and the RQ scheduler it runs: gone with it, as with a lost machine.
        below = descendants(worker)
        assert below, fleet.log_tails()
        os.kill(worker, signal.SIGKILL)  # first, so that it cannot report its horse's death
        for pid in below:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: not any(is_alive(pid) for pid in below), timeout=10)

        _, second = receiver.wait_for(2, timeout=90)
        fault_timings("webhook worker SIGKILLed → event delivered", time.monotonic() - killed)
    finally:
        receiver.close()

    assert first.verified and second.verified
    assert second.webhook_id == first.webhook_id == str(event.id)
    assert second.body == first.body
    assert wait_until(
        lambda: WebhookEvent.objects.filter(id=event.id, state=WebhookState.DELIVERED).exists(), timeout=20
    ), fleet.log_tails()
    event.refresh_from_db()
    assert event.attempts == 2
    # The killed attempt left no record (its worker died before writing one); the second did.
    assert list(WebhookAttempt.objects.filter(event=event).values_list("attempt", "status_code")) == [(2, 200)]
