"""The local storage backend: save, fetch, download, delete; keys never come from clients."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from apps.core.exceptions import StorageError
from apps.operations.enums import FileType
from apps.processors.formats import MediaType
from apps.storage.local import LocalStorage
from apps.storage.backend import get_storage, object_key


@pytest.fixture
def storage(storage_root: Path) -> LocalStorage:
    backend = get_storage()
    assert isinstance(backend, LocalStorage)
    return backend


def test_keys_are_generated_from_the_operation_id():
    operation_id = uuid.uuid4()
    assert object_key(operation_id=operation_id, file_type=FileType.INPUT, extension="mp4") == (
        f"uploads/{operation_id}/input.mp4"
    )
    assert object_key(operation_id=operation_id, file_type=FileType.OUTPUT, extension="webm") == (
        f"outputs/{operation_id}/output.webm"
    )


@pytest.mark.parametrize("extension", ["../x", "mp4/../../etc", "", "a b", "MP4", "x" * 9])
def test_keys_refuse_hostile_extensions(extension):
    with pytest.raises(ValueError, match="extension"):
        object_key(operation_id=uuid.uuid4(), file_type=FileType.INPUT, extension=extension)


def test_keys_refuse_something_that_is_not_an_id():
    with pytest.raises(ValueError):
        object_key(operation_id="../../etc", file_type=FileType.INPUT, extension="mp4")


def test_save_upload_from_a_small_upload_and_fetch_it_back(storage, storage_root, tmp_path):
    operation_id = uuid.uuid4()
    upload = SimpleUploadedFile("../../x.mp4", b"video bytes")

    stored = storage.save_upload(operation_id=operation_id, source=upload, extension="mp4", media_type=MediaType.VIDEO)

    assert stored.key == f"uploads/{operation_id}/input.mp4"
    assert stored.size == len(b"video bytes")
    assert (storage_root / stored.key).read_bytes() == b"video bytes"
    assert not (storage_root.parent / "x.mp4").exists()
    fetched = storage.fetch_to_path(key=stored.key, destination=tmp_path / "job" / "source.mp4", media_type=MediaType.VIDEO)
    assert fetched.read_bytes() == b"video bytes"


def test_save_upload_moves_a_large_temporary_upload_instead_of_copying(storage, storage_root, settings):
    upload = TemporaryUploadedFile("big.mov", "video/quicktime", 0, None)
    upload.write(b"x" * 4096)
    upload.flush()
    temporary = Path(upload.temporary_file_path())
    assert temporary.is_relative_to(Path(settings.FILE_UPLOAD_TEMP_DIR))

    stored = storage.save_upload(operation_id=uuid.uuid4(), source=upload, extension="mov", media_type=MediaType.VIDEO)

    assert stored.size == 4096
    assert not temporary.exists()
    upload.close()  # Django tolerates the moved file


def test_save_upload_from_a_path_and_a_plain_stream(storage, tmp_path):
    source = tmp_path / "in.wav"
    source.write_bytes(b"RIFF....")
    from_path = storage.save_upload(
        operation_id=uuid.uuid4(), source=source, extension="wav", media_type=MediaType.AUDIO
    )
    from_stream = storage.save_upload(
        operation_id=uuid.uuid4(), source=io.BytesIO(b"RIFF...."), extension="wav", media_type=MediaType.AUDIO
    )
    assert from_path.size == from_stream.size == 8
    assert source.exists(), "saving from a path must not consume the caller's file"


def test_save_output_and_open_for_download(storage, tmp_path):
    produced = tmp_path / "output.mp4"
    produced.write_bytes(b"result")
    operation_id = uuid.uuid4()

    stored = storage.save_output(
        operation_id=operation_id, local_path=produced, extension="mp4", media_type=MediaType.VIDEO
    )
    target = storage.open_for_download(key=stored.key, media_type=MediaType.VIDEO)

    with target.stream as stream:
        assert stream.read() == b"result"
    assert target.size == 6
    assert target.url == ""


def test_delete_removes_file_and_empty_folder_and_is_idempotent(storage, storage_root):
    operation_id = uuid.uuid4()
    stored = storage.save_upload(
        operation_id=operation_id, source=io.BytesIO(b"x"), extension="png", media_type=MediaType.IMAGE
    )

    storage.delete(key=stored.key, media_type=MediaType.IMAGE)
    storage.delete(key=stored.key, media_type=MediaType.IMAGE)

    assert not storage.exists(key=stored.key, media_type=MediaType.IMAGE)
    assert not (storage_root / "uploads" / str(operation_id)).exists()
    assert (storage_root / "uploads").is_dir()


def test_fetch_of_a_missing_object_is_a_permanent_storage_error(storage, tmp_path):
    with pytest.raises(StorageError) as caught:
        storage.fetch_to_path(key=f"uploads/{uuid.uuid4()}/input.mp4", destination=tmp_path / "x.mp4", media_type=MediaType.VIDEO)
    assert caught.value.permanent is True


@pytest.mark.parametrize("key", ["../outside.mp4", "uploads/../../outside.mp4", "/etc/passwd", ""])
def test_keys_that_escape_the_root_are_refused(storage, key, tmp_path):
    with pytest.raises(StorageError, match="outside the storage root"):
        storage.fetch_to_path(key=key, destination=tmp_path / "x", media_type=MediaType.VIDEO)
    with pytest.raises(StorageError, match="outside the storage root"):
        storage.delete(key=key, media_type=MediaType.VIDEO)


def test_check_passes_on_a_writable_root_and_fails_on_a_read_only_one(storage, storage_root):
    storage.check()
    broken = LocalStorage(root=storage_root / "not-a-dir")
    (storage_root / "not-a-dir").write_text("a file where a directory should be")
    with pytest.raises(StorageError, match="not writable"):
        broken.check()


def test_a_failed_write_leaves_no_partial_file(storage, storage_root):
    class Exploding(io.BytesIO):
        def read(self, size=-1):
            raise OSError("disk gone")

    operation_id = uuid.uuid4()
    with pytest.raises(OSError, match="disk gone"):
        storage.save_upload(operation_id=operation_id, source=Exploding(), extension="mp4", media_type=MediaType.VIDEO)

    assert list((storage_root / "uploads" / str(operation_id)).iterdir()) == []
