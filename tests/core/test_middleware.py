"""Anonymous identity: a session per API client, by cookie or by the X-Session-Key header."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session

pytestmark = pytest.mark.django_db


def test_first_api_request_gets_a_session_in_header_and_cookie(client):
    response = client.get("/api/v1/session/")

    key = response["X-Session-Key"]
    assert response.status_code == 200
    assert response.json()["data"]["session_key"] == key
    assert response.cookies["sessionid"].value == key
    assert Session.objects.filter(session_key=key).exists()


def test_cookie_identifies_the_same_session(client):
    first = client.get("/api/v1/session/")["X-Session-Key"]
    second = client.get("/api/v1/session/")["X-Session-Key"]
    assert first == second


def test_header_identifies_the_session_without_cookies(client, django_user_model):
    key = client.get("/api/v1/session/")["X-Session-Key"]
    client.cookies.clear()

    response = client.get("/api/v1/session/", headers={"X-Session-Key": key})

    assert response.json()["data"]["session_key"] == key


def test_header_wins_over_cookie(client):
    from django.test import Client

    other_key = Client().get("/api/v1/session/")["X-Session-Key"]
    own_key = client.get("/api/v1/session/")["X-Session-Key"]

    response = client.get("/api/v1/session/", headers={"X-Session-Key": other_key})

    assert own_key != other_key
    assert response["X-Session-Key"] == other_key


def test_made_up_header_key_gets_a_fresh_session_not_that_key(client):
    response = client.get("/api/v1/session/", headers={"X-Session-Key": "madeupkey1234567890abcdefghijklm"})

    assert response["X-Session-Key"] != "madeupkey1234567890abcdefghijklm"
    assert Session.objects.filter(session_key=response["X-Session-Key"]).exists()


def test_health_checks_do_not_create_sessions(client):
    client.get("/api/v1/health/")
    assert Session.objects.count() == 0


def test_non_api_paths_are_left_alone(client):
    client.get("/admin/login/")
    assert Session.objects.count() == 0


# --- sessions are created only by requests that reach a real endpoint past the throttles ----------
def test_unknown_paths_405s_and_health_create_no_session(client):
    client.get("/api/v1/no-such-thing/")
    client.post("/api/v1/operations/0.5/cancel/")
    client.delete("/api/v1/session/")  # 405
    client.put("/api/v1/operation-definitions/")  # 405
    client.get("/api/v1/health/")
    client.get("/api/v2/operations/")

    assert Session.objects.count() == 0


def test_a_throttled_request_creates_no_session(client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon_burst": "1/minute"},
    }
    from django.test import Client

    assert Client().get("/api/v1/session/").status_code == 200
    refused = [Client().get("/api/v1/session/") for _ in range(3)]

    assert {response.status_code for response in refused} == {429}
    assert all("X-Session-Key" not in response for response in refused)
    assert Session.objects.count() == 1


def test_reading_an_operation_without_a_session_is_a_404_that_creates_none(client):
    response = client.get("/api/v1/operations/00000000-0000-0000-0000-000000000000/status/")

    assert response.status_code == 404
    assert "X-Session-Key" not in response
    assert Session.objects.count() == 0


def test_a_made_up_key_is_not_echoed_and_creates_nothing_on_a_read(client):
    response = client.get(
        "/api/v1/operations/00000000-0000-0000-0000-000000000000/",
        headers={"X-Session-Key": "madeupkey1234567890abcdefghijklm"},
    )

    assert response.status_code == 404
    assert "X-Session-Key" not in response
    assert Session.objects.count() == 0
