"""tus 1.0.0 at /api/v1/uploads/ (the protocol, header by header) and POST /operations/ with
``upload`` or ``source_url``. The reference clients are in test_tus_clients.py."""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from apps.operations.models import Operation, Upload
from apps.operations.services import uploads as uploads_service
from apps.operations.services.uploads import upload_remove_expired
from tests.api.conftest import session_key_of

API = "/api/v1"
TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"

pytestmark = pytest.mark.django_db


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(client: Client, length: int, *, filename: str | None = "photo.png", body: bytes = b"", **headers):
    metadata = {"HTTP_UPLOAD_METADATA": f"filename {b64(filename)},kind"} if filename is not None else {}
    content_type = OFFSET_STREAM if body else "text/plain"
    return client.generic(
        "POST",
        f"{API}/uploads/",
        body,
        content_type=content_type,
        HTTP_UPLOAD_LENGTH=str(length),
        **metadata,
        **TUS,
        **headers,
    )


def patch(client: Client, location: str, offset: int, body: bytes, **headers):
    return client.generic(
        "PATCH", location, body, content_type=OFFSET_STREAM, HTTP_UPLOAD_OFFSET=str(offset), **TUS, **headers
    )


def head(client: Client, location: str, **headers):
    return client.head(location, **TUS, **headers)


def part(storage_root: Path, location: str) -> Path:
    return storage_root / "tus" / location.rstrip("/").rsplit("/", 1)[-1]


def finished_upload(client: Client, data: bytes, filename: str = "photo.png") -> str:
    location = create(client, len(data), filename=filename)["Location"]
    assert patch(client, location, 0, data).status_code == 204
    return location


# --- the protocol ---------------------------------------------------------------------------------
def test_options_describes_the_server(client, settings):
    response = client.options(f"{API}/uploads/")

    assert response.status_code == 204
    assert response["Tus-Version"] == "1.0.0"
    assert set(response["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert int(response["Tus-Max-Size"]) == max(settings.MAX_FILE_SIZE.values())
    assert "sha1" in response["Tus-Checksum-Algorithm"]


def test_a_request_without_tus_resumable_is_412_with_the_version(client):
    response = client.generic("POST", f"{API}/uploads/", b"", HTTP_UPLOAD_LENGTH="10")

    assert response.status_code == 412
    assert response["Tus-Version"] == "1.0.0"
    assert Upload.objects.count() == 0


def test_creation_answers_201_with_location_offset_and_expiry(client, storage_root, settings):
    response = create(client, 1000)

    assert response.status_code == 201
    assert response["Tus-Resumable"] == "1.0.0"
    assert response["Upload-Offset"] == "0"
    assert response["Location"].startswith("http://testserver/api/v1/uploads/")
    upload_row = Upload.objects.get()
    assert upload_row.file_name == "photo.png"
    assert upload_row.metadata == {"filename": "photo.png", "kind": ""}
    assert upload_row.expires_at - timezone.now() > timedelta(hours=settings.UPLOAD_EXPIRY_HOURS - 1)
    assert "GMT" in response["Upload-Expires"]
    assert part(storage_root, response["Location"]).stat().st_size == 0

    state = head(client, response["Location"])
    assert state.status_code == 200
    assert (state["Upload-Offset"], state["Upload-Length"]) == ("0", "1000")
    assert state["Cache-Control"] == "no-store"
    assert set(state["Upload-Metadata"].split(",")) == {f"filename {b64('photo.png')}", "kind"}


def test_creation_with_upload_stores_the_first_bytes(client, storage_root):
    response = create(client, 10, body=b"hello")

    assert response.status_code == 201
    assert response["Upload-Offset"] == "5"
    assert part(storage_root, response["Location"]).read_bytes() == b"hello"


@pytest.mark.parametrize(
    ("filename", "limit_key"),
    [("photo.png", "image"), (None, "video"), ("film.mp4", "video")],
)
def test_a_length_over_the_limit_is_413_and_nothing_is_kept(client, storage_root, settings, filename, limit_key):
    limit = settings.MAX_FILE_SIZE[limit_key]
    response = create(client, limit + 1, filename=filename)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert Upload.objects.count() == 0
    assert not any((storage_root / "tus").glob("*")) if (storage_root / "tus").exists() else True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_UPLOAD_LENGTH": "-1"},
        {"HTTP_UPLOAD_LENGTH": "ten"},
        {"HTTP_UPLOAD_LENGTH": "9" * 30},
        {"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename ***"},
        {"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename a b"},
        {"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "x " + "A" * 5000},
        {"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename " + b64("a\x00.png")},
        {"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename " + base64.b64encode(b"\xff\xfe").decode()},
        {"HTTP_UPLOAD_DEFER_LENGTH": "1"},
        {"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_CONCAT": "partial"},
    ],
)
def test_bad_creation_headers_are_400(client, headers):
    response = client.generic("POST", f"{API}/uploads/", b"", **TUS, **headers)

    assert response.status_code == 400
    assert response.json()["error"]["message"]
    assert Upload.objects.count() == 0


def test_a_hostile_filename_is_kept_only_as_sanitised_data(client, storage_root):
    response = create(client, 3, filename="../../etc/\u202epasswd\t.png")

    upload_row = Upload.objects.get()
    assert upload_row.file_name == "passwd.png"
    assert sorted(p.name for p in (storage_root / "tus").iterdir()) == [str(upload_row.id)]
    assert response["Location"].endswith(f"/uploads/{upload_row.id}/")


@pytest.mark.parametrize("offset", ["-1", "+3", "3.0", "0x3", ""])
def test_a_malformed_upload_offset_is_400(client, offset):
    location = create(client, 4)["Location"]

    response = client.generic("PATCH", location, b"abcd", content_type=OFFSET_STREAM, HTTP_UPLOAD_OFFSET=offset, **TUS)

    assert response.status_code == 400
    assert head(client, location)["Upload-Offset"] == "0"


def test_patches_append_until_the_upload_is_finished(client, storage_root):
    location = create(client, 11)["Location"]

    first = patch(client, location, 0, b"hello ")
    second = patch(client, location, 6, b"world")

    assert (first.status_code, first["Upload-Offset"]) == (204, "6")
    assert (second.status_code, second["Upload-Offset"]) == (204, "11")
    assert part(storage_root, location).read_bytes() == b"hello world"
    assert Upload.objects.get().completed_at is not None
    assert head(client, location)["Upload-Offset"] == "11"


def test_a_patch_at_the_wrong_offset_is_409_and_changes_nothing(client, storage_root):
    location = create(client, 10, body=b"abc")["Location"]

    response = patch(client, location, 1, b"xyz")

    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"offset": 3}
    assert part(storage_root, location).read_bytes() == b"abc"


