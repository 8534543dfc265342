"""The whole flow on each storage backend: create through the API, a real RQ worker processes it,
status, download, delete; Cloudinary and S3 failures retried by RQ; expired files answer 410.

Cloudinary is the local HTTPS stand-in (tests/cloudinary_standin.py) driven by the real SDK; S3 is
moto in server mode behind a faulty proxy (tests/s3_server.py) driven by django-storages/boto3.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_rq
import pytest
import urllib3
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.utils import now as rq_now

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle
from apps.operations.services.cleanup import cleanup_run
from apps.processors.probe import probe_image, probe_media
from apps.processors.registry import get_operation
from tests.api.test_uploads import finished_upload
from tests.cloudinary_standin import CloudinaryStandIn
from tests.factories import let_expire
from tests.storage.conftest import S3Bucket

pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/v1"
S = OperationStatus


@dataclass(frozen=True)
class Case:
    operation: str
    source: Callable[[Any], Path]
    parameters: dict[str, Any]
    output_extension: str
    output_resource_type: str  # Cloudinary's


CASES = {
    "video": Case(
        "video_compress",
        lambda media: media.video(duration=1.0),
        {"quality": 28, "preset": "ultrafast"},
        "mp4",
        "video",
    ),
    "image": Case("image_resize", lambda media: media.png(), {"width": 32}, "png", "image"),
    "audio": Case("audio_convert", lambda media: media.audio(duration=1.0), {"output_format": "mp3"}, "mp3", "video"),
    # Input a video, output audio: stored as audio (Cloudinary's "video" resource) all the same.
    "audio from video": Case("audio_extract", lambda media: media.video(duration=1.0), {}, "mp3", "video"),
}


@pytest.fixture(params=["local", "cloudinary", "s3"])
def backend(request) -> CloudinaryStandIn | S3Bucket | None:
    if request.param == "cloudinary":
        return request.getfixturevalue("cloudinary_standin")
    if request.param == "s3":
        return request.getfixturevalue("s3_bucket")
    return None


def stored_nothing(backend: CloudinaryStandIn | S3Bucket) -> bool:
    return backend.keys() == [] if isinstance(backend, S3Bucket) else backend.assets == {}


@pytest.fixture
def client(client: Client) -> Client:
    """conftest's client (on a clean Redis: the rate limits count there) with its session made."""
    client.get(f"{API}/session/")
    return client


def create(client: Client, case: Case, media) -> dict[str, Any]:
    source = case.source(media)
    response = client.post(
        f"{API}/operations/",
        {
            "operation": case.operation,
            "parameters": json.dumps(case.parameters),
            "file": SimpleUploadedFile(f"holiday{source.suffix}", source.read_bytes()),
        },
    )
    assert response.status_code == 201, response.content
    return response.json()["data"]


def work(*queue_names: str, with_scheduler: bool = False) -> None:
    """A real RQ worker in burst mode; with the scheduler it first moves due retries onto their queue,
    as RQ's scheduler does in production."""
    connection = django_rq.get_connection("video_queue")
    names = queue_names or [worker["queue"] for worker in settings.WORKER_CONFIG.values()]
    worker = SimpleWorker([django_rq.get_queue(name) for name in names], connection=connection)
    worker.work(burst=True, with_scheduler=with_scheduler, logging_level="WARNING")


def make_retry_due(operation_id: str) -> None:
    """RQ Retry waits 60 s, then 300 s. Rather than wait, move the scheduled job's time to now with
    RQ's own registry API; the next worker's scheduler then enqueues it exactly as it would later."""
    operation = Operation.objects.get(id=operation_id)
    queue = django_rq.get_queue(get_operation(operation.operation).queue)
    job = Job.fetch(operation.job_id, connection=queue.connection)
    assert job.get_status() == JobStatus.SCHEDULED
    queue.scheduled_job_registry.schedule(job, rq_now() - timedelta(seconds=1))


def fetch(url: str) -> bytes:
    return fetch_response(url).data


def fetch_response(url: str) -> urllib3.BaseHTTPResponse:
    response = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=settings.CLOUDINARY_CA_BUNDLE).request(
        "GET", url
    )
    assert response.status == 200
    return response


