"""Rate limits: counted per session and per IP in Redis, 429 with Retry-After, open when Redis is down."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.api.throttling import ClientRateThrottle
from tests.api.conftest import API, session_key_of

pytestmark = pytest.mark.django_db

GENEROUS = {
    "anon_burst": "1000/minute",
    "anon_sustained": "1000/day",
    "uploads": "1000/hour",
    "status_checks": "1000/minute",
}


@pytest.fixture
def rates(settings):
    def set_rates(**scopes: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**GENEROUS, **scopes}}

    return set_rates


def assert_throttled(response, *, period: int = 60) -> None:
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= period
    error = response.json()["error"]
    assert error["code"] == "throttled"
    assert error["details"] == {"retry_after": retry_after}
    assert f"wait {retry_after} seconds" in error["message"]


def test_burst_limit_gives_429_with_retry_after(client, rates):
    rates(anon_burst="3/minute")
    responses = [client.get(f"{API}/session/") for _ in range(4)]

    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    assert_throttled(responses[3])


class Clock:
    """The throttles' clock (DRF's ``SimpleRateThrottle.timer``), moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(ClientRateThrottle, "timer", clock)
    return clock


def test_a_request_is_allowed_again_once_the_oldest_leaves_the_window(client, rates, clock, redis_connection):
    # A session of its own first (the request that creates one is counted by address only), then
    # counts from zero, so that the session's and the address's windows are the same.
    client.get(f"{API}/session/")
    redis_connection.flushdb()
    rates(anon_burst="2/minute")
    assert client.get(f"{API}/session/").status_code == 200
    clock.now += 10
    assert client.get(f"{API}/session/").status_code == 200
    clock.now += 10
    assert_throttled(refused := client.get(f"{API}/session/"))
    assert refused["Retry-After"] == "40"  # when the first request leaves the minute

    clock.now += 39.9
    assert client.get(f"{API}/session/").status_code == 429
    clock.now += 0.1

    assert client.get(f"{API}/session/").status_code == 200
    assert client.get(f"{API}/session/").status_code == 429  # the second one is still in the window


def test_new_sessions_do_not_escape_the_limit(rates):
    rates(anon_burst="3/minute")
    for _ in range(3):
        assert Client().get(f"{API}/session/").status_code == 200

    assert_throttled(Client().get(f"{API}/session/"))


def test_one_session_from_many_addresses_is_limited(client, rates):
    rates(anon_burst="3/minute")
    # The request that creates the session is counted by its address only: three more follow.
    key = session_key_of(client)
    for address in ("10.0.0.2", "10.0.0.3", "10.0.0.5"):
        assert client.get(f"{API}/session/", REMOTE_ADDR=address).status_code == 200

    assert_throttled(client.get(f"{API}/session/", REMOTE_ADDR="10.0.0.4", headers={"X-Session-Key": key}))


def test_status_polls_have_their_own_budget(client, rates, make_operation):
    rates(anon_burst="2/minute", status_checks="5/minute")
    key = session_key_of(client)
    operation = make_operation(key, operation="image_resize")
    polls = [client.get(f"{API}/operations/{operation.id}/status/") for _ in range(6)]

    assert [r.status_code for r in polls[:5]] == [200] * 5
    assert_throttled(polls[5])


def test_uploads_are_limited_per_hour(client, rates):
    rates(uploads="1/hour")
    client.post(f"{API}/operations/", {})  # counted even though it is refused as invalid

    response = client.post(f"{API}/operations/", {})

    assert_throttled(response, period=3600)


def test_health_is_not_refused_by_the_daily_limit(client, rates):
    rates(anon_sustained="2/day")

    assert [client.get(f"{API}/health/").status_code for _ in range(4)] == [200] * 4


def test_limits_are_not_enforced_while_redis_is_down(client, rates, own_redis):
    rates(anon_burst="1/minute")
    own_redis.stop()

    assert [client.get(f"{API}/session/").status_code for _ in range(3)] == [200] * 3
