"""The published OpenAPI schema matches the behaviour: real responses of every endpoint, errors
included, validate against it; Swagger UI works offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from openapi_schema_validator import OAS30Validator

from apps.core.exceptions import StorageError
from apps.operations.enums import OperationStatus
from apps.operations.services import operations_manager
from apps.storage.local import LocalStorage
from tests.api.conftest import API, session_key_of, upload
from tests.api.test_operation_actions import UrlStorage
from tests.factories import let_expire

S = OperationStatus


class CoverageCheck:
    """Validates responses and remembers which (method, path) operations of the schema were seen."""

    def __init__(self, spec, validate):
        self.validate = validate
        self.operations = {
            (method, template)
            for template, item in spec["paths"].items()
            if template.startswith(API)
            for method in item
            if method in {"get", "post", "put", "patch", "delete"}
        }
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(self, response, status: int):
        assert response.status_code == status, response.content[:500]
        self.validate(response)
        request = response.wsgi_request
        self.seen.add((request.method.lower(), self._template(request.path), status))
        return response

    def _template(self, path: str) -> str:
        for _method, template in self.operations:
            if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
                return template
        raise AssertionError(f"{path} is not in the published schema")

    def missing_operations(self) -> set[tuple[str, str]]:
        return self.operations - {(method, template) for method, template, _ in self.seen}


@pytest.mark.django_db(transaction=True)
def test_real_responses_of_every_endpoint_match_the_schema(
    client, media, make_operation, openapi_spec, assert_matches_schema, settings, storage_root, monkeypatch
):
    check = CoverageCheck(openapi_spec, assert_matches_schema)
    key = session_key_of(client)

    # discovery and monitoring
    check(client.get(f"{API}/session/"), 200)
    check(client.get(f"{API}/operation-definitions/"), 200)
    check(client.get(f"{API}/operation-definitions/image_resize/"), 200)
    check(client.get(f"{API}/operation-definitions/nope/"), 404)
    check(client.get(f"{API}/health/"), 200)
    check(client.get(f"{API}/queues/"), 200)

    # create and its refusals
    created = check(
        upload(
            client, media.png(), operation="image_resize", parameters={"width": 8}, headers={"Idempotency-Key": "k1"}
        ),
        201,
    )
    check(
        upload(
            client, media.png(), operation="image_resize", parameters={"width": 8}, headers={"Idempotency-Key": "k1"}
        ),
        200,
    )
    check(upload(client, media.png(), operation="image_resize", parameters={"width": 0}), 400)
    check(upload(client, media.png(), operation="video_compress", name="fake.mp4"), 415)
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 100}
    check(upload(client, media.bmp(), operation="image_resize", parameters={"width": 8}), 413)
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 25 * 1024 * 1024}

    def storage_down(*args, **kwargs):
        raise StorageError("The storage service timed out.")

    monkeypatch.setattr(LocalStorage, "save_upload", storage_down)
    check(upload(client, media.png(), operation="image_resize", parameters={"width": 8}), 503)
    monkeypatch.undo()

    # reading
    operation_id = created.json()["data"]["id"]
    check(client.get(f"{API}/operations/"), 200)
    check(client.get(f"{API}/operations/", {"status": "lost"}), 400)
    check(client.get(f"{API}/operations/{operation_id}/"), 200)
    check(client.get(f"{API}/operations/00000000-0000-0000-0000-000000000000/"), 404)
    check(client.get(f"{API}/operations/{operation_id}/status/"), 200)
    check(client.get(f"{API}/operations/00000000-0000-0000-0000-000000000000/status/"), 404)

    # download
    completed = make_operation(key, status=S.COMPLETED)
    check(client.get(f"{API}/operations/{completed.id}/download/"), 200)
    check(client.get(f"{API}/operations/{operation_id}/download/"), 409)
    monkeypatch.setattr(operations_manager, "get_storage", lambda: UrlStorage(root=Path(storage_root)))
    check(client.get(f"{API}/operations/{completed.id}/download/"), 302)
    monkeypatch.undo()
    let_expire(completed)
    check(client.get(f"{API}/operations/{completed.id}/download/"), 410)

    # retry, cancel, delete
    failed = make_operation(key, status=S.FAILED)
    check(client.post(f"{API}/operations/{failed.id}/retry/"), 200)
    check(client.post(f"{API}/operations/{failed.id}/retry/"), 409)
    expired = let_expire(make_operation(key, status=S.FAILED))
    check(client.post(f"{API}/operations/{expired.id}/retry/"), 410)
    check(client.post(f"{API}/operations/{failed.id}/cancel/"), 200)
    check(client.post(f"{API}/operations/{failed.id}/cancel/"), 409)
    check(client.delete(f"{API}/operations/{failed.id}/"), 200)
    check(client.delete(f"{API}/operations/{failed.id}/"), 404)

    # throttled, with its Retry-After header
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon_burst": "1/minute"},
    }
    throttled = Client()
    throttled.get(f"{API}/session/", REMOTE_ADDR="10.9.9.9")
    check(throttled.get(f"{API}/session/", REMOTE_ADDR="10.9.9.9"), 429)

    assert check.missing_operations() == set()


@pytest.mark.django_db
def test_responses_while_redis_is_down_match_the_schema(client, media, openapi_spec, assert_matches_schema, own_redis):
    check = CoverageCheck(openapi_spec, assert_matches_schema)
    session_key_of(client)
    own_redis.stop()

    check(client.get(f"{API}/health/"), 503)
    check(client.get(f"{API}/queues/"), 503)


@pytest.mark.django_db
def test_errors_outside_the_schemas_operations_use_its_error_envelope(client, openapi_spec):
    # The components travel with the reference so that "#/components/..." resolves.
    envelope = OAS30Validator({"$ref": "#/components/schemas/ErrorEnvelope", "components": openapi_spec["components"]})

    for response in (
        client.put(f"{API}/operations/"),  # 405: no such operation in the schema
        client.get(f"{API}/no-such-endpoint/"),
    ):
        envelope.validate(response.json())


def test_schema_and_offline_swagger_ui_are_served(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    assert b"openapi: 3" in schema.content
    assert docs.status_code == 200
    bundle = re.search(rb'src="([^"]*swagger-ui-bundle\.js)"', docs.content).group(1).decode()
    assert "drf_spectacular_sidecar" in bundle  # served by us, not fetched from a CDN
    assert client.get(bundle).status_code == 200
