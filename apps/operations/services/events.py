"""Live status changes: the process that changes an operation publishes its status object on Redis
pub/sub, and the web tier relays it to the operation's Server-Sent Events stream
(``GET /operations/{id}/events/``) without reading the database per stream.

- **Publishing** (``status_publish_on_commit``): every lifecycle transition that changes what the
  status object shows (queued, claimed, a phase, a new percentage, completed, failed, retrying,
  cancelled, deleted) publishes the object once its transaction commits, built where the change
  happened by the same selector as ``GET /status/``. Progress is written at most once a second per
  job, so a stream gets at most about one update a second. A Redis that cannot be reached costs a
  log line, never the status change.
- **Relaying** (``status_subscription``): one pub/sub subscription per open stream on
  ``redis.asyncio``, so that an open stream is an idle coroutine in the web process's event loop,
  not a thread or a worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.db import DatabaseError, transaction
from redis.exceptions import RedisError

from apps.core.redis import async_redis_client, redis_client
from apps.operations.models import Operation
from apps.operations.selectors import STATUS_FIELDS, OperationStatusInfo, operation_status_of

logger = logging.getLogger(__name__)

# Publishing waits this long for Redis at most; a status change never waits longer on it.
PUBLISH_TIMEOUT_SECONDS = 2.0


def channel_for(operation_id: uuid.UUID | str) -> str:
    return f"konvrt:operation-status:{operation_id}"


def status_as_dict(info: OperationStatusInfo) -> dict[str, Any]:
    """The status object as JSON-ready data (the API's ``OperationStatusSerializer`` shape)."""
    # Its fields are plain values: vars() instead of asdict(), which deep-copies each (a tenth of a poll).
    return {**vars(info), "id": str(info.id)}


def _redis_url() -> str:
    # The Redis that holds the queues: every process of a deployment reaches the same one.
    return str(next(iter(settings.RQ_QUEUES.values()))["URL"])


# --- publishing -----------------------------------------------------------------------------------
def status_publish_on_commit(operation_id: uuid.UUID) -> None:
    """Publish the operation's status object once the current transaction commits (at once
    outside one)."""
    transaction.on_commit(lambda: status_publish(operation_id))


def status_publish(operation_id: uuid.UUID) -> None:
    try:
        operation = Operation.objects.filter(id=operation_id).only(*STATUS_FIELDS).first()
        if operation is None:
            return
        message = json.dumps(status_as_dict(operation_status_of(operation)))
        client = redis_client(_redis_url(), connect_timeout=PUBLISH_TIMEOUT_SECONDS, timeout=PUBLISH_TIMEOUT_SECONDS)
        client.publish(channel_for(operation_id), message)
    except (RedisError, DatabaseError) as e:
        logger.warning("Could not publish the status of operation %s: %s", operation_id, e)


# --- relaying -------------------------------------------------------------------------------------
def _async_client() -> aioredis.Redis:
    return async_redis_client(_redis_url())


class StatusSubscription:
    """The published status objects of one operation, in order."""

    def __init__(self, pubsub: aioredis.client.PubSub) -> None:
        self._pubsub = pubsub

    async def next(self, *, timeout: float) -> dict[str, Any] | None:
        """The next status object, or ``None`` when none came within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if message is not None and message.get("type") == "message":
                data: dict[str, Any] = json.loads(message["data"])
                return data
        return None


@asynccontextmanager
async def status_subscription(operation_id: uuid.UUID | str) -> AsyncIterator[StatusSubscription]:
    """Subscribe to an operation's status changes (raises ``RedisError`` when Redis cannot be
    reached). Subscribe before reading the current status, so that no change falls in between."""
    pubsub = _async_client().pubsub()
    try:
        await pubsub.subscribe(channel_for(operation_id))
        yield StatusSubscription(pubsub)
    finally:
        try:
            await pubsub.aclose()
        except RedisError as e:
            logger.info("Closing the status subscription of %s: %s", operation_id, e)
