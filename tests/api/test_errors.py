"""Every error leaves in the envelope: unknown paths, wrong methods, broken bodies, unexpected failures."""

from __future__ import annotations

import json

import pytest
from django.http import Http404

from apps.api import exceptions
from apps.operations import selectors
from tests.api.conftest import API

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


@pytest.mark.parametrize("path", [f"{API}/nothing-here/", f"{API}/operations/x/y/z/", f"{API}/health"])
def test_unknown_api_paths_are_a_404_envelope(client, settings, path):
    settings.DEBUG = True  # not even the debug page: the API never answers in HTML

    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options", "head"])
@pytest.mark.parametrize(
    "path", [f"{API}/operations/0.5/cancel/", f"{API}/nothing-here/", "/api/v2/operations/", "/api/", "/api/v1"]
)
def test_unknown_api_paths_are_a_404_envelope_with_any_method_and_no_csrf_page(method, path):
    from django.test import Client

    # Django's test client skips CSRF checks unless asked: a browser-like client, with a cookie.
    client = Client(enforce_csrf_checks=True)
    client.cookies["sessionid"] = "whatever"
    response = getattr(client, method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    if method != "head":
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/operations/"),
        ("patch", "/operations/00000000-0000-0000-0000-000000000000/"),
        ("post", "/health/"),
        ("delete", "/session/"),
        ("get", "/operations/00000000-0000-0000-0000-000000000000/cancel/"),
    ],
)
def test_wrong_method_is_a_405_envelope(client, method, path):
    error = assert_error(getattr(client, method)(f"{API}{path}"), 405, "method_not_allowed")
    assert method.upper() in error["message"]


def test_malformed_multipart_body_is_a_400_envelope(client):
    response = client.post(
        f"{API}/operations/",
        data=b"--xyz\r\nContent-Disposition: form-data; name=\r\n\r\nbroken",
        content_type="multipart/form-data; boundary=",
    )

    assert_error(response, 400, "validation_error")


def test_unexpected_failure_is_a_500_envelope_without_a_traceback(client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret connection string postgres://user:pw@db")

    monkeypatch.setattr(selectors, "session_summary", broken)

    error = assert_error(client.get(f"{API}/session/"), 500, "internal_error")

    assert error["details"] == {}
    assert "secret" not in error["message"]


def test_unexpected_failure_shows_the_traceback_only_in_debug(client, monkeypatch, settings):
    settings.DEBUG = True

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "session_summary", broken)

    error = assert_error(client.get(f"{API}/session/"), 500, "internal_error")

    assert "RuntimeError('boom')" in error["details"]["exception"]
    assert any("session_summary" in line or "broken" in line for line in error["details"]["traceback"])


def test_too_many_form_fields_is_a_400_envelope(client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3

    response = client.post(f"{API}/operations/", {f"field{i}": "x" for i in range(10)})

    assert_error(response, 400, "validation_error")


def test_form_fields_over_the_memory_limit_is_a_413_envelope(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = client.post(f"{API}/operations/", {"operation": "image_resize", "parameters": "x" * 1000})

    assert_error(response, 413, "file_too_large")


def test_a_format_nobody_can_render_is_a_406_envelope(client):
    assert_error(client.get(f"{API}/session/", headers={"Accept": "application/xml"}), 406, "not_acceptable")


def test_url_level_handlers_answer_json_under_the_api_and_html_elsewhere(rf):
    api = exceptions.not_found(rf.get(f"{API}/x"), Http404())
    page = exceptions.not_found(rf.get("/somewhere/"), Http404())
    crash = exceptions.server_error(rf.get(f"{API}/session/"))

    assert api["Content-Type"] == "application/json"
    assert json.loads(api.content)["error"]["code"] == "not_found"
    assert page["Content-Type"].startswith("text/html")
    assert json.loads(crash.content)["error"]["code"] == "internal_error"
