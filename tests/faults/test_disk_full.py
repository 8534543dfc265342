"""The temp directory's disk fills up during a job: a real 2 MB tmpfs mounted as the worker's
TEMP_ROOT, too small for the result. The operation waits for its retry with a clear message,
leaving nothing on the disk, and completes once there is room."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import django_rq
import pytest
from rq.job import Job

from apps.operations.enums import FileType
from tests.faults.conftest import FAULT_TEST, assert_nothing_orphaned, wait_for_status
from tests.processors.conftest import assert_completed
from tests.processors.processes import wait_until

pytestmark = FAULT_TEST


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    mount_point = tmp_path / "small-temp"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"Cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_temp_disk_retries_with_a_clear_message_and_leaves_nothing_behind(
    fleet, small_disk, media, submit, storage_root, fault_timings
):
    # 30 s of MP3 (~0.5 MB) fits; the same as WAV (~5 MB) does not.
    operation = submit("audio_convert", media.audio(duration=30, extension="mp3"), {"output_format": "wav"})
    fleet.start_pool("audio_queue", TEMP_ROOT=str(small_disk))
    started = time.monotonic()

    assert wait_until(lambda: operation.refresh_from_db() or operation.error_message, timeout=120), fleet.log_tails()
    fault_timings("disk full → retry scheduled with a message", time.monotonic() - started)
    assert operation.status == "queued"
    assert operation.error_message == (
        "The server ran out of disk space while processing this file; it will be tried again in 1 minute."
    )
    assert [path for path in small_disk.rglob("*") if path.is_file()] == []  # the workspace went
    assert not operation.files.filter(file_type=FileType.OUTPUT).exists()

    # Room again; then what RQ's scheduler does when the minute is up.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    queue = django_rq.get_queue("audio_queue")
    job = Job.fetch(operation.job_id, connection=queue.connection)
    queue.scheduled_job_registry.remove(job)
    queue.enqueue_job(job)

    wait_for_status(operation, "completed", "failed", fleet=fleet)
    assert_completed(operation)
    assert list(small_disk.joinpath("jobs").iterdir()) == []
    assert_nothing_orphaned(storage_root)
