"""POST /operations/: a real upload is sniffed, stored, recorded and queued; every bad input is a
clear error that leaves nothing behind."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rq.job import Job

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from tests.api.conftest import API, session_key_of, stored_files, upload
from tests.factories import backdate

# Created operations are queued once their transaction commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def test_an_mp4_upload_is_described_as_mp4_not_by_ffmpegs_demuxer_name(client, media):
    response = upload(client, media.video(extension="mp4", duration=0.5), operation="video_compress", name="clip.mp4")

    assert response.status_code == 201
    metadata = response.json()["data"]["input_file"]["metadata"]
    assert (metadata["format"], metadata["container"]) == ("mp4", "mov")


def test_upload_is_stored_recorded_and_queued(client, media, storage_root, redis_connection):
    response = upload(
        client, media.video(extension="mov", duration=0.5), operation="video_compress", name="holiday.mov"
    )

    assert response.status_code == 201
    body = response.json()
    data = body["data"]
    assert body["success"] is True
    assert body["message"] == "Operation created and queued for processing."
    assert data["status"] == "queued"
    assert data["parameters"] == {"quality": 23, "preset": "medium", "audio_bitrate": "128k"}
    assert data["input_file"]["file_name"] == "holiday.mov"
    assert data["input_file"]["mime_type"] == "video/quicktime"
    assert data["input_file"]["metadata"]["width"] == 320
    assert data["input_file"]["metadata"]["format"] == "mov"
    assert data["output_file"] is None

    operation = Operation.objects.get(id=data["id"])
    assert operation.session_key == session_key_of(client)
    input_file = operation.files.get(file_type=FileType.INPUT)
    assert input_file.file_path == f"uploads/{operation.id}/input.mov"
    assert (
        (storage_root / input_file.file_path).stat().st_size == input_file.file_size == data["input_file"]["file_size"]
    )

    job = Job.fetch(operation.job_id, connection=redis_connection)
    assert django_rq.get_queue("video_queue").job_ids == [operation.job_id]
    assert job.func_name == "apps.operations.jobs.process_operation"
    assert job.args == (str(operation.id),)
    assert job.timeout == 1800


def test_audio_extract_takes_a_video_and_goes_to_the_audio_queue(client, media):
    response = upload(client, media.video(duration=0.5), operation="audio_extract")

    assert response.status_code == 201
    operation = Operation.objects.get(id=response.json()["data"]["id"])
    assert django_rq.get_queue("audio_queue").job_ids == [operation.job_id]


def test_content_decides_the_stored_extension(client, media, storage_root):
    # A QuickTime file named .mp4 is still a video we accept; it is stored as what it is.
    response = upload(client, media.video(extension="mov", duration=0.5), operation="video_compress", name="clip.mp4")

    assert response.status_code == 201
    operation = Operation.objects.get(id=response.json()["data"]["id"])
    assert operation.files.get().file_path.endswith("/input.mov")
    assert response.json()["data"]["input_file"]["file_name"] == "clip.mp4"


def test_hostile_filename_is_kept_only_sanitised(client, media, storage_root):
    response = upload(
        client,
        media.png(),
        operation="image_convert",
        parameters={"output_format": "jpg"},
        name="../../etc/pass\x07wd<>.png",
    )

    assert response.status_code == 201
    operation = Operation.objects.get(id=response.json()["data"]["id"])
    assert response.json()["data"]["input_file"]["file_name"] == "passwd__.png"
    assert [p.relative_to(storage_root).as_posix() for p in stored_files(storage_root)] == [
        f"uploads/{operation.id}/input.png"
    ]


# --- 400 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parameters", "field", "message"),
    [
        ("{not json", "parameters", "Not valid JSON"),
        ("[1, 2]", "parameters", "JSON object"),
        ("null", "parameters", "JSON object"),
        ({"quality": 40}, "quality", "Must be at most 28."),
        ({"quality": 10}, "quality", "Must be at least 18."),
        ({"quality": "high"}, "quality", "Must be of type integer."),
        ({"preset": "warp"}, "preset", "Must be one of"),
        ({"colour": "red"}, "colour", "Unknown parameter."),
    ],
)
def test_bad_parameters_are_a_400_per_field_and_nothing_is_kept(
    client, media, storage_root, parameters, field, message
):
    response = upload(client, media.video(duration=0.5), operation="video_compress", parameters=parameters)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert message in " ".join(error["details"][field])
    assert stored_files(storage_root) == []
    assert not Operation.objects.exists()


def test_a_required_parameter_missing_is_a_400(client, media):
    response = upload(client, media.png(), operation="image_convert", parameters={})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"output_format": ["This parameter is required."]}


def test_unknown_operation_is_a_400(client, media):
    response = upload(client, media.png(), operation="video_explode")

    assert response.status_code == 400
    assert "Unknown operation 'video_explode'" in response.json()["error"]["details"]["operation"][0]


def test_missing_file_and_operation_are_a_400(client):
    response = client.post(f"{API}/operations/", {})

    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"operation", "file"}


def test_empty_file_is_a_400(client):
    response = client.post(
        f"{API}/operations/", {"operation": "image_resize", "file": SimpleUploadedFile("a.png", b"")}
    )

    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_malformed_idempotency_key_is_a_400(client, media):
    response = upload(
        client,
        media.png(),
        operation="image_resize",
        parameters={"width": 10},
        headers={"Idempotency-Key": "two words"},
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["details"]


def test_a_json_body_without_an_upload_or_source_url_is_a_400_naming_them(client):
    # A JSON body can name a tus upload or a source_url (tests/api/test_uploads.py); a file needs multipart.
    response = client.post(f"{API}/operations/", {"operation": "image_resize"}, content_type="application/json")

    assert response.status_code == 400
    assert "exactly one of file, upload" in response.json()["error"]["details"]["file"][0]


def test_an_xml_body_is_a_415(client):
    response = client.post(f"{API}/operations/", "<operation/>", content_type="application/xml")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media"


# --- 415 ------------------------------------------------------------------------------------------
def test_extension_not_accepted_is_a_415(client, media, storage_root):
    response = upload(client, media.png(), operation="video_compress", name="picture.png")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media"
    assert ".png files are not accepted by video_compress" in response.json()["error"]["message"]
    assert stored_files(storage_root) == []


def test_png_named_mp4_is_a_415_and_nothing_is_kept(client, media, storage_root):
    response = upload(client, media.png(), operation="video_compress", name="holiday.mp4")

    assert response.status_code == 415
    assert response.json()["error"]["message"] == "This file is a PNG image, but video_compress needs a video."
    assert stored_files(storage_root) == []
    assert not Operation.objects.exists()


def test_large_disguised_upload_on_disk_is_a_415_and_its_temp_file_is_removed(client, media, settings, storage_root):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # the upload streams to a temp file under TEMP_ROOT
    response = upload(client, media.text(extension="mp4", content=b"x" * 50_000), operation="video_compress")

    assert response.status_code == 415
    assert stored_files(storage_root) == []


# --- 413 ------------------------------------------------------------------------------------------
def test_over_the_operation_limit_is_a_413_and_nothing_is_kept(client, media, settings, storage_root):
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 1000}
    bmp = media.bmp()
    assert bmp.stat().st_size > 1000

    response = upload(client, bmp, operation="image_resize", parameters={"width": 10})

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "file_too_large"
    assert error["details"]["max_file_size"] == 1000
    assert stored_files(storage_root) == []
    assert not Operation.objects.exists()


def test_upload_streamed_to_disk_is_cut_off_at_the_limit_and_removed(client, media, settings, storage_root):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 20_000}
    # Larger than the image limit: the upload handler stops writing at 20 KB while receiving, before
    # any field is validated (an unknown operation would otherwise be the 400 answered).
    big = media.text(extension="png", content=b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000)

    response = upload(client, big, operation="not_validated_yet")

    assert response.status_code == 413
    assert response.json()["error"]["details"]["max_file_size"] == 20_000
    assert stored_files(storage_root) == []


def test_content_length_over_every_limit_is_refused_before_reading(client, media, settings, storage_root):
    settings.MAX_FILE_SIZE = {"video": 1000, "image": 1000, "audio": 1000}
    big = media.text(extension="mp4", content=b"\x00" * (1024 * 1024 + 50_000))

    response = upload(client, big, operation="not_validated_yet")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert stored_files(storage_root) == []


# --- idempotency ----------------------------------------------------------------------------------
def test_same_idempotency_key_returns_the_first_operation(client, media, storage_root):
    headers = {"Idempotency-Key": "upload-7f3a"}
    first = upload(client, media.png(), operation="image_resize", parameters={"width": 10}, headers=headers)
    again = upload(client, media.png(), operation="image_resize", parameters={"width": 10}, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert Operation.objects.count() == 1
    assert len(stored_files(storage_root)) == 1
    assert django_rq.get_queue("image_queue").count == 1


def test_idempotency_key_is_per_session(client, media):
    from django.test import Client

    headers = {"Idempotency-Key": "same-key"}
    mine = upload(client, media.png(), operation="image_resize", parameters={"width": 10}, headers=headers)
    theirs = upload(Client(), media.png(), operation="image_resize", parameters={"width": 10}, headers=headers)

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["data"]["id"] != theirs.json()["data"]["id"]


def test_idempotency_key_can_be_used_again_after_24_hours(client, media):
    headers = {"Idempotency-Key": "daily-report"}
    first = upload(client, media.png(), operation="image_resize", parameters={"width": 10}, headers=headers)
    backdate(Operation.objects.get(id=first.json()["data"]["id"]), timedelta(hours=25))

    second = upload(client, media.png(), operation="image_resize", parameters={"width": 10}, headers=headers)

    assert second.status_code == 201
    assert second.json()["data"]["id"] != first.json()["data"]["id"]
    assert Operation.objects.get(id=first.json()["data"]["id"]).idempotency_key is None


# --- Redis and storage failures -------------------------------------------------------------------
def test_redis_unreachable_gives_201_pending_and_keeps_the_upload(client, media, own_redis, storage_root):
    own_redis.stop()

    response = upload(client, media.png(), operation="image_resize", parameters={"width": 10})

    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "pending"
    assert "queued as soon as" in response.json()["message"]
    operation = Operation.objects.get(id=data["id"])
    assert operation.status == OperationStatus.PENDING
    assert (storage_root / operation.files.get().file_path).is_file()


def test_database_failure_after_storing_removes_the_stored_upload(client, media, storage_root, monkeypatch):
    def broken_create(**kwargs):
        raise RuntimeError("database connection lost")

    monkeypatch.setattr(File.objects, "create", broken_create)

    response = upload(client, media.png(), operation="image_resize", parameters={"width": 10})

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert stored_files(storage_root) == []
    assert not Operation.objects.exists()
