"""The Server-Sent Events stream of an operation's status (``GET /operations/{id}/events/``).

The view answers at once with a ``StreamingHttpResponse`` over ``status_events``, an async
iterator: under the ASGI server each open stream is a coroutine waiting on Redis pub/sub in the
event loop (``apps.operations.services.events``), holding no thread and no worker, and reading the
database only once, when it starts. It sends

- ``event: status`` with the status object at once (read after subscribing, so that no change is
  missed in between), then one for every change the workers publish (at most about one a second);
- a comment line every ``KEEPALIVE_SECONDS`` (15), so that proxies keep the connection open;
- and ends after a terminal status. When Redis cannot be reached it sends the current status and
  ends, and the client falls back to polling ``/status/``.

Under a WSGI server (Django's development server) a stream would hold a worker thread for its whole
life, so there ``status_once`` sends the current status and ends: ``EventSource`` reconnects after
``retry`` (3 s), which amounts to polling.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django import db
from redis.exceptions import RedisError

from apps.core.exceptions import NotFound
from apps.operations import selectors
from apps.operations.enums import OperationStatus
from apps.operations.services.events import status_as_dict, status_subscription

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
# Tells EventSource how long to wait before reconnecting after the stream drops.
RETRY_MILLISECONDS = 3000


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _is_terminal(status: dict[str, Any]) -> bool:
    return status.get("status") in OperationStatus.terminal()


def _current_status(session_key: str, operation_id: uuid.UUID) -> dict[str, Any] | None:
    try:
        return status_as_dict(selectors.operation_status(session_key=session_key, operation_id=operation_id))
    except NotFound:
        return None  # deleted since the stream was opened
    finally:
        # A stream stays open for minutes: it must not keep a database connection all that time.
        # This runs in the request's own thread (the view's, whose connection this also closes).
        db.connection.close()


def status_once(status: dict[str, Any]) -> Iterator[bytes]:
    """The stream under a WSGI server: the status now, then the end."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    yield sse_event("status", status)


async def status_events(*, session_key: str, operation_id: uuid.UUID) -> AsyncIterator[bytes]:
    """The stream's bytes, until the operation's status is terminal."""
    keepalive = KEEPALIVE_SECONDS
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    read = sync_to_async(_current_status)
    try:
        async with status_subscription(operation_id) as subscription:
            status = await read(session_key, operation_id)
            if status is None:
                return
            yield sse_event("status", status)
            while not _is_terminal(status):
                update = await subscription.next(timeout=keepalive)
                if update is None:
                    yield b": keep-alive\n\n"
                    continue
                status = update
                yield sse_event("status", status)
    except RedisError as e:
        logger.warning("Status stream of %s without Redis: %s", operation_id, e)
        status = await read(session_key, operation_id)
        if status is not None:
            yield sse_event("status", status)
