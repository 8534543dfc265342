from __future__ import annotations

import uuid

import pytest

from apps.operations.services.workspace import job_workspace


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
