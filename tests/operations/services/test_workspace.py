from __future__ import annotations

import uuid

import pytest

from apps.operations.services.workspace import job_workspace
from apps.processors.formats import mime_type_for_extension


def test_job_workspace_is_removed_after_success(storage_root):
    with job_workspace(uuid.uuid4()) as workspace:
        (workspace / "a.mp4").write_bytes(b"x")
        assert workspace.is_relative_to(storage_root / "temp" / "jobs")
    assert not workspace.exists()


def test_job_workspace_is_removed_after_failure():
    with pytest.raises(RuntimeError), job_workspace(uuid.uuid4()) as workspace:
        (workspace / "a.mp4").write_bytes(b"x")
        raise RuntimeError("processing failed")
    assert not workspace.exists()


@pytest.mark.parametrize(
    ("extension", "mime"),
    [
        ("mp4", "video/mp4"),
        ("webm", "video/webm"),
        ("jpg", "image/jpeg"),
        ("aac", "audio/aac"),
        ("qqq", "application/octet-stream"),
    ],
)
def test_mime_types(extension, mime):
    assert mime_type_for_extension(extension) == mime
