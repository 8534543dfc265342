"""The published OpenAPI schema matches the behaviour: real responses of every endpoint, errors
included, validate against it; Swagger UI works offline."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from openapi_core.testing import MockRequest
from openapi_core.validation.request.exceptions import InvalidRequestBody
from openapi_schema_validator import OAS30Validator

from apps.core.exceptions import StorageError
from apps.operations.enums import OperationStatus
from apps.operations.services import operations_manager
from apps.processors.presets import PRESETS
from apps.processors.registry import OPERATIONS
from apps.storage.local import LocalStorage
from tests.api.conftest import API, session_key_of, upload
from tests.api.test_operation_actions import UrlStorage
from tests.factories import let_expire

S = OperationStatus
CREATE = f"{API}/operations/"


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
    check(client.get(f"{API}/vocabulary/"), 200)
    check(client.get(f"{API}/presets/"), 200)
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

    # resumable uploads (tus): create, append, terminate
    tus = {"HTTP_TUS_RESUMABLE": "1.0.0"}
    started = check(client.generic("POST", f"{API}/uploads/", b"", HTTP_UPLOAD_LENGTH="4", **tus), 201)
    location = started["Location"]
    check(
        client.patch(location, b"abcd", content_type="application/offset+octet-stream", HTTP_UPLOAD_OFFSET="0", **tus),
        204,
    )
    check(client.delete(location, **tus), 204)
    # webhooks and the live stream
    settings.WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hooked = make_operation(key, status=S.COMPLETED, webhook_url="http://127.0.0.1:9/hooks")
    unknown = "00000000-0000-0000-0000-000000000000"
    check(client.get(f"{API}/operations/{hooked.id}/webhooks/"), 200)
    check(client.get(f"{API}/operations/{unknown}/webhooks/"), 404)
    check(client.post(f"{API}/operations/{hooked.id}/webhooks/redeliver/"), 202)
    check(client.post(f"{API}/operations/{operation_id}/webhooks/redeliver/"), 409)
    check(client.get(f"{API}/operations/{hooked.id}/events/"), 200)
    check(client.get(f"{API}/operations/{unknown}/events/"), 404)

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


def test_the_schema_is_generated_valid_and_without_warnings():
    # --validate checks the document against the OpenAPI 3.1 meta-schema; a warning would mean a
    # part of it drf-spectacular had to guess (an enum named by collision, an unknown field).
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=io.StringIO())


# --- the create request: one variant per operation, each with the registry's parameter schema --------
def _component(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
    return schema


def _create_body(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["paths"][CREATE]["post"]["requestBody"]["content"]["multipart/form-data"]


def _variants(spec: dict[str, Any], by: str = "operation") -> dict[str, dict[str, Any]]:
    """The create request's variants naming an operation (``by="preset"``: a preset), by name."""
    request = _component(spec, _create_body(spec)["schema"])
    variants = [_component(spec, choice) for choice in request["oneOf"]]
    return {variant["properties"][by]["const"]: variant for variant in variants if by in variant["required"]}


def test_the_create_request_publishes_each_operations_parameter_schema_from_the_registry(openapi_spec):
    body = _create_body(openapi_spec)
    request = _component(openapi_spec, body["schema"])
    variants = _variants(openapi_spec)

    assert set(variants) == set(OPERATIONS)
    for name, variant in variants.items():
        assert variant["properties"]["parameters"] == OPERATIONS[name].parameters_schema, name
        assert variant["title"] == OPERATIONS[name].title
        assert "operation" in variant["required"]
    presets = _variants(openapi_spec, by="preset")
    assert set(presets) == set(PRESETS)
    assert len(request["oneOf"]) == len(OPERATIONS) + len(PRESETS)
    # The part is sent as a JSON text, not as a form-encoded object.
    assert body["encoding"]["parameters"]["contentType"] == "application/json"
    # The form's fields stay plain properties beside the oneOf: Swagger UI draws its form from them.
    assert set(request["properties"]) == {
        "operation",
        "preset",
        "parameters",
        "file",
        "upload",
        "source_url",
        "webhook_url",
    }
    assert request["properties"]["parameters"]["type"] == "object"
    # Raw bytes in OpenAPI 3.1: no string type, a media type instead.
    assert "type" not in request["properties"]["file"]
    assert request["properties"]["file"]["contentMediaType"] == "application/octet-stream"
    # One of file, upload and source_url, and an operation or a preset: checked by the API and the
    # variants (a form-level oneOf would not draw as a form), so no field is required on its own.
    assert not request.get("required")


def example_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """What a client builds from a published parameter schema: every default, and for each
    required property without one (``anyOf``: the first alternative's) its first allowed value."""
    required = set(schema.get("required", []))
    if "anyOf" in schema:
        required |= set(schema["anyOf"][0]["required"])
    parameters = {}
    for name, prop in schema["properties"].items():
        if "default" in prop:
            parameters[name] = prop["default"]
        elif name in required:
            parameters[name] = prop["enum"][0] if "enum" in prop else prop["minimum"]
    return parameters