def test_a_patch_past_the_length_is_413_and_changes_nothing(client, storage_root):
    location = create(client, 4)["Location"]

    assert patch(client, location, 0, b"12345").status_code == 413
    assert part(storage_root, location).read_bytes() == b""


def test_a_patch_that_is_not_an_offset_stream_is_415(client):
    location = create(client, 4)["Location"]

    response = client.generic(
        "PATCH", location, b"abcd", content_type="application/json", HTTP_UPLOAD_OFFSET="0", **TUS
    )

    assert response.status_code == 415


def test_a_matching_checksum_is_accepted_and_a_wrong_one_keeps_nothing(client, storage_root):
    location = create(client, 8)["Location"]
    good = base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
    bad = base64.b64encode(hashlib.sha1(b"nope").digest()).decode()

    assert patch(client, location, 0, b"abcd", HTTP_UPLOAD_CHECKSUM=f"sha1 {good}").status_code == 204
    refused = patch(client, location, 4, b"efgh", HTTP_UPLOAD_CHECKSUM=f"sha1 {bad}")
    unknown = patch(client, location, 4, b"efgh", HTTP_UPLOAD_CHECKSUM=f"crc32 {good}")

    assert refused.status_code == 460
    assert unknown.status_code == 400
    assert part(storage_root, location).read_bytes() == b"abcd"
    assert head(client, location)["Upload-Offset"] == "4"


