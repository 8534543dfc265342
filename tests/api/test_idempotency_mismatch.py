"""An Idempotency-Key reused by the same session for a different request is refused with 422
idempotency_key_mismatch (the IETF Idempotency-Key draft); the same request again still gets the
first operation, and nothing of the refused one is kept."""

from __future__ import annotations

import pytest

from apps.operations.models import Operation
from tests.api.conftest import stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)
KEY = {"Idempotency-Key": "holiday-photo-1"}


@pytest.fixture
def first(client, media):
    response = upload(client, media.png(width=64), operation="image_resize", parameters={"width": 10}, headers=KEY)
    assert response.status_code == 201
    return response.json()["data"]


@pytest.mark.parametrize(
    ("operation", "parameters", "width"),
    [
        ("image_convert", {"output_format": "webp"}, 64),  # another operation
        ("image_resize", {"width": 20}, 64),  # other parameters
        ("image_resize", {"width": 10}, 65),  # another file
    ],
    ids=["operation", "parameters", "file"],
)
def test_a_reused_key_with_a_different_request_is_a_422(
    client, media, storage_root, first, operation, parameters, width
):
    response = upload(client, media.png(width=width), operation=operation, parameters=parameters, headers=KEY)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_mismatch"
    assert error["message"].startswith("This Idempotency-Key was already used for a different upload")
    assert error["details"] == {"operation_id": first["id"]}
    assert Operation.objects.count() == 1
    assert len(stored_files(storage_root / "uploads")) == 1


def test_the_same_request_again_still_returns_the_first_operation(client, media, first):
    # Also with a default spelled out: the validated parameters are the same.
    again = upload(
        client,
        media.png(width=64),
        operation="image_resize",
        parameters={"width": 10, "maintain_aspect_ratio": True},
        headers=KEY,
    )

    assert again.status_code == 200
    assert again.json()["data"]["id"] == first["id"]
