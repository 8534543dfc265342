"""Rate limits, counted in the Redis cache with DRF's SimpleRateThrottle.

How clients are keyed: every scope is counted twice, once per session and once per client IP,
and a request is refused when either count is over the scope's rate. Starting a new session
for every request therefore does not escape a limit (the IP count still grows), and one session
used from many addresses is limited too. Clients sharing one address (an office behind NAT)
share its budget: deployments serving such clients raise the THROTTLE_* rates.

Scopes (rates from THROTTLE_ANON_BURST, THROTTLE_ANON_SUSTAINED, THROTTLE_UPLOADS,
THROTTLE_STATUS_CHECKS):

- ``anon_burst`` and ``anon_sustained`` on every endpoint, except the two below;
- ``uploads`` in addition on creating an operation and on retrying one (a retry runs the work
  again), counting only accepted ones: a refused request (a 4xx, a typo in the parameters, an
  idempotent replay) is no upload, so it costs nothing (``CountedWhenAcceptedThrottle``);
- ``status_checks`` alone on the status endpoint, which clients poll: polling gets its own
  budget so that it neither exhausts nor is exhausted by the rest of the API;
- ``/health/`` counts in ``anon_burst`` only (by IP: it has no session), so that a load
  balancer polling it all day is never refused by the daily limit.

Redis is also the queue: when it is unreachable the limits are not enforced (a warning is
logged) rather than every request failing.

The counting is DRF's sliding log (a request is allowed when fewer than N were allowed in the
last period; Retry-After is when the oldest of them leaves the window), kept in a Redis sorted set
per identity instead of DRF's cache get + set of a pickled list of timestamps, and both identities
of a scope are counted by one script: one round trip per scope instead of DRF's two per identity
(plus a Redis client built per cache call by Django's RedisCache), and no list to unpickle and
pickle again, whose size grows with the rate. A scope is one DRF throttle class that counts both
identities, so a view lists a scope once; each identity's log is still judged on its own, exactly
as two throttles would be (a request refused by one is logged by the other if it allows it, and
Retry-After is the longer wait).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from redis import Redis
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from apps.core.redis import async_redis_client, redis_client
from apps.core.utils import client_ip

logger = logging.getLogger(__name__)

# KEYS: one log per identity; ARGV: now (ms), period (ms), allowed requests, a unique member.
# Each log is judged on its own: the request is logged where it is allowed. Returns, per log, false
# when the request was allowed (and logged) there, else the time (ms) of the oldest request in it.
_SLIDING_LOG = """
local now, period, allowed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local oldest = {}
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
    if redis.call('ZCARD', key) >= allowed then
        oldest[i] = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
    else
        redis.call('ZADD', key, now, ARGV[4])
        redis.call('PEXPIRE', key, math.ceil(period))
        oldest[i] = false
    end
end
return oldest
"""


@dataclass(frozen=True)
class _LogCall:
    """One run of the sliding-log script: the identities' logs, the clock and the rate."""

    identity_keys: list[str]
    now_ms: float
    period_ms: float
    allowed: int
    member: str

    def keys(self, prefix: str) -> list[str]:
        return [f"{prefix}:{key}" if prefix else key for key in self.identity_keys]

    def args(self) -> list[Any]:
        return [self.now_ms, self.period_ms, self.allowed, self.member]


def _cache_redis() -> tuple[Redis, str]:
    """The Redis of the default cache (where DRF would count), and the cache's key prefix."""
    cache = settings.CACHES["default"]
    options = cache.get("OPTIONS", {})
    # With the cache's timeouts, so that a hung Redis cannot hang requests.
    connection = redis_client(
        cache["LOCATION"], connect_timeout=options.get("socket_connect_timeout"), timeout=options.get("socket_timeout")
    )
    return connection, cache.get("KEY_PREFIX", "")


