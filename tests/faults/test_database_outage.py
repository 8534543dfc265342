"""The database unreachable for a worker for a few seconds in the middle of a job: the job cannot
record progress, its failure or its retry, and the recovery sweep takes the operation over."""

from __future__ import annotations

import time

from apps.operations.enums import FileType
from tests.faults.conftest import FAULT_TEST, assert_nothing_orphaned, wait_for_status
from tests.processors.conftest import assert_completed
from tests.processors.processes import ffmpeg_processes_under, wait_until

pytestmark = FAULT_TEST

OUTAGE_SECONDS = 3


def test_a_worker_cut_off_from_the_database_mid_job_ends_completed(
    fleet, database_proxy, media, submit, storage_root, fault_timings
):
    fleet.start_cron()
    fleet.start_pool("image_queue")  # the sweep reaches the database directly
    operation = submit("video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})
    first_job = operation.job_id
    environment = fleet.environment()
    through_proxy = environment["DATABASE_URL"].replace(
        environment["DATABASE_URL"].split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{database_proxy.port}"
    )
    video_pool = fleet.start_pool("video_queue", DATABASE_URL=through_proxy)
    assert wait_until(lambda: ffmpeg_processes_under(video_pool.pid), timeout=60), fleet.log_tails()
    assert wait_until(lambda: operation.refresh_from_db() or operation.progress > 0, timeout=60)

    database_proxy.cut()
    time.sleep(OUTAGE_SECONDS)
    database_proxy.restore()
    restored = time.monotonic()

    wait_for_status(operation, "completed", "failed", fleet=fleet)
    fault_timings(f"database back after {OUTAGE_SECONDS} s → completed", time.monotonic() - restored)
    assert_completed(operation)
    assert operation.attempt == 2
    assert operation.job_id == f"{first_job}-after-1"  # taken over by the sweep
    assert operation.files.filter(file_type=FileType.OUTPUT).count() == 1
    assert_nothing_orphaned(storage_root)
