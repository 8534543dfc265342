"""A job that runs past its queue's time limit on a real forking worker: failed with a message that
names the limit, FFmpeg stopped, nothing left behind."""

from __future__ import annotations

import time

from tests.faults.conftest import FAULT_TEST, assert_nothing_orphaned, wait_for_status
from tests.processors.conftest import assert_failed_keeping_input
from tests.processors.processes import ffmpeg_processes_under, is_alive, wait_until

pytestmark = FAULT_TEST


def test_a_job_past_its_time_limit_fails_with_a_clear_message_on_a_forking_worker(
    fleet, media, submit, settings, storage_root, fault_timings
):
    # The limit travels with the job (its RQ job_timeout), set when it is queued.
    settings.WORKER_CONFIG = {**settings.WORKER_CONFIG, "video": {**settings.WORKER_CONFIG["video"], "timeout": 3}}
    operation = submit("video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})
    video_pool = fleet.start_pool("video_queue")
    running = wait_until(lambda: ffmpeg_processes_under(video_pool.pid), timeout=60)
    assert running, fleet.log_tails()
    started = time.monotonic()

    wait_for_status(operation, "failed", "completed", fleet=fleet)
    fault_timings("3-second time limit → failed", time.monotonic() - started)
    assert_failed_keeping_input(operation, storage_root, "Processing took longer than the 3-second limit for videos.")
    assert wait_until(lambda: not any(is_alive(pid) for pid in running), timeout=10)  # the encoder was stopped
    assert ffmpeg_processes_under(video_pool.pid) == []
    assert_nothing_orphaned(storage_root)
