"""A worker stopped in the middle of a video without a word to RQ: SIGKILLed with its work-horse
(kill -9, a lost machine), or stopped cold (RQ's second SIGTERM, as ``start_workers.sh stop`` sends
after its grace period: the worker kills its horse and exits). Only the recovery sweep can take
the operation over."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.conf import settings

from apps.operations.enums import FileType
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from tests.faults.conftest import FAST_RECOVERY, FAULT_TEST, assert_nothing_orphaned, wait_for_status
from tests.processors.conftest import assert_completed
from tests.processors.processes import ffmpeg_processes_under, is_alive, parent_of, wait_until

pytestmark = FAULT_TEST


@pytest.mark.parametrize("stop", ["SIGKILL", "cold stop"])
def test_a_worker_stopped_mid_video_is_recovered_and_the_operation_completes_once(
    fleet, media, submit, storage_root, fault_timings, stop
):
    fleet.start_cron()
    fleet.start_pool("image_queue")  # where the recovery sweep runs
    operation = submit("video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})
    first_job = operation.job_id
    video_pool = fleet.start_pool("video_queue")
    running = wait_until(lambda: ffmpeg_processes_under(video_pool.pid), timeout=60)
    assert running, fleet.log_tails()
    (encoder,) = running
    assert wait_until(lambda: operation.refresh_from_db() or operation.progress > 0, timeout=60)
    assert is_alive(encoder)
    horse = parent_of(encoder)
    worker = parent_of(horse)
    assert parent_of(worker) == video_pool.pid

    if stop == "SIGKILL":
        os.kill(worker, signal.SIGKILL)  # first, so that it cannot report the horse's death
        os.kill(horse, signal.SIGKILL)
    else:
        os.kill(worker, signal.SIGTERM)  # warm: finish the job first...
        time.sleep(1.5)  # (RQ ignores a second signal within a second of the first)
        os.kill(worker, signal.SIGTERM)  # ...cold: now
    killed = time.monotonic()

    assert wait_until(lambda: not is_alive(encoder), timeout=10)  # FFmpeg dies with its horse
    taken_over = Operation.objects.filter(id=operation.id, job_id=f"{first_job}-after-1")
    assert wait_until(taken_over.exists, timeout=60), fleet.log_tails()
    recovered_in = time.monotonic() - killed
    wait_for_status(operation, "completed", "failed", fleet=fleet)
    completed_in = time.monotonic() - killed
    fault_timings(f"{stop} → queued again", recovered_in)
    fault_timings(f"{stop} → completed on the pool's new worker", completed_in)

    # The bound: silence for RECOVERY_STALE_SECONDS, then the next sweep (generous slack for CI).
    bound = int(FAST_RECOVERY["RECOVERY_STALE_SECONDS"]) + int(FAST_RECOVERY["RECOVERY_INTERVAL_SECONDS"])
    assert recovered_in < bound + 20
    assert_completed(operation)
    assert operation.attempt == 2
    assert lifecycle.operation_interruptions(operation) == 1
    assert operation.files.filter(file_type=FileType.OUTPUT).count() == 1
    assert_nothing_orphaned(storage_root)  # the killed attempt's workspace went with the retry
    assert settings.RECOVERY_STALE_SECONDS == 45  # this process keeps the defaults docs/configuration.md states
