"""Download, retry, cancel and delete: each through its guarded transition, each refusal a clear error."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import django_rq
import pytest

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.operations.services import operations_manager
from apps.storage.backend import DownloadTarget
from apps.storage.local import LocalStorage
from tests.api.conftest import API, session_key_of, stored_files
from tests.factories import let_expire

pytestmark = pytest.mark.django_db
S = OperationStatus


# --- download -------------------------------------------------------------------------------------
def test_download_streams_the_result_as_an_attachment_named_after_the_original(client, make_operation, storage_root):
    operation = make_operation(session_key_of(client), status=S.COMPLETED, name="holiday.mov")
    output = operation.files.get(file_type=FileType.OUTPUT)

    response = client.get(f"{API}/operations/{operation.id}/download/", headers={"Accept": "video/mp4"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="holiday_compressed.mp4"'
    assert response["Content-Type"] == "video/mp4"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == (storage_root / output.file_path).read_bytes()


@pytest.mark.parametrize(
    ("original", "operation", "disposition"),
    [
        ("song.flac", "audio_extract", 'attachment; filename="song_audio.mp3"'),
        (
            "día de playa.mov",
            "video_compress",
            'attachment; filename="dia de playa_compressed.mp4"; '
            "filename*=utf-8''d%C3%ADa%20de%20playa_compressed.mp4",
        ),
        (
            "写真.png",
            "image_convert",
            "attachment; filename=\"_converted.jpg\"; filename*=utf-8''%E5%86%99%E7%9C%9F_converted.jpg",
        ),
        ('a"b\r\nX-Injected: 1.mov', "video_compress", 'attachment; filename="a_bX-Injected_ 1_compressed.mp4"'),
        ("", "video_convert", 'attachment; filename="file_converted.mp4"'),
    ],
)
def test_download_names_are_derived_and_safe(client, make_operation, original, operation, disposition):
    instance = make_operation(session_key_of(client), status=S.COMPLETED, operation=operation, name=original)

    response = client.get(f"{API}/operations/{instance.id}/download/")

    assert response["Content-Disposition"] == disposition
    assert "X-Injected" not in response.headers


def test_download_before_completion_is_a_409(client, make_operation):
    operation = make_operation(session_key_of(client), status=S.PROCESSING)

    response = client.get(f"{API}/operations/{operation.id}/download/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
    assert "processing" in response.json()["error"]["message"]


def test_download_after_expiry_is_a_410(client, make_operation):
    operation = let_expire(make_operation(session_key_of(client), status=S.COMPLETED))

    response = client.get(f"{API}/operations/{operation.id}/download/")

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "expired"


def test_download_of_a_result_gone_from_storage_is_a_410(client, make_operation, storage_root):
    operation = make_operation(session_key_of(client), status=S.COMPLETED)
    (storage_root / operation.files.get(file_type=FileType.OUTPUT).file_path).unlink()

    response = client.get(f"{API}/operations/{operation.id}/download/")

    assert response.status_code == 410


class UrlStorage(LocalStorage):
    """Stands in for Cloudinary's answer (a URL) without its servers."""

    def open_for_download(self, *, key, media_type, download_name="", mime_type=""):
        return DownloadTarget(url=f"https://res.cloudinary.example/video/upload/{key}")


def test_download_redirects_when_storage_gives_a_url(client, make_operation, storage_root, monkeypatch):
    operation = make_operation(session_key_of(client), status=S.COMPLETED)
    monkeypatch.setattr(operations_manager, "get_storage", lambda: UrlStorage(root=Path(storage_root)))

    response = client.get(f"{API}/operations/{operation.id}/download/")

    assert response.status_code == 302
    assert response["Location"].startswith("https://res.cloudinary.example/video/upload/outputs/")


# --- retry ----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [S.FAILED, S.CANCELLED])
def test_retry_queues_the_same_operation_again(client, make_operation, status):
    failure = {"error_message": "Storage timed out."} if status == S.FAILED else {}
    operation = make_operation(session_key_of(client), status=status, **failure)

    response = client.post(f"{API}/operations/{operation.id}/retry/")

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == str(operation.id)
    assert data["status"] == "queued"
    assert data["error_message"] is None and data["completed_at"] is None
    operation.refresh_from_db()
    assert operation.retry_count == 1
    assert django_rq.get_queue("video_queue").job_ids == [f"operation-{operation.id}-1"]


@pytest.mark.parametrize("status", [S.QUEUED, S.PROCESSING, S.COMPLETED])
def test_retry_of_an_operation_that_did_not_fail_is_a_409(client, make_operation, status):
    operation = make_operation(session_key_of(client), status=status)

    response = client.post(f"{API}/operations/{operation.id}/retry/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
    assert Operation.objects.get(id=operation.id).status == status


def test_retry_after_the_files_expired_is_a_410(client, make_operation):
    operation = let_expire(make_operation(session_key_of(client), status=S.FAILED), ago=timedelta(seconds=1))

    response = client.post(f"{API}/operations/{operation.id}/retry/")

    assert response.status_code == 410
    assert Operation.objects.get(id=operation.id).status == S.FAILED


def test_retry_without_a_stored_input_is_a_410(client, make_operation):
    operation = make_operation(session_key_of(client), operation="image_resize", status=S.FAILED)
    # No service removes the input of an operation that has not expired: the guard is for a row
    # that lost it anyway.
    operation.files.filter(file_type=FileType.INPUT).delete()

    response = client.post(f"{API}/operations/{operation.id}/retry/")

    assert response.status_code == 410


# --- cancel ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.PENDING, S.QUEUED, S.PROCESSING])
def test_cancel_stops_waiting_or_running_work(client, make_operation, status):
    operation = make_operation(session_key_of(client), status=status)

    response = client.post(f"{API}/operations/{operation.id}/cancel/")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == "cancelled"
    assert response.json()["message"] == "The operation was cancelled."
    assert Operation.objects.get(id=operation.id).status == S.CANCELLED


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_cancel_of_a_finished_operation_is_a_409(client, make_operation, status):
    operation = make_operation(session_key_of(client), status=status)

    response = client.post(f"{API}/operations/{operation.id}/cancel/")

    assert response.status_code == 409
    assert f"already {status}" in response.json()["error"]["message"]


# --- delete ---------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_files_and_hides_the_operation(client, make_operation, storage_root):
    operation = make_operation(session_key_of(client), status=S.COMPLETED)
    assert len(stored_files(storage_root)) == 2

    response = client.delete(f"{API}/operations/{operation.id}/")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": None,
        "message": "The operation and its files were deleted.",
    }
    assert stored_files(storage_root) == []
    assert client.get(f"{API}/operations/{operation.id}/").status_code == 404
    assert Operation.objects.get(id=operation.id).is_deleted


@pytest.mark.django_db(transaction=True)
def test_delete_of_running_work_cancels_it(client, make_operation):
    operation = make_operation(session_key_of(client), status=S.PROCESSING)

    assert client.delete(f"{API}/operations/{operation.id}/").status_code == 200

    operation.refresh_from_db()
    assert (operation.status, operation.is_deleted) == (S.CANCELLED, True)
