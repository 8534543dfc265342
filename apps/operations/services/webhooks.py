"""Signed webhooks (Standard Webhooks 1.0): an operation's terminal status POSTed to its ``webhook_url``.

At least once, never lost:

1. **The outbox.** When an operation reaches ``completed``, ``failed`` or ``cancelled`` the lifecycle
   transition writes a ``WebhookEvent`` in the same transaction (``event_record``): the event
   exists exactly when the status change does. Its body (type, timestamp and the operation object as
   the API shows it) is rendered then and never changes, so every attempt signs the same bytes under
   the same ``webhook-id``.
2. **Delivery jobs** on ``webhook_queue`` (a worker group of its own: a slow receiver never holds
   up media work). A job claims the event's next attempt with a compare-and-set that also sets a
   lease (``next_attempt_at`` = now + ``WEBHOOK_TIMEOUT`` + ``RECOVERY_STALE_SECONDS``), POSTs, logs
   the attempt and either ends the event (a 2xx: delivered; a 410: gone; the retries spent:
   failed) or sets when the next attempt is due and schedules it with RQ's ``enqueue_at`` (RQ's
   scheduler). No redirect is followed: a 3xx is a failed attempt like any other non-2xx answer.
3. **The sweep** (``webhook_sweep_run``, RQ cron every ``RECOVERY_INTERVAL_SECONDS``): a pending
   event whose attempt is overdue and whose job RQ no longer holds (a worker SIGKILLed during the
   POST, Redis restarted without its data, the enqueue failed) gets its job back. The claim makes
   any number of jobs for one attempt safe: only one of them sends.

Receivers deduplicate on ``webhook-id`` (a worker killed after the receiver answered but before
the attempt was recorded sends it again).

Signing is HMAC-SHA256 over ``"<webhook-id>.<webhook-timestamp>.<body>"`` with the key that
``WEBHOOK_SECRET`` (``whsec_`` + base64) encodes, written out here (``signature``) rather than
taken from the ``standardwebhooks`` library: it is five lines of the standard library, and the
tests verify every delivery with that library, an implementation independent of ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core import queues
from apps.core.exceptions import InvalidState, ValidationFailed
from apps.core.outbound import OutboundFailed, OutboundRefused, check_url, outbound_request
from apps.operations.enums import WebhookEventType, WebhookOutcome, WebhookState
from apps.operations.models import WEBHOOK_URL_MAX_LENGTH, Operation, WebhookAttempt, WebhookEvent

logger = logging.getLogger(__name__)

WEBHOOK_QUEUE = "webhook_queue"
JOB_FUNCTION = "apps.operations.jobs.deliver_webhook"
# The job's time limit beyond WEBHOOK_TIMEOUT: time to record the attempt.
JOB_MARGIN_SECONDS = 30
SWEEP_LIMIT = 500
SCHEDULER_RESOLUTION = timedelta(seconds=1)
RESULT_TTL = 60 * 60
FAILURE_TTL = 24 * 60 * 60
USER_AGENT = "Konvrt-Webhooks/1.1"
SECRET_MISSING_MESSAGE = "Webhooks are not enabled on this server: set WEBHOOK_SECRET to use webhook_url."  # noqa: S105 - a sentence, not a secret

# The API's representation of an operation (``GET /operations/{id}/``), registered by apps.api when
# Django starts (``apps.api.apps``): this layer may not import the API's serializers, and an event's
# ``data`` must be exactly what the API shows.
OperationRenderer = Callable[[Operation, str], dict[str, Any]]
_renderer: OperationRenderer | None = None


def register_operation_renderer(renderer: OperationRenderer) -> None:
    global _renderer  # set once at start-up, read by every event
    _renderer = renderer


def webhooks_enabled() -> bool:
    return bool(settings.WEBHOOK_SECRET)


# --- at create time -------------------------------------------------------------------------------
def webhook_url_check(url: str) -> str:
    """The ``webhook_url`` of a create, checked: webhooks enabled, an absolute http(s) URL of at
    most 2048 characters without ``user:password@``, a host the outbound guard allows.
    ``ValidationFailed`` (400 on the field) otherwise."""
    url = url.strip()
    if not webhooks_enabled():
        raise _invalid(SECRET_MISSING_MESSAGE)
    if len(url) > WEBHOOK_URL_MAX_LENGTH:
        raise _invalid(f"The webhook URL is longer than {WEBHOOK_URL_MAX_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise _invalid("The webhook URL is not a valid URL.") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("The webhook URL must be an absolute http:// or https:// address.")
    if parts.username is not None or parts.password is not None:
        raise _invalid("The webhook URL must not contain a user name or password.")
    refusal = outbound_refusal(url)
    if refusal is not None:
        raise _invalid(refusal)
    return url


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"webhook_url": [message]})


# --- the outbox -----------------------------------------------------------------------------------
def event_record(*, operation: Operation) -> WebhookEvent | None:
    """The event of an operation that has just reached a terminal status, written in the caller's
    transaction and delivered once it commits. ``None`` when the operation has no ``webhook_url``."""
    if not operation.webhook_url:
        return None
    event_type = WebhookEventType.for_status(operation.status)
    if event_type is None:
        return None
    if _renderer is None:
        raise ImproperlyConfigured("No operation renderer registered: apps.api must be in INSTALLED_APPS.")
    now = timezone.now()
    base_url = settings.PUBLIC_BASE_URL or operation.public_base_url
    body = json.dumps(
        {"type": event_type.value, "timestamp": now.isoformat(), "data": _renderer(operation, base_url)},
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
    )
    event = WebhookEvent.objects.create(
        operation=operation, type=event_type, url=operation.webhook_url, body=body, next_attempt_at=now
    )
    transaction.on_commit(lambda: event_enqueue(event_id=event.id, attempt=1))
    return event


def event_enqueue(*, event_id: uuid.UUID, attempt: int, at: datetime | None = None) -> bool:
    """Put attempt ``attempt`` of an event on the webhook queue (at ``at``, through RQ's
    scheduler). ``False`` when Redis cannot be reached: the sweep queues it later."""
    queue = queues.get_queue(WEBHOOK_QUEUE)
    options: dict[str, Any] = {
        "job_id": job_id_for(event_id, attempt),
        "job_timeout": settings.WEBHOOK_TIMEOUT + JOB_MARGIN_SECONDS,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "description": f"webhook {event_id} attempt {attempt}",
    }
    try:
        if at is not None:
            queue.enqueue_at(at, JOB_FUNCTION, str(event_id), **options)
        else:
            queue.enqueue(JOB_FUNCTION, str(event_id), **options)
    except RedisError as e:
        logger.warning("Could not queue webhook %s attempt %s; the sweep will: %s", event_id, attempt, e)
        return False
    return True


def job_id_for(event_id: uuid.UUID | str, attempt: int) -> str:
    return f"webhook-{event_id}-{attempt}"


def event_redeliver(*, operation: Operation) -> WebhookEvent:
    """Send the operation's latest event again: same ``webhook-id``, a new attempt now, and the
    retry delays again from the start if it fails."""
    event = operation.webhook_events.order_by("-created_at").first()
    if event is None:
        raise InvalidState("This operation has no webhook event to deliver again.")
    if not webhooks_enabled():
        raise InvalidState(SECRET_MISSING_MESSAGE)
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(id=event.id)
        event.state = WebhookState.PENDING
        event.next_attempt_at = timezone.now()
        event.round_start = event.attempts + 1
        event.save(update_fields=["state", "next_attempt_at", "round_start"])
        attempt = event.attempts + 1
        transaction.on_commit(lambda: event_enqueue(event_id=event.id, attempt=attempt))
    return event


# --- delivery -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """What one POST got: a status code, or no answer and a sentence saying why."""

    status_code: int | None
    error: str = ""


def event_deliver(*, event_id: uuid.UUID) -> str:
    """Make the event's next attempt if it is due and nobody else is making it; returns what
    happened (``delivered``, ``gone``, ``retrying``, ``failed``, ``skipped``)."""
    now = timezone.now()
    # The attempt's lease: past it the attempt counts as lost (its worker gone, as the recovery
    # sweep judges a silent job) and the sweep may start the next one.
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT + settings.RECOVERY_STALE_SECONDS)
    # RQ's scheduler keeps whole seconds, so a retry's job may start up to a second early.
    due = now + SCHEDULER_RESOLUTION
    claimed = WebhookEvent.objects.filter(id=event_id, state=WebhookState.PENDING, next_attempt_at__lte=due).update(
        attempts=F("attempts") + 1, next_attempt_at=lease
    )
    if claimed != 1:
        return "skipped"
    event = WebhookEvent.objects.get(id=event_id)
    attempt = event.attempts
    started = time.monotonic()
    answer = _send(event)
    duration_ms = round((time.monotonic() - started) * 1000)
    return _record(event, attempt=attempt, answer=answer, duration_ms=duration_ms, attempted_at=now)


def _send(event: WebhookEvent) -> Answer:
    secret = settings.WEBHOOK_SECRET
    if not secret:
        return Answer(None, "WEBHOOK_SECRET is no longer set on the server, so the event cannot be signed.")
    timestamp = int(time.time())
    webhook_id = str(event.id)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=event.body),
    }
    return outbound_post(event.url, body=event.body.encode(), headers=headers, timeout=settings.WEBHOOK_TIMEOUT)


def signature(*, secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """Standard Webhooks' ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``."""
    encoded = secret.removeprefix("whsec_")
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))  # padding optional, as in the libraries
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _record(event: WebhookEvent, *, attempt: int, answer: Answer, duration_ms: int, attempted_at: datetime) -> str:
    code = answer.status_code
    if code is not None and 200 <= code < 300:
        outcome, state, next_at = WebhookOutcome.DELIVERED, WebhookState.DELIVERED, None
    elif code == 410:
        outcome, state, next_at = WebhookOutcome.REJECTED, WebhookState.GONE, None
    else:
        outcome = WebhookOutcome.UNREACHABLE if code is None else WebhookOutcome.REJECTED
        delays = settings.WEBHOOK_RETRY_DELAYS
        retries_made = attempt - event.round_start
        if retries_made < len(delays):
            state, next_at = WebhookState.PENDING, timezone.now() + timedelta(seconds=delays[retries_made])
        else:
            state, next_at = WebhookState.FAILED, None
    error = answer.error
    if code is not None and 300 <= code < 400 and not error:
        error = "The receiver answered with a redirect; redirects are not followed."
    with transaction.atomic():
        WebhookAttempt.objects.create(
            event=event,
            attempt=attempt,
            url=event.url,
            outcome=outcome,
            status_code=code,
            error=error,
            duration_ms=duration_ms,
            attempted_at=attempted_at,
            next_attempt_at=next_at,
        )
        # Only while this attempt is still the event's latest (a redelivery may have moved it on).
        WebhookEvent.objects.filter(id=event.id, attempts=attempt).update(state=state, next_attempt_at=next_at)
        if next_at is not None:
            transaction.on_commit(lambda: event_enqueue(event_id=event.id, attempt=attempt + 1, at=next_at))
    if state == WebhookState.PENDING:
        logger.info("Webhook %s attempt %s to %s: %s %s; retrying", event.id, attempt, event.url, code, error)
        return "retrying"
    logger.info("Webhook %s attempt %s to %s: %s %s; %s", event.id, attempt, event.url, code, error, state)
    return str(state)


