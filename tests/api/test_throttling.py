"""Rate limits: counted per session and per IP in Redis, 429 with Retry-After, open when Redis is down."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.api.throttling import ClientRateThrottle
from tests.api.conftest import API, session_key_of, upload

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


def test_each_identity_is_judged_on_its_own_and_retry_after_is_the_longer_wait(client, rates, clock, redis_connection):
    # One script counts a scope for the session and the address; each log must still behave as
    # its own throttle would: a request refused by one is logged by the other if it allows it.
    client.get(f"{API}/session/")
    redis_connection.flushdb()
    rates(anon_burst="2/minute")
    assert client.get(f"{API}/session/", REMOTE_ADDR="10.0.0.1").status_code == 200  # t=0
    clock.now += 10
    assert client.get(f"{API}/session/", REMOTE_ADDR="10.0.0.2").status_code == 200  # t=10
    clock.now += 10
    # t=20: the session's log is full (its oldest leaves at 60), 10.0.0.2's is not: refused, and
    # logged for 10.0.0.2.
    refused_by_session = client.get(f"{API}/session/", REMOTE_ADDR="10.0.0.2")
    assert_throttled(refused_by_session)
    assert refused_by_session["Retry-After"] == "40"

    clock.now += 5
    # t=25: a browser without a session on 10.0.0.2 finds that address's log full (10 and 20).
    stranger = Client().get(f"{API}/session/", REMOTE_ADDR="10.0.0.2")
    assert_throttled(stranger)
    assert stranger["Retry-After"] == "45"

    clock.now += 5
    # t=30: both logs refuse, the session's until 60 and the address's until 70: the longer wait.
    both = client.get(f"{API}/session/", REMOTE_ADDR="10.0.0.2")
    assert_throttled(both)
    assert both["Retry-After"] == "40"


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


def test_uploads_are_limited_per_hour(client, rates, media):
    rates(uploads="1/hour")
    assert upload(client, media.png(), operation="image_resize", parameters={"width": 8}).status_code == 201

    response = upload(client, media.png(), operation="image_resize", parameters={"width": 8})

    assert_throttled(response, period=3600)


def test_refused_uploads_are_not_counted(client, rates, media):
    rates(uploads="2/hour")
    typos = [
        client.post(f"{API}/operations/", {}),
        upload(client, media.png(), operation="image_resise"),
        upload(client, media.png(), operation="image_resize", parameters={"widht": 8}),
        upload(client, media.text(extension="png"), operation="image_resize", parameters={"width": 8}),
    ]
    assert [r.status_code for r in typos] == [400, 400, 400, 415]

    accepted = [upload(client, media.png(), operation="image_resize", parameters={"width": 8}) for _ in range(2)]

    assert [r.status_code for r in accepted] == [201, 201]
    assert_throttled(upload(client, media.png(), operation="image_resize", parameters={"width": 8}), period=3600)


def test_a_new_browser_behind_the_same_address_is_not_refused_for_anothers_typos(client, rates, media):
    rates(uploads="2/hour")
    for _ in range(3):
        assert client.post(f"{API}/operations/", {}).status_code == 400

    newcomer = Client()
    assert upload(newcomer, media.png(), operation="image_resize", parameters={"width": 8}).status_code == 201


def test_a_replayed_upload_is_not_counted_again(client, rates, media):
    rates(uploads="2/hour")
    headers = {"Idempotency-Key": "photo-1"}
    first = upload(client, media.png(), operation="image_resize", parameters={"width": 8}, headers=headers)
    again = upload(client, media.png(), operation="image_resize", parameters={"width": 8}, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert upload(client, media.png(), operation="image_resize", parameters={"width": 8}).status_code == 201


def test_a_retry_counts_as_an_upload(client, rates, media):
    rates(uploads="2/hour")
    created = upload(client, media.png(), operation="image_resize", parameters={"width": 8})
    operation_id = created.json()["data"]["id"]
    assert client.post(f"{API}/operations/{operation_id}/cancel/").status_code == 200
    assert client.post(f"{API}/operations/{operation_id}/retry/").status_code == 200
    assert client.post(f"{API}/operations/{operation_id}/cancel/").status_code == 200

    assert_throttled(client.post(f"{API}/operations/{operation_id}/retry/"), period=3600)


def test_a_refused_retry_is_not_counted(client, rates, media):
    rates(uploads="2/hour")
    created = upload(client, media.png(), operation="image_resize", parameters={"width": 8})
    operation_id = created.json()["data"]["id"]
    # Still queued: a retry is refused (409), and costs nothing.
    assert [client.post(f"{API}/operations/{operation_id}/retry/").status_code for _ in range(3)] == [409] * 3

    assert upload(client, media.png(), operation="image_resize", parameters={"width": 8}).status_code == 201


def test_health_is_not_refused_by_the_daily_limit(client, rates):
    rates(anon_sustained="2/day")

    assert [client.get(f"{API}/health/").status_code for _ in range(4)] == [200] * 4


def test_limits_are_not_enforced_while_redis_is_down(client, rates, own_redis):
    rates(anon_burst="1/minute")
    own_redis.stop()

    assert [client.get(f"{API}/session/").status_code for _ in range(3)] == [200] * 3
