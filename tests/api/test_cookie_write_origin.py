"""Writes that rely on the session cookie must come from this site or an allowed frontend: a page on
another site gets a 403 in the envelope and changes nothing. Header-key clients are not affected."""

from __future__ import annotations

import pytest

from apps.operations.models import Operation
from tests.api.conftest import API, session_key_of, stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)
EVIL = "https://evil.example"


def resize(client, media, headers):
    return upload(client, media.png(), operation="image_resize", parameters={"width": 8}, headers=headers)


def assert_refused(response) -> None:
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"].startswith("This request came from a page on another site")


@pytest.mark.parametrize(
    "headers",
    [{"Origin": EVIL}, {"Referer": f"{EVIL}/upload.html"}, {"Origin": "null"}, {"Origin": "http://testserver.evil"}],
    ids=["origin", "referer", "null-origin", "lookalike-host"],
)
def test_a_cookie_upload_from_another_site_is_refused_and_keeps_nothing(client, media, storage_root, headers):
    session_key_of(client)  # the browser has its session cookie

    assert_refused(resize(client, media, headers))
    assert Operation.objects.count() == 0
    assert stored_files(storage_root / "uploads") == []


def test_cookie_cancel_and_delete_from_another_site_are_refused(client, media):
    created = resize(client, media, {"Origin": "http://testserver"})
    assert created.status_code == 201
    operation_id = created.json()["data"]["id"]

    assert_refused(client.post(f"{API}/operations/{operation_id}/cancel/", headers={"Origin": EVIL}))
    assert_refused(client.delete(f"{API}/operations/{operation_id}/", headers={"Origin": EVIL}))
    assert Operation.objects.get(id=operation_id).status == "queued"
    assert not Operation.objects.get(id=operation_id).is_deleted


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver"},  # the site itself
        {"Origin": "https://testserver"},  # itself, seen over TLS ended at a proxy
        {"Referer": "http://testserver/"},
        {"Origin": "http://localhost:3000"},  # CORS_ALLOWED_ORIGINS
        {},  # no browser context (curl with a cookie jar)
    ],
    ids=["same-origin", "same-host-https", "same-referer", "cors-allowed", "no-origin"],
)
def test_cookie_writes_from_allowed_origins_are_accepted(client, media, headers):
    session_key_of(client)

    assert resize(client, media, headers).status_code == 201


def test_header_key_clients_are_not_affected_by_origin(client, media):
    from django.test import Client

    key = session_key_of(client)
    frontend = Client()  # no cookie: a frontend on another domain keeps the key itself

    response = resize(frontend, media, {"Origin": EVIL, "X-Session-Key": key})

    assert response.status_code == 201
    assert Operation.objects.get(id=response.json()["data"]["id"]).session_key == key