def job_workspaces() -> list[Path]:
    return list((Path(settings.TEMP_ROOT) / "jobs").iterdir())


def assert_real_output(data: bytes, case: Case, tmp_path: Path) -> None:
    path = tmp_path / f"downloaded.{case.output_extension}"
    path.write_bytes(data)
    if case.output_resource_type == "image":
        assert probe_image(path, allowed_formats=(case.output_extension,)).width == 32
    else:
        assert probe_media(path).duration == pytest.approx(1.0, abs=0.3)


# --- the flow -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CASES))
def test_create_process_status_download_delete(backend, client, media, tmp_path, kind):
    case = CASES[kind]
    created = create(client, case, media)
    operation_id = created["id"]
    assert created["status"] == S.QUEUED

    work()

    status = client.get(f"{API}/operations/{operation_id}/status/").json()["data"]
    assert (status["status"], status["progress"]) == (S.COMPLETED, 100)
    detail = client.get(f"{API}/operations/{operation_id}/").json()["data"]
    assert detail["output_file"]["file_name"].startswith("holiday_")
    assert detail["output_file"]["file_name"].endswith(f".{case.output_extension}")
    output = File.objects.get(operation_id=operation_id, file_type=FileType.OUTPUT)
    # Cloudinary's key (and public id) ends in the download name, its download API's attachment name.
    leaf = "output" if not isinstance(backend, CloudinaryStandIn) else Path(output.file_name).stem
    assert output.file_path == f"outputs/{operation_id}/{leaf}.{case.output_extension}"

    response = client.get(f"{API}/operations/{operation_id}/download/")
    if backend is None:
        assert response.status_code == 200
        data = b"".join(response.streaming_content)
        response.close()
        assert data == (Path(settings.STORAGE_ROOT) / output.file_path).read_bytes()
    elif isinstance(backend, S3Bucket):
        # Redirected to a pre-signed URL; the bytes come from the bucket, named for the user.
        assert response.status_code == 302
        downloaded = urllib3.PoolManager().request("GET", response["Location"])
        assert downloaded.status == 200
        data = downloaded.data
        assert data == backend.read(output.file_path)
        assert downloaded.headers["Content-Disposition"] == f'attachment; filename="{output.file_name}"'
        stored_input = File.objects.get(operation_id=operation_id, file_type=FileType.INPUT)
        assert sorted(backend.keys()) == sorted([stored_input.file_path, output.file_path])
        assert not (Path(settings.STORAGE_ROOT) / "outputs" / operation_id).exists()
    else:
        # Redirected to the secure URL; the bytes come from Cloudinary (the stand-in), not from us.
        assert response.status_code == 302
        public_id = f"mediaprocessor/outputs/{operation_id}/{leaf}"
        asset = backend.asset(public_id, case.output_resource_type)
        assert asset is not None
        # Cloudinary's download API: signed, expiring, an attachment; the asset itself is private.
        assert response["Location"].startswith(f"https://{backend.host}/v1_1/{backend.cloud_name}/")
        assert "expires_at=" in response["Location"] and "type=authenticated" in response["Location"]
        downloaded = fetch_response(response["Location"])
        data = downloaded.data
        assert data == asset.data
        assert downloaded.headers["Content-Disposition"] == f'attachment; filename="{output.file_name}"'
        assert asset.type == "authenticated"
        assert (output.cloudinary_public_id, output.cloudinary_url) == (public_id, backend.delivery_url(asset))
        stored_input = File.objects.get(operation_id=operation_id, file_type=FileType.INPUT)
        assert stored_input.cloudinary_public_id == f"mediaprocessor/uploads/{operation_id}/input"
        assert not (Path(settings.STORAGE_ROOT) / "outputs" / operation_id).exists()
    assert_real_output(data, case, tmp_path)
    assert job_workspaces() == []

    assert client.delete(f"{API}/operations/{operation_id}/").status_code == 200

    assert client.get(f"{API}/operations/{operation_id}/").status_code == 404
    if backend is None:
        assert not (Path(settings.STORAGE_ROOT) / "uploads" / operation_id).exists()
        assert not (Path(settings.STORAGE_ROOT) / "outputs" / operation_id).exists()
    else:
        assert stored_nothing(backend)