def multipart(fields: list[tuple[str, str | None, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body from (name, content type, content, file name) parts."""
    boundary = "konvrt-test-boundary"
    body = b""
    for name, content_type, content, file_name in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{file_name}"' if file_name else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def create_request(operation: str, parameters: dict[str, Any], source: Path) -> tuple[bytes, str]:
    return multipart(
        [
            ("operation", "text/plain", operation.encode(), None),
            ("parameters", "application/json", json.dumps(parameters).encode(), None),
            ("file", "application/octet-stream", source.read_bytes(), source.name),
        ]
    )


def validate_create(openapi, *, session_key: str, body: bytes, content_type: str) -> None:
    """Validate a create request against the document (raises when it does not match)."""
    headers = {"X-Session-Key": session_key}
    openapi.validate_request(
        MockRequest("http://testserver", "post", CREATE, headers=headers, data=body, content_type=content_type)
    )


def sample_for(media, operation: str) -> Path:
    return {"video": media.video(duration=0.5), "image": media.png(), "audio": media.audio(duration=0.5)}[
        OPERATIONS[operation].media_type
    ]


@pytest.mark.django_db
def test_a_request_built_from_each_published_variant_validates_and_is_accepted(
    client, media, openapi, openapi_spec, settings
):
    settings.MAX_ACTIVE_PER_SESSION = len(OPERATIONS)  # one session queues one of each
    key = session_key_of(client)

    for name, variant in _variants(openapi_spec).items():
        parameters = example_parameters(variant["properties"]["parameters"])
        body, content_type = create_request(name, parameters, sample_for(media, name))

        validate_create(openapi, session_key=key, body=body, content_type=content_type)
        response = client.post(CREATE, body, content_type=content_type, headers={"X-Session-Key": key})
        assert response.status_code == 201, (name, response.content[:500])
        assert response.json()["data"]["parameters"].items() >= parameters.items()


@pytest.mark.django_db
def test_a_request_naming_each_published_preset_validates_and_is_accepted(
    client, media, openapi, openapi_spec, settings
):
    settings.MAX_ACTIVE_PER_SESSION = len(PRESETS)  # one session queues one of each
    key = session_key_of(client)

    for name in _variants(openapi_spec, by="preset"):
        preset = PRESETS[name]
        source = sample_for(media, preset.operation)
        body, content_type = multipart(
            [
                ("preset", "text/plain", name.encode(), None),
                ("file", "application/octet-stream", source.read_bytes(), source.name),
            ]
        )

        validate_create(openapi, session_key=key, body=body, content_type=content_type)
        response = client.post(CREATE, body, content_type=content_type, headers={"X-Session-Key": key})
        assert response.status_code == 201, (name, response.content[:500])
        assert response.json()["data"]["operation"] == preset.operation


@pytest.mark.django_db
def test_a_request_naming_both_an_operation_and_a_preset_is_refused_by_document_and_api(client, media, openapi):
    key = session_key_of(client)
    body, content_type = multipart(
        [
            ("operation", "text/plain", b"video_compress", None),
            ("preset", "text/plain", b"discord", None),
            ("file", "application/octet-stream", media.video(duration=0.5).read_bytes(), "in.mp4"),
        ]
    )

    with pytest.raises(InvalidRequestBody):
        validate_create(openapi, session_key=key, body=body, content_type=content_type)
    response = client.post(CREATE, body, content_type=content_type, headers={"X-Session-Key": key})
    assert response.status_code == 400
    assert "not both" in response.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("operation", "parameters"),
    [
        ("image_resize", {"width": 0}),  # below the minimum
        ("image_resize", {"maintain_aspect_ratio": False}),  # neither width nor height
        ("video_compress", {"width": 8}),  # another operation's parameter
        ("audio_convert", {"output_format": "mp4"}),  # a video format
    ],
)
def test_parameters_outside_their_operations_published_schema_are_refused_by_document_and_api(
    client, media, openapi, openapi_spec, operation, parameters
):
    key = session_key_of(client)
    source = sample_for(media, operation)
    published = _variants(openapi_spec)[operation]["properties"]["parameters"]
    good_body, content_type = create_request(operation, example_parameters(published), source)
    bad_body, content_type = create_request(operation, parameters, source)

    # The same request with parameters built from the operation's own variant passes: the refusal
    # below is about the parameters alone.
    validate_create(openapi, session_key=key, body=good_body, content_type=content_type)
    with pytest.raises(InvalidRequestBody):
        validate_create(openapi, session_key=key, body=bad_body, content_type=content_type)
    response = client.post(CREATE, bad_body, content_type=content_type, headers={"X-Session-Key": key})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