# --- the sweep ------------------------------------------------------------------------------------
def webhook_sweep_run(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> int:
    """Queue again the overdue attempts whose job RQ no longer holds (see the module docstring).
    Returns how many it queued."""
    from apps.operations.services.recovery import job_will_run  # the recovery sweep's own test of a job

    now = now or timezone.now()
    # RQ's scheduler moves a due job onto the queue within a second or so: an attempt is called
    # overdue only after as long as a job may stay silent.
    heartbeat_before = now - timedelta(seconds=settings.RECOVERY_STALE_SECONDS)
    overdue = WebhookEvent.objects.filter(state=WebhookState.PENDING, next_attempt_at__lt=heartbeat_before)
    queued = 0
    for event_id, attempts in overdue.order_by("next_attempt_at").values_list("id", "attempts")[:limit]:
        attempt = attempts + 1
        if job_will_run(
            job_id=job_id_for(event_id, attempt), queue_name=WEBHOOK_QUEUE, heartbeat_before=heartbeat_before
        ):
            continue
        # A lost attempt's lease has run out: make the next one due now.
        WebhookEvent.objects.filter(id=event_id, state=WebhookState.PENDING, attempts=attempts).update(
            next_attempt_at=timezone.now()
        )
        if event_enqueue(event_id=event_id, attempt=attempt):
            queued += 1
    if queued:
        logger.warning("Webhook sweep: queued %s overdue deliveries again", queued)
    return queued


# --- the one outbound call ------------------------------------------------------------------------
def outbound_refusal(url: str) -> str | None:
    """Why the outbound guard refuses ``url`` (a sentence), or ``None`` when it may be contacted."""
    try:
        check_url(url)
    except OutboundRefused as e:
        return e.message
    return None


def outbound_post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST ``body`` to ``url`` once through the outbound guard (the host resolved and checked
    again now: an address that turned private since the create is refused): no redirect followed,
    no retry, ``timeout`` for the whole exchange. A receiver's answer body is read and dropped."""
    try:
        with Path(os.devnull).open("wb") as discard:
            response = outbound_request(
                "POST", url, headers=headers, body=body, timeout=timeout, max_redirects=0, sink=discard
            )
    except (OutboundRefused, OutboundFailed) as e:
        return Answer(None, e.message)
    return Answer(response.status)