@pytest.mark.parametrize("kind", ["video", "image"])
def test_a_finished_tus_upload_is_stored_on_the_backend_and_processed(backend, client, media, kind):
    case = CASES[kind]
    data = case.source(media).read_bytes()
    location = finished_upload(client, data, filename=f"holiday.{case.output_extension}")

    response = client.post(
        f"{API}/operations/",
        {"operation": case.operation, "parameters": case.parameters, "upload": location},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    operation_id = response.json()["data"]["id"]
    stored_input = File.objects.get(operation_id=operation_id, file_type=FileType.INPUT)
    if isinstance(backend, S3Bucket):
        assert backend.read(stored_input.file_path) == data
    elif isinstance(backend, CloudinaryStandIn):
        asset = backend.asset(f"mediaprocessor/uploads/{operation_id}/input", case.output_resource_type)
        assert asset is not None and asset.data == data
    else:
        assert (Path(settings.STORAGE_ROOT) / stored_input.file_path).read_bytes() == data
    # The part is consumed: nothing of the upload is left beside the stored input.
    assert list((Path(settings.STORAGE_ROOT) / "tus").iterdir()) == []

    work()

    status = client.get(f"{API}/operations/{operation_id}/status/").json()["data"]
    assert (status["status"], status["progress"]) == (S.COMPLETED, 100), status
    assert File.objects.get(operation_id=operation_id, file_type=FileType.OUTPUT).file_name.startswith("holiday_")
    assert job_workspaces() == []


# --- Cloudinary failing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "mode"),
    [
        ("delivery", "timeout"),  # fetching the input
        ("delivery", "gateway"),
        ("upload", "timeout"),  # storing the output
        ("upload", "error"),
    ],
)
def test_cloudinary_failing_once_makes_the_job_retry_and_then_complete(cloudinary_standin, client, media, action, mode):
    created = create(client, CASES["image"], media)
    cloudinary_standin.fail(action, mode, times=1)

    work()

    operation = Operation.objects.get(id=created["id"])
    assert operation.status == S.QUEUED
    assert "tried again" in operation.error_message
    assert job_workspaces() == []

    make_retry_due(created["id"])
    work(with_scheduler=True)

    status = client.get(f"{API}/operations/{created['id']}/status/").json()["data"]
    assert status["status"] == S.COMPLETED and status["error_message"] is None
    operation.refresh_from_db()
    assert operation.attempt == 2
    output = File.objects.get(operation_id=created["id"], file_type=FileType.OUTPUT)
    assert cloudinary_standin.asset(f"mediaprocessor/{output.file_path.rsplit('.', 1)[0]}", "image") is not None
    assert job_workspaces() == []


def test_cloudinary_failing_for_good_fails_the_operation_with_a_clear_message_and_no_temp_files(
    cloudinary_standin, client, media
):
    created = create(client, CASES["video"], media)
    cloudinary_standin.fail("delivery", "error", times=None)

    work()
    for _ in range(2):  # RQ Retry: two more attempts
        make_retry_due(created["id"])
        work(with_scheduler=True)

    status = client.get(f"{API}/operations/{created['id']}/status/").json()["data"]
    assert status["status"] == S.FAILED
    assert status["error_message"] == "File storage did not answer in time. Please try again later."
    assert Operation.objects.get(id=created["id"]).attempt == 3
    assert len(cloudinary_standin.calls_of("delivery")) == 3
    assert job_workspaces() == []
    assert list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == []
    # The input is kept, so the user can retry once Cloudinary is back.
    assert cloudinary_standin.asset(f"mediaprocessor/uploads/{created['id']}/input", "video") is not None
    assert not [public_id for _, public_id in cloudinary_standin.assets if "/outputs/" in public_id]


