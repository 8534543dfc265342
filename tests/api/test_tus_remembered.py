"""HEAD and PATCH take an upload from the web process's memory after the first lookup
(``upload_find``): no query for the PATCHes that follow, and an upload removed meanwhile is still
gone, because its part file is."""

from __future__ import annotations

import pytest

from apps.operations.models import Upload
from tests.api.test_uploads import API, TUS, create, head, patch

pytestmark = pytest.mark.django_db


def test_the_patches_after_the_first_make_no_query(client, django_assert_num_queries):
    location = create(client, 30)["Location"]
    assert patch(client, location, 0, b"0123456789").status_code == 204

    with django_assert_num_queries(0):
        assert patch(client, location, 10, b"0123456789").status_code == 204
        assert head(client, location)["Upload-Offset"] == "20"
    with django_assert_num_queries(1):  # the last one marks the upload finished
        assert patch(client, location, 20, b"0123456789").status_code == 204


def test_a_remembered_upload_that_was_terminated_is_404_to_head_and_patch(client):
    location = create(client, 30)["Location"]
    assert patch(client, location, 0, b"0123456789").status_code == 204
    assert client.delete(location, **TUS).status_code == 204

    assert head(client, location).status_code == 404
    assert patch(client, location, 10, b"0123456789").status_code == 404
    assert client.delete(location, **TUS).status_code == 404


def test_a_remembered_upload_that_an_operation_used_is_404(client, media):
    data = media.png().read_bytes()
    location = create(client, len(data))["Location"]
    assert patch(client, location, 0, data).status_code == 204
    created = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": {"width": 8}, "upload": location},
        content_type="application/json",
    )
    assert created.status_code == 201, created.json()
    assert Upload.objects.count() == 0

    assert head(client, location).status_code == 404
    assert patch(client, location, 0, b"x").status_code == 404


def test_another_session_never_gets_a_remembered_upload(client):
    from django.test import Client

    location = create(client, 30)["Location"]
    assert head(client, location).status_code == 200

    stranger = Client()
    stranger.get(f"{API}/session/")
    assert head(stranger, location).status_code == 404
    assert patch(stranger, location, 0, b"x").status_code == 404
