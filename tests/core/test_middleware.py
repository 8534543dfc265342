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
