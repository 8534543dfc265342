"""Another session's operation is invisible on every endpoint, by cookie or by header: 404, never 403,
and nothing about it changes."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from tests.api.conftest import API, session_key_of

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "{id}/"),
    ("delete", "{id}/"),
    ("get", "{id}/status/"),
    ("get", "{id}/download/"),
    ("post", "{id}/retry/"),
    ("post", "{id}/cancel/"),
]


@pytest.fixture
def owner_operation(make_operation):
    owner = Client()
    return make_operation(session_key_of(owner), status=OperationStatus.COMPLETED)


def _call(client, method, path, **kwargs):
    return getattr(client, method)(f"{API}/operations/{path}", **kwargs)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_another_sessions_operation_is_a_404_by_cookie(client, owner_operation, method, path):
    session_key_of(client)  # the intruder has a session of its own, carried by cookie

    response = _call(client, method, path.format(id=owner_operation.id))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Operation.objects.get(id=owner_operation.id).status == OperationStatus.COMPLETED
    assert not Operation.objects.get(id=owner_operation.id).is_deleted


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_another_sessions_operation_is_a_404_by_header(owner_operation, method, path):
    intruder_key = session_key_of(Client())
    cookieless = Client()

    response = _call(cookieless, method, path.format(id=owner_operation.id), headers={"X-Session-Key": intruder_key})

    assert response["X-Session-Key"] == intruder_key
    assert response.status_code == 404
    assert Operation.objects.get(id=owner_operation.id).status == OperationStatus.COMPLETED


def test_the_owner_sees_it_by_header_without_cookies(owner_operation):
    response = Client().get(
        f"{API}/operations/{owner_operation.id}/", headers={"X-Session-Key": owner_operation.session_key}
    )

    assert response.status_code == 200


def test_another_sessions_operations_are_not_listed_or_counted(client, owner_operation):
    session_key_of(client)

    assert client.get(f"{API}/operations/").json()["data"] == []
    assert client.get(f"{API}/session/").json()["data"]["operations_total"] == 0


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_deleted_operation_is_a_404_everywhere(make_operation, client, method, path):
    operation = make_operation(session_key_of(client), status=OperationStatus.FAILED, deleted=True)

    response = _call(client, method, path.format(id=operation.id))

    assert response.status_code == 404