def test_cloudinary_refusing_the_upload_answers_503_and_keeps_nothing(cloudinary_standin, client, media):
    cloudinary_standin.fail("upload", "error", times=None)
    source = media.png()

    response = client.post(
        f"{API}/operations/",
        {
            "operation": "image_convert",
            "parameters": '{"output_format": "jpg"}',
            "file": SimpleUploadedFile("a.png", source.read_bytes()),
        },
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert not Operation.objects.exists()
    assert cloudinary_standin.assets == {}


# --- expiry ---------------------------------------------------------------------------------------
def test_an_expired_download_answers_410_before_and_after_cleanup_removed_its_files(backend, client, media):
    created = create(client, CASES["image"], media)
    work()
    let_expire(Operation.objects.get(id=created["id"]))

    before = client.get(f"{API}/operations/{created['id']}/download/")
    report = cleanup_run()
    after = client.get(f"{API}/operations/{created['id']}/download/")

    assert (before.status_code, after.status_code) == (410, 410)
    assert after.json()["error"]["code"] == "expired"
    assert report.expired_operations == 1 and report.stored_files_removed == 2
    detail = client.get(f"{API}/operations/{created['id']}/").json()["data"]
    assert detail["status"] == S.COMPLETED and detail["output_file"] is None
    if backend is None:
        assert not list((Path(settings.STORAGE_ROOT) / "uploads").iterdir())
        assert not list((Path(settings.STORAGE_ROOT) / "outputs").iterdir())
    else:
        assert stored_nothing(backend)


def test_retrying_an_expired_failed_operation_answers_410(backend, client, media):
    created = create(client, CASES["image"], media)
    # As RQ leaves it once the job's retries are exhausted, its job gone from the queue.
    assert lifecycle.operation_mark_failed(operation_id=created["id"], message="Processing failed.")
    django_rq.get_queue("image_queue").empty()
    let_expire(Operation.objects.get(id=created["id"]), ago=timedelta(days=1))
    cleanup_run()

    response = client.post(f"{API}/operations/{created['id']}/retry/")

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "expired"


# --- S3 failing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "mode"), [("GET", "timeout"), ("GET", "error"), ("PUT", "error")])
def test_s3_failing_once_makes_the_job_retry_and_then_complete(s3_bucket, client, media, method, mode):
    created = create(client, CASES["image"], media)  # stored before the fault is armed
    s3_bucket.proxy.fail(method, mode, times=1)

    work()

    operation = Operation.objects.get(id=created["id"])
    assert operation.status == S.QUEUED
    assert "tried again" in operation.error_message
    make_retry_due(created["id"])
    work(with_scheduler=True)

    status = client.get(f"{API}/operations/{created['id']}/status/").json()["data"]
    assert status["status"] == S.COMPLETED and status["error_message"] is None
    assert Operation.objects.get(id=created["id"]).attempt == 2
    assert f"outputs/{created['id']}/output.png" in s3_bucket.keys()
    assert job_workspaces() == []


def test_s3_failing_for_good_fails_the_operation_with_a_clear_message_and_keeps_the_input(s3_bucket, client, media):
    created = create(client, CASES["image"], media)
    s3_bucket.proxy.fail("GET", "error", times=None)

    work()
    for _ in range(2):  # RQ Retry: two more attempts
        make_retry_due(created["id"])
        work(with_scheduler=True)

    status = client.get(f"{API}/operations/{created['id']}/status/").json()["data"]
    assert status["status"] == S.FAILED
    assert status["error_message"] == "File storage did not answer in time. Please try again later."
    assert Operation.objects.get(id=created["id"]).attempt == 3
    assert s3_bucket.keys() == [f"uploads/{created['id']}/input.png"]
    assert job_workspaces() == []


def test_s3_refusing_the_upload_answers_503_and_keeps_nothing(s3_bucket, client, media):
    s3_bucket.proxy.fail("PUT", "unavailable", times=None)
    source = media.png()

    response = client.post(
        f"{API}/operations/",
        {
            "operation": "image_convert",
            "parameters": '{"output_format": "jpg"}',
            "file": SimpleUploadedFile("a.png", source.read_bytes()),
        },
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert not Operation.objects.exists()
    assert s3_bucket.keys() == []
