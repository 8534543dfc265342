"""The Cloudinary backend, with the real SDK talking HTTPS to a local stand-in (tests/cloudinary_standin.py)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.exceptions import StorageError
from apps.processors.formats import MediaType
from apps.storage.cloudinary import CloudinaryStorage, public_id_for_key
from apps.storage.backend import get_storage
from tests.cloudinary_standin import CloudinaryStandIn

ROOT = "mediaprocessor"


def input_public_id(operation_id: uuid.UUID) -> str:
    return f"{ROOT}/uploads/{operation_id}/input"


def output_public_id(operation_id: uuid.UUID) -> str:
    return f"{ROOT}/outputs/{operation_id}/output"


@pytest.fixture
def storage(cloudinary_standin) -> CloudinaryStorage:
    backend = get_storage()
    assert isinstance(backend, CloudinaryStorage)
    return backend


# --- storing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "extension", "media_type", "resource_type"),
    [
        ("video", "mp4", MediaType.VIDEO, "video"),
        ("image", "png", MediaType.IMAGE, "image"),
        ("audio", "mp3", MediaType.AUDIO, "video"),
    ],
)
def test_an_upload_lands_in_the_uploads_folder_under_its_operation_id_with_its_resource_type(
    storage, cloudinary_standin, media, kind, extension, media_type, resource_type
):
    source = {
        "video": lambda: media.video(),
        "image": lambda: media.png(),
        "audio": lambda: media.audio(extension="mp3"),
    }[kind]()
    operation_id = uuid.uuid4()

    stored = storage.save_upload(operation_id=operation_id, source=source, extension=extension, media_type=media_type)

    asset = cloudinary_standin.asset(input_public_id(operation_id), resource_type)
    assert asset is not None and asset.data == source.read_bytes() and asset.format == extension
    assert stored.key == f"uploads/{operation_id}/input.{extension}"
    assert stored.size == source.stat().st_size
    # What the File row keeps comes straight from Cloudinary's answer.
    assert stored.public_id == input_public_id(operation_id)
    assert stored.url == cloudinary_standin.delivery_url(asset)
    (call,) = cloudinary_standin.calls_of("upload")
    assert call.resource_type == resource_type
    assert call.params["public_id"] == input_public_id(operation_id)
    assert call.params["overwrite"] == "1" and call.params["invalidate"] == "1"


def test_audio_extract_output_is_stored_as_audio_in_the_outputs_folder_and_the_local_copy_is_gone(
    storage, cloudinary_standin, media, tmp_path
):
    work_copy = tmp_path / "output.mp3"
    shutil.copyfile(media.audio(extension="mp3"), work_copy)
    expected = work_copy.read_bytes()
    operation_id = uuid.uuid4()

    stored = storage.save_output(
        operation_id=operation_id, local_path=work_copy, extension="mp3", media_type=MediaType.AUDIO
    )

    assert stored.key == f"outputs/{operation_id}/output.mp3"
    assert cloudinary_standin.asset(output_public_id(operation_id), "video").data == expected
    assert not work_copy.exists()


def test_a_django_upload_is_read_from_its_start_and_left_open(storage, cloudinary_standin, media):
    data = media.jpeg().read_bytes()
    upload = SimpleUploadedFile("holiday photo.jpg", data, content_type="image/jpeg")
    upload.read(10)  # the API sniffs the first bytes before storing
    operation_id = uuid.uuid4()

    storage.save_upload(operation_id=operation_id, source=upload, extension="jpg", media_type=MediaType.IMAGE)

    assert cloudinary_standin.asset(input_public_id(operation_id), "image").data == data
    assert not upload.closed
    # The client's filename never reaches Cloudinary: the multipart name is generated too.
    assert cloudinary_standin.calls_of("upload")[0].params["public_id"] == input_public_id(operation_id)


def test_a_file_over_the_threshold_goes_up_in_signed_chunks_of_one_upload(settings, storage, cloudinary_standin, media):
    source = media.video(duration=3.0)
    size = source.stat().st_size
    settings.CLOUDINARY_LARGE_FILE_THRESHOLD = size // 2
    settings.CLOUDINARY_CHUNK_SIZE = size // 4 + 1
    operation_id = uuid.uuid4()

    stored = get_storage().save_upload(
        operation_id=operation_id, source=source, extension="mp4", media_type=MediaType.VIDEO
    )

    calls = cloudinary_standin.calls_of("upload")
    assert len(calls) == 4
    assert len({call.headers["x-unique-upload-id"] for call in calls}) == 1
    assert [call.headers["content-range"].split("/")[1] for call in calls] == [str(size)] * 4
    assert all(call.params["public_id"] == input_public_id(operation_id) for call in calls)
    assert cloudinary_standin.asset(input_public_id(operation_id), "video").data == source.read_bytes()
    assert stored.size == size


def test_a_large_stream_goes_up_in_chunks_and_stays_open(settings, storage, cloudinary_standin, media):
    data = media.video().read_bytes()
    stream = io.BytesIO(data)
    settings.CLOUDINARY_LARGE_FILE_THRESHOLD = len(data) // 3
    settings.CLOUDINARY_CHUNK_SIZE = len(data) // 3 + 1
    operation_id = uuid.uuid4()

    get_storage().save_upload(operation_id=operation_id, source=stream, extension="mp4", media_type=MediaType.VIDEO)

    assert len(cloudinary_standin.calls_of("upload")) == 3
    assert cloudinary_standin.asset(input_public_id(operation_id), "video").data == data
    assert not stream.closed


def test_uploads_are_signed_with_the_configured_algorithm(settings, standin_tls, media):
    ca_file, context = standin_tls
    standin = CloudinaryStandIn(ssl_context=context, signature_algorithm="sha256").start()
    try:
        settings.USE_CLOUDINARY = True
        settings.CLOUDINARY_URL = standin.cloudinary_url
        settings.CLOUDINARY_CA_BUNDLE = str(ca_file)
        operation_id = uuid.uuid4()
        get_storage().save_upload(
            operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE
        )
        assert standin.asset(input_public_id(operation_id), "image") is not None
    finally:
        standin.stop()


def test_a_wrong_api_secret_is_a_permanent_error(settings, cloudinary_standin, media):
    settings.CLOUDINARY_URL = cloudinary_standin.cloudinary_url.replace(cloudinary_standin.api_secret, "wrong")

    with pytest.raises(StorageError) as raised:
        get_storage().save_upload(
            operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
        )

    assert raised.value.permanent is True
    assert "credentials" in raised.value.message
    assert cloudinary_standin.assets == {}


def test_the_three_credentials_work_without_a_cloudinary_url(settings, monkeypatch, cloudinary_standin, media):
    # Without CLOUDINARY_URL the endpoint comes from the SDK's own CLOUDINARY_* variables.
    monkeypatch.setenv("CLOUDINARY_CLOUD_NAME", cloudinary_standin.cloud_name)
    monkeypatch.setenv("CLOUDINARY_UPLOAD_PREFIX", f"https://{cloudinary_standin.host}")
    monkeypatch.setenv("CLOUDINARY_SECURE_DISTRIBUTION", cloudinary_standin.host)
    settings.CLOUDINARY_URL = None
    settings.CLOUDINARY_CREDENTIALS = {
        "cloud_name": cloudinary_standin.cloud_name,
        "api_key": cloudinary_standin.api_key,
        "api_secret": cloudinary_standin.api_secret,
    }
    operation_id = uuid.uuid4()

    get_storage().save_upload(
        operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE
    )

    assert cloudinary_standin.asset(input_public_id(operation_id), "image") is not None


# --- reading --------------------------------------------------------------------------------------
def test_fetch_streams_the_delivered_bytes_to_the_destination(storage, cloudinary_standin, media, tmp_path):
    source = media.video(extension="mov")
    operation_id = uuid.uuid4()
    stored = storage.save_upload(operation_id=operation_id, source=source, extension="mov", media_type=MediaType.VIDEO)
    destination = tmp_path / "job" / "input.mov"

    assert storage.fetch_to_path(key=stored.key, destination=destination, media_type=MediaType.VIDEO) == destination

    assert destination.read_bytes() == source.read_bytes()
    assert [path.name for path in destination.parent.iterdir()] == ["input.mov"]
    lookup, delivery = cloudinary_standin.calls_of("delivery")
    # An authenticated asset, read through a URL signed as Cloudinary checks it.
    signature = cloudinary_standin.url_signature(f"{input_public_id(operation_id)}.mov")
    assert (lookup.params["method"], delivery.params["method"]) == ("HEAD", "GET")
    assert delivery.params["path"].endswith(f"/video/authenticated/{signature}/v1/{input_public_id(operation_id)}.mov")


def test_fetch_of_an_image_asks_for_the_image_resource(storage, cloudinary_standin, media, tmp_path):
    source = media.webp()
    stored = storage.save_upload(operation_id=uuid.uuid4(), source=source, extension="webp", media_type=MediaType.IMAGE)

    storage.fetch_to_path(key=stored.key, destination=tmp_path / "input.webp", media_type=MediaType.IMAGE)

    assert (tmp_path / "input.webp").read_bytes() == source.read_bytes()


def test_fetch_of_a_missing_resource_is_a_clear_permanent_error_and_leaves_no_file(storage, tmp_path):
    destination = tmp_path / "job" / "input.mp4"

    with pytest.raises(StorageError) as raised:
        storage.fetch_to_path(key=f"uploads/{uuid.uuid4()}/input.mp4", destination=destination, media_type=MediaType.VIDEO)

    assert raised.value.permanent is True
    assert raised.value.message == "The stored file is missing from Cloudinary; it may have expired or been deleted."
    assert list(destination.parent.iterdir()) == []


def test_download_target_is_a_signed_expiring_attachment_url_of_the_original(
    settings, storage, cloudinary_standin, media
):
    settings.DOWNLOAD_URL_TTL = 90
    source = media.audio(extension="flac")
    operation_id = uuid.uuid4()
    stored = storage.save_output(
        operation_id=operation_id,
        local_path=_copy(source),
        extension="flac",
        media_type=MediaType.AUDIO,
        download_name="song_converted.flac",
    )

    target = storage.open_for_download(key=stored.key, media_type=MediaType.AUDIO, download_name="song_converted.flac")

    assert target.stream is None
    url = urlsplit(target.url)
    assert (url.netloc, url.path) == (cloudinary_standin.host, f"/v1_1/{cloudinary_standin.cloud_name}/video/download")
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["public_id"] == f"{ROOT}/outputs/{operation_id}/song_converted" and query["format"] == "flac"
    assert query["type"] == "authenticated" and query["attachment"] in ("1", "true", "True")
    assert int(query["expires_at"]) == pytest.approx(time.time() + 90, abs=5)
    response = _https().request("GET", target.url)
    assert response.status == 200 and response.data == source.read_bytes()
    # The download API names the attachment after the public id's last segment: the download name.
    assert response.headers["Content-Disposition"] == 'attachment; filename="song_converted.flac"'
    assert storage.exists(key=stored.key, media_type=MediaType.AUDIO) is True


@pytest.mark.parametrize(
    ("download_name", "leaf"),
    [
        ("holiday_compressed.mp4", "holiday_compressed"),
        ("Fête à la plage_converted.mp4", "Fete_a_la_plage_converted"),
        ("../../x/y; rm -rf _converted.mp4", "y_rm_-rf__converted"),
        ("日本_resized.mp4", "resized"),
        ("....mp4", "output"),
        ("", "output"),
        ("a" * 300 + ".mp4", "a" * 100),
    ],
)
def test_an_outputs_public_id_ends_in_its_download_name_made_safe_under_the_operations_prefix(
    storage, cloudinary_standin, media, download_name, leaf
):
    operation_id = uuid.uuid4()
    stored = storage.save_output(
        operation_id=operation_id,
        local_path=_copy(media.audio(extension="mp3")),
        extension="mp4",
        media_type=MediaType.VIDEO,
        download_name=download_name,
    )

    assert stored.key == f"outputs/{operation_id}/{leaf}.mp4"
    assert stored.public_id == f"{ROOT}/outputs/{operation_id}/{leaf}"
    assert cloudinary_standin.asset(stored.public_id, "video") is not None
    response = _https().request(
        "GET", storage.open_for_download(key=stored.key, media_type=MediaType.VIDEO, download_name=download_name).url
    )
    assert response.headers["Content-Disposition"] == f'attachment; filename="{leaf}.mp4"'
    # The stored key finds the asset again: fetched, listed as an owned key, deleted.
    assert storage.exists(key=stored.key, media_type=MediaType.VIDEO) is True
    storage.delete(key=stored.key, media_type=MediaType.VIDEO)
    assert storage.exists(key=stored.key, media_type=MediaType.VIDEO) is False


def test_a_download_url_stops_working_once_it_expires(settings, storage, cloudinary_standin, media):
    settings.DOWNLOAD_URL_TTL = 1
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )
    target = storage.open_for_download(key=stored.key, media_type=MediaType.IMAGE)
    time.sleep(1.1)

    assert _https().request("GET", target.url).status == 401


def test_nothing_stored_is_reachable_without_a_signature(storage, cloudinary_standin, media):
    operation_id = uuid.uuid4()
    stored = storage.save_upload(operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE)
    asset = cloudinary_standin.asset(input_public_id(operation_id), "image")

    assert asset is not None and asset.type == "authenticated"
    assert cloudinary_standin.calls_of("upload")[0].params["type"] == "authenticated"
    host = f"https://{cloudinary_standin.host}/{cloudinary_standin.cloud_name}/image"
    path = f"v{asset.version}/{asset.public_id}.png"
    # What Cloudinary answered with, a guess at the public upload URL, and a forged signature.
    for url in (stored.url, f"{host}/upload/{path}", f"{host}/authenticated/{path}", f"{host}/authenticated/s--AAAAAAAA--/{path}"):
        assert _https().request("GET", url).status in (401, 404), url


def test_stored_keys_lists_both_folders_of_both_resource_types_by_age(storage, cloudinary_standin, media):
    old = time.time() - 2 * 86400
    ids = [uuid.uuid4() for _ in range(3)]
    cloudinary_standin.put_asset(public_id=input_public_id(ids[0]), resource_type="image", format="png", data=b"1", created_at=old)
    cloudinary_standin.put_asset(public_id=output_public_id(ids[1]), resource_type="video", format="mp3", data=b"2", created_at=old)
    cloudinary_standin.put_asset(public_id=input_public_id(ids[2]), resource_type="video", format="mp4", data=b"3")
    cloudinary_standin.put_asset(public_id="someone/else", resource_type="image", format="png", data=b"4", created_at=old)

    keys = sorted(storage.stored_keys(older_than=datetime.now(UTC) - timedelta(days=1)))

    assert keys == sorted([f"uploads/{ids[0]}/input.png", f"outputs/{ids[1]}/output.mp3"])


def test_delete_destroys_the_resource_and_deleting_again_is_fine(storage, cloudinary_standin, media):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )

    storage.delete(key=stored.key, media_type=MediaType.IMAGE)
    storage.delete(key=stored.key, media_type=MediaType.IMAGE)

    assert cloudinary_standin.assets == {}
    assert storage.exists(key=stored.key, media_type=MediaType.IMAGE) is False
    first, second, legacy = cloudinary_standin.calls_of("destroy")
    assert first.resource_type == "image" and first.params["invalidate"] == "1" and first.params["type"] == "authenticated"
    assert second.params["public_id"] == first.params["public_id"] == stored.public_id
    # Not found as an authenticated asset the second time: perhaps a file stored before 1.2.
    assert (second.params["type"], legacy.params["type"]) == ("authenticated", "upload")


def test_keys_konvrt_did_not_generate_are_refused():
    for key in (
        "../../etc/passwd",
        "uploads/not-a-uuid/input.mp4",
        f"elsewhere/{uuid.uuid4()}/input.mp4",
        # A named leaf is an output's alone; an input is always "input".
        f"uploads/{uuid.uuid4()}/holiday.mp4",
        f"outputs/{uuid.uuid4()}/../input.mp4",
        f"outputs/{uuid.uuid4()}/a/b.mp4",
        f"outputs/{uuid.uuid4()}/.hidden.mp4",
    ):
        with pytest.raises(StorageError) as raised:
            public_id_for_key(key)
        assert raised.value.permanent is True


# --- failures -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["timeout", "error", "gateway"])
def test_a_timeout_or_5xx_on_upload_is_retryable_and_the_next_attempt_succeeds(
    storage, cloudinary_standin, media, mode
):
    operation_id = uuid.uuid4()
    cloudinary_standin.fail("upload", mode)

    with pytest.raises(StorageError) as raised:
        storage.save_upload(operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE)
    assert raised.value.permanent is False

    storage.save_upload(operation_id=operation_id, source=media.png(), extension="png", media_type=MediaType.IMAGE)
    assert cloudinary_standin.asset(input_public_id(operation_id), "image") is not None


@pytest.mark.parametrize("mode", ["timeout", "error"])
def test_a_timeout_or_5xx_on_download_is_retryable_and_leaves_no_partial_file(
    storage, cloudinary_standin, media, tmp_path, mode
):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.video(), extension="mp4", media_type=MediaType.VIDEO
    )
    cloudinary_standin.fail("delivery", mode)
    destination = tmp_path / "job" / "input.mp4"

    with pytest.raises(StorageError) as raised:
        storage.fetch_to_path(key=stored.key, destination=destination, media_type=MediaType.VIDEO)
    assert raised.value.permanent is False
    assert list(destination.parent.iterdir()) == []

    storage.fetch_to_path(key=stored.key, destination=destination, media_type=MediaType.VIDEO)
    assert destination.read_bytes() == media.video().read_bytes()


def test_a_failing_destroy_is_retryable(storage, cloudinary_standin, media):
    stored = storage.save_upload(
        operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
    )
    cloudinary_standin.fail("destroy", "error")

    with pytest.raises(StorageError) as raised:
        storage.delete(key=stored.key, media_type=MediaType.IMAGE)

    assert raised.value.permanent is False
    assert cloudinary_standin.asset(stored.public_id, "image") is not None


def test_an_untrusted_certificate_is_refused(settings, cloudinary_standin, media):
    # certifi's bundle does not know the stand-in's CA: the CA setting is what made it work.
    settings.CLOUDINARY_CA_BUNDLE = None

    with pytest.raises(StorageError):
        get_storage().save_upload(
            operation_id=uuid.uuid4(), source=media.png(), extension="png", media_type=MediaType.IMAGE
        )

    assert cloudinary_standin.calls_of("upload") == []


def test_check_pings_cloudinary(storage, cloudinary_standin):
    storage.check()

    assert len(cloudinary_standin.calls_of("ping")) == 1


@pytest.mark.parametrize("mode", ["timeout", "error", "gateway"])
def test_check_raises_a_storage_error_when_cloudinary_fails(storage, cloudinary_standin, mode):
    cloudinary_standin.fail("ping", mode, times=None)

    with pytest.raises(StorageError):
        storage.check()


def test_check_raises_a_storage_error_when_cloudinary_is_unreachable(storage, cloudinary_standin):
    cloudinary_standin.stop()

    with pytest.raises(StorageError):
        storage.check()


# --- configuration --------------------------------------------------------------------------------
def test_the_ca_bundle_comes_from_requests_ca_bundle_or_ssl_cert_file(standin_tls, cloudinary_standin):
    ca_file, _ = standin_tls
    script = "import django; django.setup(); from django.conf import settings; print(settings.CLOUDINARY_CA_BUNDLE)"
    base = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "USE_CLOUDINARY": "true",
        "CLOUDINARY_URL": cloudinary_standin.cloudinary_url,
    }
    base.pop("REQUESTS_CA_BUNDLE", None)
    base.pop("SSL_CERT_FILE", None)

    def settings_with(**variables: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603
            [sys.executable, "-c", script],
            env={**base, **variables},
            capture_output=True,
            text=True,
            cwd=django_settings.BASE_DIR,
            timeout=60,
        )

    assert settings_with(SSL_CERT_FILE=str(ca_file)).stdout.strip() == str(ca_file)
    assert settings_with(REQUESTS_CA_BUNDLE=str(ca_file)).stdout.strip() == str(ca_file)
    missing = settings_with(SSL_CERT_FILE=str(ca_file) + ".missing")
    assert missing.returncode != 0
    assert "SSL_CERT_FILE must name a CA certificate file" in missing.stderr


def _copy(path: Path) -> Path:
    copy = path.with_name(f"copy-{uuid.uuid4().hex}{path.suffix}")
    shutil.copyfile(path, copy)
    return copy


def _https() -> urllib3.PoolManager:
    return urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=django_settings.CLOUDINARY_CA_BUNDLE, retries=False)


def test_a_file_stored_before_1_2_as_a_public_upload_asset_is_still_fetched_downloaded_and_deleted(
    storage, cloudinary_standin, media, tmp_path
):
    operation_id = uuid.uuid4()
    data = media.png().read_bytes()
    cloudinary_standin.put_asset(
        public_id=input_public_id(operation_id), resource_type="image", format="png", data=data, type="upload"
    )
    key = f"uploads/{operation_id}/input.png"

    assert storage.exists(key=key, media_type=MediaType.IMAGE)
    storage.fetch_to_path(key=key, destination=tmp_path / "input.png", media_type=MediaType.IMAGE)
    assert (tmp_path / "input.png").read_bytes() == data
    target = storage.open_for_download(key=key, media_type=MediaType.IMAGE)
    assert "type=upload" in target.url and _https().request("GET", target.url).data == data
    storage.delete(key=key, media_type=MediaType.IMAGE)

    assert cloudinary_standin.assets == {}
    assert [call.params["type"] for call in cloudinary_standin.calls_of("destroy")] == ["authenticated", "upload"]


def test_a_download_of_a_file_gone_from_cloudinary_is_a_permanent_error(storage, cloudinary_standin):
    with pytest.raises(StorageError) as raised:
        storage.open_for_download(key=f"outputs/{uuid.uuid4()}/output.mp4", media_type=MediaType.VIDEO)

    assert raised.value.permanent is True