def test_a_second_writer_at_the_same_time_is_423(client, storage_root):
    location = create(client, 4)["Location"]
    with part(storage_root, location).open("r+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        response = patch(client, location, 0, b"abcd")

    assert response.status_code == 423
    assert patch(client, location, 0, b"abcd").status_code == 204


def test_a_full_disk_is_503_and_keeps_nothing_of_that_body(client, storage_root, monkeypatch):
    location = create(client, 10, body=b"abc")["Location"]
    written = []

    def disk_fills_up(part, chunk):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(chunk)
        part.write(chunk)

    monkeypatch.setattr(uploads_service, "WRITE_CHUNK_SIZE", 2)
    monkeypatch.setattr(uploads_service, "_write", disk_fills_up)
    response = patch(client, location, 3, b"defg")

    assert response.status_code == 503
    assert "disk is full" in response.json()["error"]["message"]
    assert part(storage_root, location).read_bytes() == b"abc"
    monkeypatch.undo()
    assert patch(client, location, 3, b"defghij").status_code == 204


def test_method_override_lets_a_post_act_as_patch_and_delete(client, storage_root):
    location = create(client, 3)["Location"]

    appended = client.generic(
        "POST",
        location,
        b"abc",
        content_type=OFFSET_STREAM,
        HTTP_UPLOAD_OFFSET="0",
        HTTP_X_HTTP_METHOD_OVERRIDE="PATCH",
        **TUS,
    )
    deleted = client.generic("POST", location, b"", HTTP_X_HTTP_METHOD_OVERRIDE="DELETE", **TUS)

    assert (appended.status_code, appended["Upload-Offset"]) == (204, "3")
    assert deleted.status_code == 204
    assert not part(storage_root, location).exists()


def test_termination_removes_the_upload_and_its_bytes(client, storage_root):
    location = create(client, 10, body=b"abc")["Location"]

    assert client.delete(location, **TUS).status_code == 204
    assert head(client, location).status_code == 404
    assert patch(client, location, 3, b"d").status_code == 404
    assert not part(storage_root, location).exists()


def test_another_sessions_upload_is_404_to_every_method(client, storage_root):
    location = create(client, 10, body=b"abc")["Location"]
    stranger = Client()

    assert head(stranger, location).status_code == 404
    assert patch(stranger, location, 3, b"d").status_code == 404
    assert stranger.delete(location, **TUS).status_code == 404
    assert part(storage_root, location).read_bytes() == b"abc"
    assert head(client, location).status_code == 200


@pytest.mark.parametrize("upload_id", ["not-a-uuid", str(uuid.uuid4())])
def test_an_unknown_upload_is_404(client, upload_id):
    assert head(client, f"{API}/uploads/{upload_id}/").status_code == 404


def test_the_session_header_owns_uploads_like_the_cookie(client):
    key = session_key_of(client)
    other = Client()
    location = create(other, 3, HTTP_X_SESSION_KEY=key)["Location"]

    assert head(client, location).status_code == 200


def test_an_expired_upload_is_410_and_cleanup_removes_it(client, storage_root):
    location = create(client, 10, body=b"abc")["Location"]
    Upload.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert head(client, location).status_code == 410
    assert upload_remove_expired() == 1
    assert Upload.objects.count() == 0
    assert not part(storage_root, location).exists()


def test_cleanup_keeps_live_uploads_and_removes_stray_parts(client, storage_root):
    location = create(client, 10, body=b"abc")["Location"]
    stray = storage_root / "tus" / str(uuid.uuid4())
    stray.write_bytes(b"left behind")
    old = (timezone.now() - timedelta(days=3)).timestamp()
    import os

    os.utime(stray, (old, old))

    assert upload_remove_expired() == 1
    assert not stray.exists()
    assert part(storage_root, location).read_bytes() == b"abc"


# --- POST /operations/ with an upload --------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_an_operation_from_a_finished_upload_consumes_it(client, media, storage_root, run_worker):
    location = finished_upload(client, media.png().read_bytes())
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]

    response = client.post(
        f"{API}/operations/", {"operation": "image_resize", "parameters": '{"width": 8}', "upload": upload_id}
    )

    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert data["input_file"]["file_name"] == "photo.png"
    assert data["input_file"]["file_size"] == media.png().stat().st_size
    assert Upload.objects.count() == 0
    assert sorted(p.name for p in (storage_root / "tus").iterdir()) == []
    run_worker()
    assert Operation.objects.get(id=data["id"]).status == "completed"


def test_a_json_body_can_name_the_upload_by_its_url(client, media):
    location = finished_upload(client, media.png().read_bytes())

    response = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": {"width": 8}, "upload": location},
        content_type="application/json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["data"]["parameters"]["width"] == 8


def test_an_unfinished_upload_is_a_400_and_stays(client, media):
    location = create(client, 100, body=b"\x89PNG")["Location"]

    response = client.post(
        f"{API}/operations/", {"operation": "image_resize", "parameters": '{"width": 8}', "upload": location}
    )

    assert response.status_code == 400
    assert "4 of 100 bytes" in response.json()["error"]["message"]
    assert head(client, location)["Upload-Offset"] == "4"


def test_content_that_is_not_what_it_claims_is_415_and_the_upload_stays(client, storage_root):
    location = finished_upload(client, b"this is not a picture at all", filename="photo.png")

    response = client.post(
        f"{API}/operations/", {"operation": "image_resize", "parameters": '{"width": 8}', "upload": location}
    )

    assert response.status_code == 415
    assert Operation.objects.count() == 0
    assert part(storage_root, location).read_bytes() == b"this is not a picture at all"
    assert list((storage_root / "uploads").iterdir()) == []
    assert [p.name for p in (storage_root / "tus").iterdir()] == [part(storage_root, location).name]


