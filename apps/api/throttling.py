"""Rate limits, counted in the Redis cache with DRF's SimpleRateThrottle.

How clients are keyed: every scope is counted twice, once per session and once per client IP,
and a request is refused when either count is over the scope's rate. Starting a new session
for every request therefore does not escape a limit (the IP count still grows), and one session
used from many addresses is limited too. Clients sharing one address (an office behind NAT)
share its budget: deployments serving such clients raise the THROTTLE_* rates.

Scopes (rates from THROTTLE_ANON_BURST, THROTTLE_ANON_SUSTAINED, THROTTLE_UPLOADS,
THROTTLE_STATUS_CHECKS):

- ``anon_burst`` and ``anon_sustained`` on every endpoint, except the two below;
- ``uploads`` in addition on creating an operation;
- ``status_checks`` alone on the status endpoint, which clients poll: polling gets its own
  budget so that it neither exhausts nor is exhausted by the rest of the API;
- ``/health/`` counts in ``anon_burst`` only (by IP: it has no session), so that a load
  balancer polling it all day is never refused by the daily limit.

Redis is also the queue: when it is unreachable the limits are not enforced (a warning is
logged) rather than every request failing.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from apps.core.utils import client_ip

logger = logging.getLogger(__name__)


class ClientRateThrottle(SimpleRateThrottle):
    """One scope's count for one of the client's identities (``session`` or ``ip``)."""

    identity = ""

    def get_rate(self) -> str | None:
        # DRF keeps the rates it saw at import on the class; reading them per request lets the
        # settings (and a test's override) decide.
        self.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        return super().get_rate()

    def get_cache_key(self, request, view) -> str | None:
        if self.identity == "session":
            session = getattr(request, "session", None)
            ident = session.session_key if session is not None else None
        else:
            ident = client_ip(request)
        if not ident:
            return None
        return self.cache_format % {"scope": f"{self.scope}:{self.identity}", "ident": ident}

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as e:
            logger.warning("Rate limit %s not enforced, the cache is unreachable: %s", self.scope, e)
            return True


class _BySession(ClientRateThrottle):
    identity = "session"


class _ByIP(ClientRateThrottle):
    identity = "ip"


class AnonBurstSessionThrottle(_BySession):
    scope = "anon_burst"


class AnonBurstIPThrottle(_ByIP):
    scope = "anon_burst"


class AnonSustainedSessionThrottle(_BySession):
    scope = "anon_sustained"


class AnonSustainedIPThrottle(_ByIP):
    scope = "anon_sustained"


class UploadsSessionThrottle(_BySession):
    scope = "uploads"


class UploadsIPThrottle(_ByIP):
    scope = "uploads"


class StatusChecksSessionThrottle(_BySession):
    scope = "status_checks"


class StatusChecksIPThrottle(_ByIP):
    scope = "status_checks"


DEFAULT_THROTTLES = [
    AnonBurstSessionThrottle,
    AnonBurstIPThrottle,
    AnonSustainedSessionThrottle,
    AnonSustainedIPThrottle,
]
UPLOAD_THROTTLES = [*DEFAULT_THROTTLES, UploadsSessionThrottle, UploadsIPThrottle]
STATUS_THROTTLES = [StatusChecksSessionThrottle, StatusChecksIPThrottle]
HEALTH_THROTTLES = [AnonBurstIPThrottle]
