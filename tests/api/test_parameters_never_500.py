"""Whatever the parameters hold, the answer is a 400 validation_error with a sentence (never a 500,
never a worker failure): deep nesting, huge integers, lone surrogates, NaN, whole-number floats."""

from __future__ import annotations

import json

import pytest

from apps.operations.models import Operation
from tests.api.conftest import API, stored_files, upload

pytestmark = pytest.mark.django_db

DEEP = '{"width": ' + "[" * 600 + "1" + "]" * 600 + "}"
HUGE_INTEGER = '{"width": ' + "9" * 5000 + "}"
LONE_SURROGATE_KEY = '{"\\ud800": 1}'
LONE_SURROGATE_VALUE = '{"output_format": "png\\udfff"}'


def assert_refused_with_a_sentence(response) -> dict:
    assert response.status_code == 400, response.content[:300]
    body = json.loads(response.content)  # rendered: valid UTF-8 JSON
    assert body["success"] is False
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["message"].endswith(".")
    assert body["error"]["details"]["parameters"][0].endswith(".")
    return body


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        (DEEP, "nested too deeply"),
        (HUGE_INTEGER, "too many digits"),
        (LONE_SURROGATE_KEY, "lone surrogate"),
        (LONE_SURROGATE_VALUE, "lone surrogate"),
        ('{"width": NaN}', "NaN"),
        ('{"width": Infinity}', "Infinity"),
    ],
    ids=["nested-600", "5000-digits", "surrogate-key", "surrogate-value", "nan", "infinity"],
)
def test_hostile_parameters_in_a_form_are_a_400_with_a_sentence(client, media, storage_root, parameters, says):
    operation = "image_convert" if "output_format" in parameters else "image_resize"
    response = upload(client, media.png(), operation=operation, parameters=parameters)

    body = assert_refused_with_a_sentence(response)
    assert says in body["error"]["details"]["parameters"][0]
    assert Operation.objects.count() == 0
    assert stored_files(storage_root / "uploads") == []


@pytest.mark.parametrize(
    "body",
    [
        '{"operation": "image_resize", "parameters": ' + DEEP + "}",
        '{"operation": "image_resize", "parameters": ' + LONE_SURROGATE_KEY + "}",
        '{"operation": "image_resize", "parameters": ' + HUGE_INTEGER + "}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["nested-600", "surrogate-key", "5000-digits", "nested-100000"],
)
def test_hostile_parameters_in_a_json_body_are_refused_in_the_envelope(client, body):
    # Creating needs a file, so a JSON body is refused whole; what matters is that it never
    # reaches a parser that would crash, nor a 500.
    response = client.post(f"{API}/operations/", body, content_type="application/json")

    assert 400 <= response.status_code < 500
    assert json.loads(response.content)["success"] is False


@pytest.mark.django_db(transaction=True)
def test_whole_number_floats_are_taken_as_integers_and_the_work_succeeds(client, media, run_worker):
    sent = [
        upload(client, media.png(width=64, height=64), operation="image_resize", parameters='{"width": 8.0}'),
        upload(client, media.png(), operation="image_convert", parameters='{"output_format": "webp", "quality": 80.0}'),
        upload(
            client,
            media.audio(duration=0.5, extension="wav"),
            operation="audio_convert",
            parameters='{"output_format": "mp3", "sample_rate": 22050.0, "channels": 1.0}',
        ),
    ]

    assert [response.status_code for response in sent] == [201, 201, 201]
    # As integers in the stored JSON too, not 8.0.
    assert [json.dumps(response.json()["data"]["parameters"], sort_keys=True) for response in sent] == [
        '{"maintain_aspect_ratio": true, "width": 8}',
        '{"output_format": "webp", "quality": 80}',
        '{"bitrate": "192k", "channels": 1, "output_format": "mp3", "sample_rate": 22050}',
    ]
    run_worker()
    operations = [Operation.objects.get(id=response.json()["data"]["id"]) for response in sent]
    assert [op.status for op in operations] == ["completed"] * 3, [op.error_message for op in operations]
    assert operations[0].files.get(file_type="output").metadata["width"] == 8
    assert operations[2].files.get(file_type="output").metadata["sample_rate"] == 22050


def test_a_fractional_width_is_a_400(client, media):
    response = upload(client, media.png(), operation="image_resize", parameters='{"width": 8.5}')

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"width": ["Must be of type integer."]}


def test_the_renderer_never_fails_on_a_lone_surrogate():
    from apps.api.renderers import SafeJSONRenderer

    rendered = SafeJSONRenderer().render({"error": {"details": {"\ud800": ["Unknown parameter."]}}, "name": "café"})

    assert json.loads(rendered) == {"error": {"details": {"\ud800": ["Unknown parameter."]}}, "name": "café"}
    assert SafeJSONRenderer().render({"name": "café"}) == '{"name":"café"}'.encode()
