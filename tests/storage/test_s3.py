"""The S3 backend: django-storages and boto3 talking to a real S3 server (moto in server mode),
through a proxy that can time out or answer 5xx once or always (tests/s3_server.py)."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.core.exceptions import StorageError
from apps.processors.formats import MediaType
from apps.storage.backend import get_storage, storage_backend_name
from apps.storage.s3 import S3Storage
from tests.config.test_env import run_django


@pytest.fixture
def storage(s3_bucket) -> S3Storage:
    backend = get_storage()
    assert isinstance(backend, S3Storage)
    return backend


def http_get(url: str) -> urllib3.BaseHTTPResponse:
    return urllib3.PoolManager().request("GET", url, redirect=False)


# --- storing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "extension", "media_type"),
    [("video", "mp4", MediaType.VIDEO), ("image", "png", MediaType.IMAGE), ("audio", "mp3", MediaType.AUDIO)],
)
def test_an_upload_is_stored_under_its_generated_key_in_one_request(
    storage, s3_bucket, media, kind, extension, media_type
):
    source = {"video": media.video, "image": media.png, "audio": lambda: media.audio(extension="mp3")}[kind]()
    operation_id = uuid.uuid4()

    stored = storage.save_upload(operation_id=operation_id, source=source, extension=extension, media_type=media_type)

    assert stored.key == f"uploads/{operation_id}/input.{extension}"
    assert stored.size == source.stat().st_size
    assert s3_bucket.keys() == [stored.key]
    assert s3_bucket.read(stored.key) == source.read_bytes()
    (put,) = s3_bucket.proxy.seen("PUT")
    assert put.path == f"/{s3_bucket.name}/{stored.key}" and put.query == ""


def test_objects_are_private(storage, s3_bucket, media):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )

    grants = s3_bucket.client.get_object_acl(Bucket=s3_bucket.name, Key=stored.key)["Grants"]
    # Only the owner: no grant to everyone (AllUsers) or to any authenticated AWS user.
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    assert all(grant["Grantee"].get("Type") == "CanonicalUser" for grant in grants)
    assert not any("x-amz-acl" in request.headers for request in s3_bucket.proxy.seen("PUT"))


def test_a_django_upload_is_read_from_its_start_and_left_open(storage, s3_bucket, media):
    data = media.jpeg().read_bytes()
    upload = SimpleUploadedFile("holiday photo.jpg", data, content_type="image/jpeg")
    upload.read(10)  # the API sniffs the first bytes before storing
    operation_id = uuid.uuid4()

    storage.save_upload(operation_id=operation_id, source=upload, extension="jpg", media_type=MediaType.IMAGE)

    assert s3_bucket.read(f"uploads/{operation_id}/input.jpg") == data
    assert not upload.closed


def test_a_large_file_goes_up_as_one_multipart_upload(settings, s3_bucket, tmp_path):
    settings.S3_MULTIPART_THRESHOLD = 5 * 1024 * 1024
    settings.S3_MULTIPART_CHUNK_SIZE = 5 * 1024 * 1024
    source = tmp_path / "big.mp4"
    source.write_bytes(os.urandom(11 * 1024 * 1024))
    operation_id = uuid.uuid4()

    stored = get_storage().save_upload(
        operation_id=operation_id, source=source, extension="mp4", media_type=MediaType.VIDEO
    )

    parts = [request for request in s3_bucket.proxy.seen("PUT") if "partNumber=" in request.query]
    assert len(parts) == 3
    assert len({parse_qs(part.query)["uploadId"][0] for part in parts}) == 1
    assert s3_bucket.read(stored.key) == source.read_bytes()
    # S3's mark of a multipart object: the ETag ends with the number of parts.
    assert s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=stored.key)["ETag"].strip('"').endswith("-3")


def test_a_large_stream_goes_up_in_parts_and_stays_open(settings, s3_bucket):
    settings.S3_MULTIPART_THRESHOLD = 5 * 1024 * 1024
    settings.S3_MULTIPART_CHUNK_SIZE = 5 * 1024 * 1024
    data = os.urandom(6 * 1024 * 1024)
    stream = io.BytesIO(data)
    operation_id = uuid.uuid4()

    get_storage().save_upload(operation_id=operation_id, source=stream, extension="mp4", media_type=MediaType.VIDEO)

    assert len([r for r in s3_bucket.proxy.seen("PUT") if "partNumber=" in r.query]) == 2
    assert s3_bucket.read(f"uploads/{operation_id}/input.mp4") == data
    assert not stream.closed


def test_an_output_is_stored_and_the_local_copy_is_gone(storage, s3_bucket, media, tmp_path):
    work_copy = tmp_path / "output.mp3"
    shutil.copyfile(media.audio(extension="mp3"), work_copy)
    expected = work_copy.read_bytes()
    operation_id = uuid.uuid4()

    stored = storage.save_output(
        operation_id=operation_id, local_path=work_copy, extension="mp3", media_type=MediaType.AUDIO
    )

    assert stored.key == f"outputs/{operation_id}/output.mp3"
    assert s3_bucket.read(stored.key) == expected
    assert not work_copy.exists()


# --- reading and downloading ----------------------------------------------------------------------
def test_fetch_brings_the_object_into_a_local_file(storage, s3_bucket, media, tmp_path):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.video(), extension="mp4", media_type=MediaType.VIDEO
    )
    destination = tmp_path / "job" / "input.mp4"

    assert storage.fetch_to_path(key=stored.key, destination=destination, media_type=MediaType.VIDEO) == destination

    assert destination.read_bytes() == media.video().read_bytes()
    assert sorted(path.name for path in destination.parent.iterdir()) == ["input.mp4"]


def test_fetch_of_a_missing_object_is_a_clear_permanent_error_and_leaves_no_file(storage, tmp_path):
    destination = tmp_path / "job" / "input.mp4"
    with pytest.raises(StorageError) as raised:
        storage.fetch_to_path(key=f"uploads/{uuid.uuid4()}/input.mp4", destination=destination, media_type="video")
    assert raised.value.permanent is True
    assert "missing" in raised.value.message
    assert list(destination.parent.iterdir()) == []


def test_a_download_is_a_presigned_url_that_expires_and_names_the_file(settings, storage, s3_bucket, media):
    settings.DOWNLOAD_URL_TTL = 120
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )

    target = storage.open_for_download(
        key=stored.key, media_type=MediaType.IMAGE, download_name="holiday_resized.png", mime_type="image/png"
    )

    assert target.stream is None
    query = parse_qs(urlsplit(target.url).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert "X-Amz-Signature" in query
    response = http_get(target.url)
    assert response.status == 200
    assert response.data == media.png().read_bytes()
    assert response.headers["Content-Disposition"] == 'attachment; filename="holiday_resized.png"'
    assert response.headers["Content-Type"] == "image/png"
    # Without the signature the object is not reachable.
    unsigned = target.url.split("?", 1)[0]
    assert http_get(unsigned).status in (401, 403)


def test_a_download_name_that_is_not_ascii_keeps_both_forms(storage, media):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )

    target = storage.open_for_download(key=stored.key, media_type=MediaType.IMAGE, download_name="fête_resized.png")

    disposition = http_get(target.url).headers["Content-Disposition"]
    assert disposition == "attachment; filename=\"fete_resized.png\"; filename*=utf-8''f%C3%AAte_resized.png"


def test_delete_removes_the_object_and_deleting_again_is_fine(storage, s3_bucket, media):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )
    assert storage.exists(key=stored.key, media_type=MediaType.IMAGE)

    storage.delete(key=stored.key, media_type=MediaType.IMAGE)
    storage.delete(key=stored.key, media_type=MediaType.IMAGE)

    assert s3_bucket.keys() == []
    assert not storage.exists(key=stored.key, media_type=MediaType.IMAGE)


def test_stored_keys_lists_both_prefixes_by_age_and_nothing_else(storage, s3_bucket, media):
    first = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="someone-elses/file.txt", Body=b"x")
    later = timezone.now() + timedelta(seconds=5)

    assert list(storage.stored_keys(older_than=later)) == [first.key]
    assert list(storage.stored_keys(older_than=later - timedelta(minutes=5))) == []


# --- failures -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["timeout", "error", "unavailable"])
def test_a_timeout_or_5xx_on_upload_is_retryable_and_the_next_attempt_succeeds(storage, s3_bucket, media, mode):
    operation_id = uuid.uuid4()
    s3_bucket.proxy.fail("PUT", mode, times=1)

    with pytest.raises(StorageError) as raised:
        storage.save_upload(operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE)
    assert raised.value.permanent is False
    # One attempt per call: botocore did not retry behind our back.
    assert len(s3_bucket.proxy.seen("PUT")) == 1

    storage.save_upload(operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE)
    assert s3_bucket.read(f"uploads/{operation_id}/input.png") == media.png().read_bytes()


@pytest.mark.parametrize("mode", ["timeout", "error"])
def test_a_timeout_or_5xx_on_download_is_retryable_and_leaves_no_partial_file(
    storage, s3_bucket, media, tmp_path, mode
):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.video(), extension="mp4", media_type=MediaType.VIDEO
    )
    s3_bucket.proxy.fail("GET", mode, times=1)
    s3_bucket.proxy.fail("HEAD", mode, times=1)
    destination = tmp_path / "job" / "input.mp4"

    with pytest.raises(StorageError) as raised:
        storage.fetch_to_path(key=stored.key, destination=destination, media_type=MediaType.VIDEO)
    assert raised.value.permanent is False
    assert list(destination.parent.iterdir()) == []


def test_s3_failing_always_stays_retryable_and_stores_nothing(storage, s3_bucket, media):
    s3_bucket.proxy.fail("PUT", "error", times=None)

    for _ in range(3):
        with pytest.raises(StorageError) as raised:
            storage.save_upload(
                operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
            )
        assert raised.value.permanent is False
    assert s3_bucket.keys() == []


def test_a_missing_bucket_is_a_permanent_error(settings, s3_bucket, media):
    settings.AWS_STORAGE_BUCKET_NAME = f"missing-{uuid.uuid4().hex[:8]}"

    with pytest.raises(StorageError) as raised:
        get_storage().save_upload(
            operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
        )

    assert raised.value.permanent is True


# --- health ---------------------------------------------------------------------------------------
def test_check_passes_on_a_reachable_bucket(storage):
    storage.check()


@pytest.mark.parametrize("mode", ["timeout", "error"])
def test_check_raises_when_s3_fails(storage, s3_bucket, mode):
    s3_bucket.proxy.fail("HEAD", mode, times=None)
    with pytest.raises(StorageError, match="not usable"):
        storage.check()


def test_check_raises_for_a_bucket_that_does_not_exist(settings, s3_bucket):
    settings.AWS_STORAGE_BUCKET_NAME = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StorageError, match="missing-"):
        get_storage().check()


# --- configuration --------------------------------------------------------------------------------
def test_s3_needs_a_bucket_name():
    result = run_django(["check"], {"STORAGE_BACKEND": "s3", "AWS_STORAGE_BUCKET_NAME": ""}, "config.settings.development")
    assert result.returncode != 0
    assert "AWS_STORAGE_BUCKET_NAME" in result.stderr


def test_an_unknown_storage_backend_is_refused_at_start():
    result = run_django(["check"], {"STORAGE_BACKEND": "ftp"}, "config.settings.development")
    assert result.returncode != 0
    assert "STORAGE_BACKEND must be local, cloudinary or s3" in result.stderr


def test_use_cloudinary_still_selects_cloudinary(settings):
    settings.USE_CLOUDINARY = True
    settings.STORAGE_BACKEND = "local"

    assert storage_backend_name() == "cloudinary"


def test_the_health_endpoints_storage_check_asks_for_the_bucket(s3_bucket):
    from apps.operations.services.health import run_health_checks

    assert run_health_checks()["storage"].ok is True
    s3_bucket.proxy.fail("HEAD", "error", times=None)

    failed = run_health_checks()["storage"]

    assert failed.ok is False
    assert s3_bucket.name in (failed.error or "")
    assert "cloudinary" not in run_health_checks()
