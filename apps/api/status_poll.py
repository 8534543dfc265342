"""The status poll served from the event loop, without a thread.

Polling ``GET /operations/{id}/status/`` is what every client does all day. Served like any other
request, a poll paid for a thread of its own (Django's ASGI handler starts one per request) and
held it through three network round trips: the rate-limit script, the query and the queue-position
script. Here the web tier (``config/asgi.py``) does those three reads first, in the event loop, on
asynchronous clients (``ClientRateThrottle.judge_in_loop``, ``operation_status_async``), and then
runs Django's usual chain for the request in the loop too: the middlewares, the URL, DRF's view,
its throttle and the exception handler, which answer with what was read instead of reading again.
So every header, the envelope, content negotiation and the errors are the usual ones, and
nothing in that chain may touch the database (Django refuses a query in the event loop, so a
mistake fails loudly rather than blocking the loop).

Only a poll that takes the usual path anyway is read ahead: GET or HEAD on the exact path with no
query string (``?format=`` and the like go the usual way), on PostgreSQL with
WEB_STATUS_DB_CONNECTIONS > 0, unless sessions are saved on every request (a query in the chain).
The one difference: a poll counts in its rate limit before Django's own checks (an untrusted
Host, the HTTPS redirect, an unacceptable Accept) refuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from psycopg import Error as DatabaseDriverError
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError

from apps.api.throttling import STATUS_THROTTLES, ClientRateThrottle
from apps.core.exceptions import NotFound
from apps.core.middleware import session_named_by
from apps.operations import selectors
from apps.operations.selectors import OperationStatusInfo

# The router's detail route for the status action: a primary key is anything without "/" or ".".
STATUS_PATH = re.compile(r"^/api/v1/operations/(?P<pk>[^/.]+)/status/$")
ATTRIBUTE = "status_poll"


@dataclass
class ReadAhead:
    """What was read for one poll before its view ran."""

    throttles: list[ClientRateThrottle]
    status: OperationStatusInfo | None = None
    error: Exception | None = field(default=None, repr=False)

    def result(self) -> OperationStatusInfo:
        if self.error is not None:
            raise self.error
        if self.status is None:
            raise RuntimeError("The status was not read ahead.")
        return self.status


def served_in_loop(scope: dict[str, Any]) -> bool:
    """Whether this ASGI request is a poll to read ahead."""
    return (
        scope["type"] == "http"
        and scope["method"] in ("GET", "HEAD")
        and not scope.get("query_string")
        and STATUS_PATH.match(scope["path"]) is not None
        and selectors.operation_status_readable_in_loop()
        # Saving the session on every request is a query the chain would make in the loop.
        and not settings.SESSION_SAVE_EVERY_REQUEST
    )


async def read_ahead(request: HttpRequest) -> ReadAhead:
    """The poll's rate limit, and unless it is refused, its status, read and kept on ``request``."""
    # What the session middlewares will set, so that the throttles count the same identities.
    request.session = session_named_by(request)
    throttles: list[ClientRateThrottle] = [throttle() for throttle in STATUS_THROTTLES]
    for throttle in throttles:
        await throttle.judge_in_loop(request)
    ahead = ReadAhead(throttles=throttles)
    setattr(request, ATTRIBUTE, ahead)
    if not all(throttle.judged for throttle in throttles):
        return ahead  # the view answers 429 before it asks for the status
    key = request.session.session_key
    if key is None:
        ahead.error = NotFound(selectors.NOT_FOUND_MESSAGE)
        return ahead
    match = STATUS_PATH.match(request.path)
    operation_id = match["pk"] if match else ""
    try:
        ahead.status = await selectors.operation_status_async(session_key=key, operation_id=operation_id)
    except (NotFound, DatabaseDriverError, PoolTimeout, RedisError) as e:
        ahead.error = e
    return ahead


def read_ahead_of(request: Any) -> ReadAhead | None:
    """What ``read_ahead`` kept on this request (a Django or DRF request), if it ran."""
    return getattr(request, ATTRIBUTE, None)