class ClientRateThrottle(SimpleRateThrottle):
    """One scope's limit, counted for each of the client's ``identities`` (``session``, ``ip``)."""

    identities: tuple[str, ...] = ("session", "ip")
    cache_format = "throttle:%(scope)s:%(ident)s"
    # Set by SimpleRateThrottle.__init__ from the rate (None without one); djangorestframework-stubs
    # leave both out.
    num_requests: int | None
    duration: int | None
    # Set when allow_request refuses; DRF asks wait() only of a throttle that refused.
    seconds_to_wait: float | None = None
    # Where allow_request logged this request: (connection, the logs that allowed it, member).
    _logged: tuple[Redis, list[str], str] | None = None
    # The verdict when the request was judged before the view ran (``judge_in_loop``).
    judged: bool | None = None

    def get_rate(self) -> str | None:
        # DRF keeps the rates it saw at import on the class; reading them per request lets the
        # settings (and a test's override) decide.
        # djangorestframework-stubs type the rates as numbers; DRF's are strings ("60/minute").
        self.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES  # type: ignore[assignment]
        return super().get_rate()

    def get_cache_keys(self, request: Request | HttpRequest) -> list[str]:
        """The log of each identity the request has (a request without a session has no session
        log: the address still counts it)."""
        keys = []
        for identity in self.identities:
            if identity == "session":
                session = getattr(request, "session", None)
                ident = session.session_key if session is not None else None
            else:
                ident = client_ip(request)
            if ident:
                keys.append(self.cache_format % {"scope": f"{self.scope}:{identity}", "ident": ident})
        return keys

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.judged is not None:
            return self.judged
        call = self._log_call(request)
        if call is None:
            return True
        connection, prefix = _cache_redis()
        full_keys, args = call.keys(prefix), call.args()
        try:
            oldest = connection.register_script(_SLIDING_LOG)(keys=full_keys, args=args)
        except RedisError as e:
            return self._unenforced(e)
        return self._judge(call, connection, full_keys, oldest)

    async def judge_in_loop(self, request: HttpRequest) -> None:
        """``allow_request`` from the event loop (the status poll, apps/api/status_poll.py): the
        same script on the loop's client; the view's ``allow_request`` then answers with it."""
        call = self._log_call(request)
        if call is None:
            self.judged = True
            return
        cache = settings.CACHES["default"]
        connection = async_redis_client(cache["LOCATION"], timeout=cache.get("OPTIONS", {}).get("socket_timeout"))
        full_keys = call.keys(cache.get("KEY_PREFIX", ""))
        try:
            oldest = await connection.register_script(_SLIDING_LOG)(keys=full_keys, args=call.args())
        except RedisError as e:
            self.judged = self._unenforced(e)
            return
        # No connection to forget with: the poll's scopes count every request (nothing to take back).
        self.judged = self._judge(call, None, full_keys, oldest)

    def _log_call(self, request: Request | HttpRequest) -> _LogCall | None:
        """The script call that logs this request, or None when nothing limits it."""
        # parse_rate gives both numbers exactly when there is a rate.
        if self.rate is None or self.num_requests is None or self.duration is None:
            return None
        keys = self.get_cache_keys(request)
        if not keys:
            return None
        return _LogCall(keys, self.timer() * 1000, self.duration * 1000, self.num_requests, uuid.uuid4().hex)

    def _judge(self, call: _LogCall, connection: Redis | None, full_keys: list[str], oldest: list[Any]) -> bool:
        logged = [key for key, first in zip(full_keys, oldest, strict=True) if first is None]
        if logged and connection is not None:
            self._logged = (connection, logged, call.member)
        refused = [float(first) for first in oldest if first is not None]
        if not refused:
            return True
        # The longest wait, as DRF's check_throttles takes of two throttles that refused.
        self.seconds_to_wait = max(0.0, (max(refused) + call.period_ms - call.now_ms) / 1000)
        return False

    def _unenforced(self, error: RedisError) -> bool:
        logger.warning("Rate limit %s not enforced, the cache is unreachable: %s", self.scope, error)
        return True

    def wait(self) -> float:
        # DRF rounds this up into Retry-After; never less than a second. Without a refusal to
        # measure from, the whole period.
        seconds = self.seconds_to_wait if self.seconds_to_wait is not None else (self.duration or 0)
        return max(1.0, math.ceil(seconds))


class CountedWhenAcceptedThrottle(ClientRateThrottle):
    """A limit on what costs (an upload, a retry), so counting only what was accepted: a request
    refused for any reason (a 4xx, another limit, an error) is taken out of the logs again with
    ``forget()``, which the view calls once it knows the outcome.

    DRF's throttles record every request they allow, before the view runs. Recording only after
    success would let concurrent requests all pass the check before any is recorded; logging at
    the check (one atomic script) and forgetting a refused request keeps the limit exact under
    concurrency, at worst briefly holding a slot for a request about to be refused.
    """

    def forget(self) -> None:
        if self._logged is None:
            return
        connection, keys, member = self._logged
        self._logged = None
        try:
            with connection.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(key, member)
                pipe.execute()
        except RedisError as e:
            logger.warning("Could not take a refused request out of the %s limit: %s", self.scope, e)


class AnonBurstThrottle(ClientRateThrottle):
    scope = "anon_burst"


class AnonBurstIPThrottle(ClientRateThrottle):
    scope = "anon_burst"
    identities = ("ip",)


class AnonSustainedThrottle(ClientRateThrottle):
    scope = "anon_sustained"


class UploadsThrottle(CountedWhenAcceptedThrottle):
    scope = "uploads"


class StatusChecksThrottle(ClientRateThrottle):
    scope = "status_checks"


DEFAULT_THROTTLES: list[type[ClientRateThrottle]] = [AnonBurstThrottle, AnonSustainedThrottle]
UPLOAD_THROTTLES: list[type[ClientRateThrottle]] = [*DEFAULT_THROTTLES, UploadsThrottle]
STATUS_THROTTLES: list[type[ClientRateThrottle]] = [StatusChecksThrottle]
HEALTH_THROTTLES: list[type[ClientRateThrottle]] = [AnonBurstIPThrottle]