def test_the_operations_own_limit_and_extension_apply_to_an_upload(client, media, settings):
    png = finished_upload(client, media.png().read_bytes())
    wrong_kind = client.post(f"{API}/operations/", {"operation": "video_compress", "upload": png})
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 10}
    too_big = client.post(
        f"{API}/operations/", {"operation": "image_resize", "parameters": '{"width": 8}', "upload": png}
    )

    assert wrong_kind.status_code == 415
    assert too_big.status_code == 413
    assert Upload.objects.count() == 1


def test_another_sessions_upload_cannot_be_used(client, media):
    location = finished_upload(client, media.png().read_bytes())

    response = Client().post(
        f"{API}/operations/", {"operation": "image_resize", "parameters": '{"width": 8}', "upload": location}
    )

    assert response.status_code == 400
    assert "no such upload" in response.json()["error"]["details"]["upload"][0]
    assert Upload.objects.count() == 1


def test_an_upload_being_used_by_another_request_is_409_and_stays(client, media, storage_root):
    location = finished_upload(client, media.png().read_bytes())
    body = {"operation": "image_resize", "parameters": '{"width": 8}', "upload": location}
    with part(storage_root, location).open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        busy = client.post(f"{API}/operations/", body)

    assert busy.status_code == 409
    assert Operation.objects.count() == 0
    assert client.post(f"{API}/operations/", body).status_code == 201
    assert client.post(f"{API}/operations/", body).status_code == 400  # consumed
    assert Operation.objects.count() == 1


def test_more_than_one_input_is_a_400(client, media):
    location = finished_upload(client, media.png().read_bytes())
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        f"{API}/operations/",
        {
            "operation": "image_resize",
            "upload": location,
            "file": SimpleUploadedFile("a.png", media.png().read_bytes()),
        },
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) >= {"file", "upload"}
    assert Upload.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        "text",
        {"operation": "image_resize", "upload": {"id": 1}},
        {"operation": "image_resize", "source_url": ["http://8.8.8.8/a.png"]},
        {"operation": "image_resize", "parameters": [1], "source_url": "http://8.8.8.8/a.png"},
        {"operation": "image_resize", "upload": "", "source_url": ""},
    ],
)
def test_a_malformed_json_body_is_a_400(client, body):
    response = client.post(f"{API}/operations/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert Operation.objects.count() == 0


def test_an_idempotent_retry_with_an_upload_returns_the_first_operation(client, media):
    location = finished_upload(client, media.png().read_bytes())
    body = {"operation": "image_resize", "parameters": '{"width": 8}', "upload": location}

    first = client.post(f"{API}/operations/", body, HTTP_IDEMPOTENCY_KEY="same")
    again = client.post(f"{API}/operations/", body, HTTP_IDEMPOTENCY_KEY="same")

    assert (first.status_code, again.status_code) == (201, 200), again.json()
    assert first.json()["data"]["id"] == again.json()["data"]["id"]


# --- POST /operations/ with a source_url: refused targets at create time --------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://2130706433/a.png",
        "http://[::1]/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://localhost/a.png",
        "ftp://8.8.8.8/a.png",
        "http://user:pw@8.8.8.8/a.png",
        "http://8.8.8.8/" + "a" * 2100 + ".png",
        "http://8.8.8.8/a\x00.png",
        "not a url",
    ],
)
def test_a_refused_source_url_is_a_400_on_that_field(client, url):
    response = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": {"width": 8}, "source_url": url},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"]["source_url"]
    assert Operation.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_permitted_source_url_is_201_and_queued_without_an_input_yet(client):
    response = client.post(
        f"{API}/operations/",
        {"operation": "image_resize", "parameters": '{"width": 8}', "source_url": "http://93.184.216.34/cat.png"},
    )

    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert (data["status"], data["input_file"]) == ("queued", None)
    assert Operation.objects.get(id=data["id"]).source_url == "http://93.184.216.34/cat.png"


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_a_deeply_nested_json_body_is_a_400_not_a_500(client, depth):
    body = '{"operation": "image_resize", "parameters": ' + "[" * depth + "]" * depth + "}"

    response = client.post(f"{API}/operations/", body, content_type="application/json")

    assert response.status_code == 400
    assert Operation.objects.count() == 0
