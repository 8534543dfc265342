"""An FFmpeg that hangs with its process alive (its input stops coming: a real named pipe that is
held open and never written again) is stopped by the stall watchdog long before the queue's time
limit; the job is retried within RQ's retries and then fails with a clear message."""

from __future__ import annotations

import os
import threading
import time

import django_rq
from rq.job import Job

from apps.processors import audio
from tests.faults.conftest import FAULT_TEST, assert_nothing_orphaned
from tests.processors.conftest import assert_failed_keeping_input
from tests.processors.processes import ffmpeg_processes_under

pytestmark = FAULT_TEST


def test_a_stalled_encoder_is_stopped_retried_and_then_failed_with_a_clear_message(
    media, submit, run_worker, settings, monkeypatch, tmp_path, storage_root, fault_timings
):
    settings.STALL_TIMEOUT_SECONDS = 1
    release = threading.Event()

    def starved_input(path, *, demuxer):
        # Each attempt reads a pipe that gets half a second of audio and then nothing, held open.
        fifo = tmp_path / f"starved-{time.monotonic_ns()}.pcm"
        os.mkfifo(fifo)

        def feed() -> None:
            with open(fifo, "wb") as pipe:
                pipe.write(b"\0" * 8000)
                pipe.flush()
                release.wait(60)

        threading.Thread(target=feed, daemon=True).start()
        return ["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", str(fifo)]

    # Patched where the processor looks it up: the stall itself is a real FFmpeg, waiting.
    monkeypatch.setattr(audio, "input_args", starved_input)
    operation = submit("audio_convert", media.audio(), {"output_format": "mp3"})
    queue = django_rq.get_queue("audio_queue")
    started = time.monotonic()
    try:
        for delay in ("1 minute", "5 minutes"):
            run_worker("audio_queue")
            operation.refresh_from_db()
            assert operation.status == "queued"
            assert operation.error_message == (
                f"Processing stalled: the encoder stopped making progress; it will be tried again in {delay}."
            )
            # What RQ's scheduler does once the delay is over.
            job = Job.fetch(operation.job_id, connection=queue.connection)
            queue.scheduled_job_registry.remove(job)
            queue.enqueue_job(job)
        run_worker("audio_queue")
    finally:
        release.set()
    fault_timings("3 stalled attempts (1 s watchdog) → failed", time.monotonic() - started)

    operation.refresh_from_db()
    assert_failed_keeping_input(
        operation, storage_root, "Processing stalled: the encoder stopped making progress. Please try again later."
    )
    assert operation.attempt == 3
    assert ffmpeg_processes_under(os.getpid()) == []
    assert_nothing_orphaned(storage_root)
