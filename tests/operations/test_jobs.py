"""The job on a real RQ worker and Redis: phases, outputs, cleanup, cancels, time limits, and which
failures fail at once and which go back through RQ's Retry."""

from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import django_rq
import pytest
from django.db import transaction
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException
from rq.utils import now as rq_now

from apps.core.exceptions import StorageError
from apps.operations import jobs
from apps.operations import worker as konvrt_worker
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import failures, lifecycle, processing, progress
from apps.processors import ffmpeg
from apps.processors.registry import get_operation
from apps.storage.local import LocalStorage
from tests.faults.conftest import TcpProxy
from tests.processors.conftest import assert_completed, assert_failed_keeping_input
from tests.processors.processes import ffmpeg_processes_under, is_alive, parent_of, wait_until, worker_environment

ROOT = Path(__file__).resolve().parents[2]
S = OperationStatus


def rq_job(operation) -> Job:
    return Job.fetch(operation.job_id, connection=django_rq.get_connection("video_queue"))


def queue_of(operation):
    return django_rq.get_queue(get_operation(operation.operation).queue)


def release_scheduled(operation) -> None:
    """What RQ's scheduler does when a retry's delay is over: put the job back on its queue."""
    queue = queue_of(operation)
    job = rq_job(operation)
    queue.scheduled_job_registry.remove(job)
    queue.enqueue_job(job)


def jobs_workspaces(storage_root: Path) -> list[Path]:
    return list((storage_root / "temp" / "jobs").iterdir())


class TickingClock:
    """The job's progress clock, on which every look takes half a second: the tracker's once-a-second
    throttle then depends on how often it is asked, not on how fast this machine encodes."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


@pytest.fixture
def progress_writes(monkeypatch) -> list[tuple[float, dict]]:
    """Every progress/phase write the job's tracker makes, with when it made it on the tracker's
    clock (a ``TickingClock``, given where the job creates its tracker), through a spy that still
    writes."""
    clock = TickingClock()
    monkeypatch.setattr(jobs, "ProgressTracker", functools.partial(progress.ProgressTracker, clock=clock))
    writes: list[tuple[float, dict]] = []
    real = progress.operation_record_progress

    def recording(**kwargs):
        writes.append((clock.now, kwargs))
        return real(**kwargs)

    monkeypatch.setattr(progress, "operation_record_progress", recording)
    return writes


class FlakyStorage(LocalStorage):
    """Local storage whose first ``failures`` fetches time out, as a remote store sometimes does."""

    failures = 0

    def fetch_to_path(self, *, key, destination, media_type):
        if FlakyStorage.failures > 0:
            FlakyStorage.failures -= 1
            raise StorageError("Timed out reading from the object store.", permanent=False)
        return super().fetch_to_path(key=key, destination=destination, media_type=media_type)


class HangingStorage(LocalStorage):
    def fetch_to_path(self, *, key, destination, media_type):
        time.sleep(30)
        raise AssertionError("RQ's job timeout should have interrupted the fetch")


@pytest.fixture
def flaky_storage(monkeypatch, settings):
    # Patched where the job looks it up: the one kind of patch these tests allow.
    monkeypatch.setattr(processing, "get_storage", lambda: FlakyStorage(root=Path(settings.STORAGE_ROOT)))
    return FlakyStorage


# --- the happy path -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_job_records_each_phase_in_order_and_completes(media, submit, run_worker, progress_writes, settings):
    operation = submit("audio_convert", media.audio(duration=1), {"output_format": "mp3"}, name="Song (live).wav")

    run_worker()

    operation.refresh_from_db()
    assert_completed(operation)
    phases = [kwargs["phase"] for _, kwargs in progress_writes if kwargs.get("phase")]
    assert phases == [ProcessingPhase.PROBING, ProcessingPhase.PROCESSING, ProcessingPhase.STORING]
    assert operation.phase == ""
    assert operation.started_at <= operation.completed_at
    assert operation.expires_at == operation.completed_at + timedelta(days=settings.FILE_RETENTION_DAYS)
    output = operation.files.get(file_type=FileType.OUTPUT)
    assert output.file_name == "Song (live)_converted.mp3"
    assert output.file_path == f"outputs/{operation.id}/output.mp3"
    assert output.metadata["audio_codec"] == "mp3"
    assert output.metadata["duration"] == pytest.approx(1.0, abs=0.15)
    assert output.metadata["compression_ratio"] < 1
    assert operation.metadata["processing_seconds"] > 0
    assert rq_job(operation).return_value() == "completed"


@pytest.mark.django_db
@pytest.mark.parametrize("good_input", [True, False])
def test_the_job_workspace_is_removed_whatever_the_outcome(media, run_operation, storage_root, good_input):
    source = media.png() if good_input else media.text(extension="png")

    operation = run_operation("image_convert", source, {"output_format": "jpg"}, inspect=good_input)

    assert operation.status == (S.COMPLETED if good_input else S.FAILED)
    assert jobs_workspaces(storage_root) == []


@pytest.mark.django_db
def test_an_operation_cancelled_while_queued_is_skipped(media, submit, run_worker, storage_root):
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})
    lifecycle.operation_cancel(operation=operation)

    run_worker()

    operation.refresh_from_db()
    assert operation.status == S.CANCELLED
    assert not operation.files.filter(file_type=FileType.OUTPUT).exists()
    assert rq_job(operation).return_value() == "skipped"
    assert list((storage_root / "outputs").iterdir()) == []


class CancelledWhileStoring(LocalStorage):
    """Local storage during whose save_output the operation's user cancels: the moment between the
    output being stored and the operation being completed, which no real timing can hit."""

    def save_output(self, *, operation_id, **kwargs):
        stored = super().save_output(operation_id=operation_id, **kwargs)
        lifecycle.operation_cancel(operation=Operation.objects.get(id=operation_id))
        return stored


@pytest.mark.django_db
def test_an_output_stored_for_an_operation_cancelled_meanwhile_is_deleted_again(
    media, submit, run_worker, monkeypatch, settings, storage_root
):
    monkeypatch.setattr(processing, "get_storage", lambda: CancelledWhileStoring(root=Path(settings.STORAGE_ROOT)))
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})

    run_worker()

    operation.refresh_from_db()
    assert operation.status == S.CANCELLED
    assert not operation.files.filter(file_type=FileType.OUTPUT).exists()
    assert [path for path in (storage_root / "outputs").rglob("*") if path.is_file()] == []
    assert rq_job(operation).return_value() == "stopped"


# --- permanent failures ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_bad_input_fails_at_once_without_an_rq_retry(media, run_operation, storage_root):
    operation = run_operation("video_compress", media.text(extension="mkv"), inspect=False)

    assert_failed_keeping_input(operation, storage_root, "could not be read as MKV")
    job = rq_job(operation)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "failed"
    assert queue_of(operation).scheduled_job_registry.count == 0
    assert "Invalid data" in operation.metadata["failure"]["detail"]


@pytest.mark.django_db
def test_an_ffmpeg_failure_keeps_its_stderr_tail_for_operators(media, run_operation, storage_root, tmp_path):
    # Raw FLAC's demuxer "finds" a stream in anything; FFmpeg then fails on it for real.
    operation = run_operation(
        "audio_convert",
        media.text(extension="flac", content=b"fLaC" + b"\0" * 64),
        {"output_format": "mp3"},
        inspect=False,
    )

    assert operation.status == S.FAILED
    assert "could not be read" in operation.error_message
    assert "[" not in operation.error_message  # no FFmpeg jargon for the user


@pytest.mark.django_db
def test_the_stored_input_missing_fails_at_once(media, submit, run_worker, storage_root):
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})
    (storage_root / operation.files.get(file_type=FileType.INPUT).file_path).unlink()

    run_worker()

    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == "The stored input file is missing."
    assert queue_of(operation).scheduled_job_registry.count == 0


@pytest.mark.django_db
def test_an_unexpected_error_fails_with_a_plain_message_and_keeps_the_traceback(media, submit, run_worker, monkeypatch):
    def broken(**kwargs):
        raise KeyError("width")  # a bug, as it would surface

    monkeypatch.setattr(processing, "verify_output", broken)
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})

    run_worker()

    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == "Something went wrong on our side while processing this file."
    assert "KeyError" in operation.metadata["failure"]["traceback"]
    assert queue_of(operation).scheduled_job_registry.count == 0


# --- retryable failures ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_storage_timeout_is_retried_after_60_then_300_seconds_then_fails(
    media, submit, run_worker, flaky_storage, storage_root
):
    flaky_storage.failures = 3
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})
    queue = queue_of(operation)

    for delay, text in ((60, "in 1 minute"), (300, "in 5 minutes")):
        run_worker(queue.name)
        operation.refresh_from_db()
        assert operation.status == S.QUEUED
        assert operation.error_message == f"File storage did not answer in time; it will be tried again {text}."
        job = rq_job(operation)
        assert job.get_status() == JobStatus.SCHEDULED
        scheduled_in = (queue.scheduled_job_registry.get_scheduled_time(job) - rq_now()).total_seconds()
        assert delay - 15 < scheduled_in <= delay
        release_scheduled(operation)

    run_worker(queue.name)

    operation.refresh_from_db()
    assert_failed_keeping_input(operation, storage_root, "File storage did not answer in time. Please try again later.")
    assert rq_job(operation).get_status() == JobStatus.FINISHED
    assert queue.scheduled_job_registry.count == 0
    assert operation.attempt == 3


@pytest.mark.django_db
def test_a_retry_after_a_storage_timeout_completes_the_same_operation(media, submit, run_worker, flaky_storage):
    flaky_storage.failures = 1
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})

    run_worker()
    release_scheduled(operation)
    run_worker()

    operation.refresh_from_db()
    assert_completed(operation)
    assert operation.error_message == ""
    assert operation.attempt == 2


@pytest.mark.django_db
def test_a_job_abandoned_by_a_dead_worker_goes_back_to_queued_through_rqs_cleanup(media, submit):
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})
    queue = queue_of(operation)
    job = rq_job(operation)
    # A worker took the job, claimed the operation, and died without a word.
    queue.remove(job)
    with queue.connection.pipeline() as pipeline:
        Execution.create(job, ttl=60, pipeline=pipeline)
        pipeline.execute()
    lifecycle.operation_claim(operation_id=operation.id)

    queue.started_job_registry.cleanup(timestamp=time.time() + 3600)

    operation.refresh_from_db()
    assert operation.status == S.QUEUED
    assert (
        operation.error_message
        == "The worker processing this file stopped unexpectedly; it will be tried again in 1 minute."
    )
    assert queue.scheduled_job_registry.count == 1


@pytest.mark.django_db
def test_rq_giving_up_on_an_abandoned_job_fails_the_operation(media, submit):
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})
    lifecycle.operation_claim(operation_id=operation.id)
    job = rq_job(operation)
    job.retries_left = 0

    jobs.on_job_failure(job, job.connection, AbandonedJobError, AbandonedJobError(), None)

    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == "The worker processing this file stopped unexpectedly. Please try again later."


@pytest.mark.django_db
def test_a_permanent_failure_reaching_rq_fails_the_operation_and_cancels_rqs_retries(media, submit):
    operation = submit("video_compress", media.video(duration=1))
    lifecycle.operation_claim(operation_id=operation.id)
    job = rq_job(operation)
    assert job.retries_left == 2
    error = JobTimeoutException("Task exceeded maximum timeout value (1800 seconds)")

    jobs.on_job_failure(job, job.connection, JobTimeoutException, error, None)

    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == "Processing took longer than the 30-minute limit for videos."
    assert job.retries_left == 0


@pytest.mark.django_db
def test_a_work_horse_killed_past_the_time_limit_fails_and_is_not_retried(media, submit):
    operation = submit("video_compress", media.video(duration=1))
    lifecycle.operation_claim(operation_id=operation.id)
    job = rq_job(operation)
    job.timeout = 1800
    job.started_at = rq_now() - timedelta(seconds=1900)

    jobs.on_work_horse_killed(job, 123, signal.SIGKILL, None)

    operation.refresh_from_db()
    assert operation.status == S.FAILED
    assert operation.error_message == "Processing took longer than the 30-minute limit for videos."
    assert job.retries_left == 0


# --- time limits ----------------------------------------------------------------------------------
@pytest.fixture
def short_limits(settings):
    settings.WORKER_CONFIG = {
        group: {**worker, "timeout": {"video": 2, "image": 1}.get(group, worker["timeout"])}
        for group, worker in settings.WORKER_CONFIG.items()
    }


@pytest.mark.django_db
def test_a_job_past_its_time_limit_fails_with_a_clear_message_and_stops_ffmpeg(
    media, submit, run_worker, short_limits, storage_root
):
    operation = submit("video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})

    run_worker()

    operation.refresh_from_db()
    assert_failed_keeping_input(operation, storage_root, "Processing took longer than the 2-second limit for videos.")
    assert ffmpeg_processes_under(os.getpid()) == []
    assert queue_of(operation).scheduled_job_registry.count == 0
    assert jobs_workspaces(storage_root) == []


@pytest.mark.django_db
def test_rqs_own_job_timeout_fails_the_operation_instead_of_retrying_it(
    media, submit, run_worker, short_limits, monkeypatch, settings, storage_root
):
    monkeypatch.setattr(processing, "get_storage", lambda: HangingStorage(root=Path(settings.STORAGE_ROOT)))
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})

    run_worker()

    operation.refresh_from_db()
    assert_failed_keeping_input(operation, storage_root, "Processing took longer than the 1-second limit for images.")
    assert queue_of(operation).scheduled_job_registry.count == 0


@pytest.mark.parametrize(
    ("operation", "seconds", "message"),
    [
        ("video_compress", 1800, "Processing took longer than the 30-minute limit for videos."),
        ("image_resize", 60, "Processing took longer than the 1-minute limit for images."),
        ("audio_extract", 300, "Processing took longer than the 5-minute limit for audio."),
        ("audio_convert", 90, "Processing took longer than the 90-second limit for audio."),
    ],
)
def test_time_limit_messages_name_the_limit_and_the_kind_of_file(operation, seconds, message):
    assert failures.time_limit_message(get_operation(operation), seconds) == message


# --- progress -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_progress_rises_between_0_and_100_with_at_most_one_write_per_second(media, submit, run_worker, progress_writes):
    # Long enough for FFmpeg to report several times (every half second) while it encodes.
    operation = submit("video_compress", media.video(duration=30), {"preset": "slower", "quality": 18})

    run_worker()

    operation.refresh_from_db()
    assert_completed(operation)
    progress = [(at, kwargs["progress"]) for at, kwargs in progress_writes if kwargs.get("progress") is not None]
    values = [value for _, value in progress]
    assert any(0 < value < 100 for value in values), values
    assert values == sorted(set(values))  # rising, and never the same value twice
    assert all(later - earlier >= 1 for (earlier, _), (later, _) in zip(progress, progress[1:], strict=False))
    assert max(values) <= 99  # 100 only once the output is stored


# --- the worker -----------------------------------------------------------------------------------
def test_the_worker_takes_its_ttl_from_worker_config(settings):
    video_worker = konvrt_worker.KonvrtWorker(["video_queue"], connection=django_rq.get_connection("video_queue"))
    assert video_worker.worker_ttl == 30
    settings.WORKER_CONFIG = {**settings.WORKER_CONFIG, "audio": {**settings.WORKER_CONFIG["audio"], "worker_ttl": 45}}
    assert konvrt_worker.worker_ttl_for(["image_queue", "audio_queue"]) == 45


def test_the_worker_refreshes_a_running_jobs_rq_heartbeat_every_job_heartbeat_seconds(settings):
    # The recovery sweep reads it as the worker's sign of life: RQ's own default is 30 s.
    settings.JOB_HEARTBEAT_SECONDS = 7
    worker = konvrt_worker.KonvrtWorker(["video_queue"], connection=django_rq.get_connection("video_queue"))
    assert worker.job_monitoring_interval == 7


def test_the_worker_resolves_ffmpeg_before_it_forks_so_work_horses_inherit_the_answer():
    ffmpeg._resolve.cache_clear()  # as in a worker process that has just started

    konvrt_worker.KonvrtWorker(["video_queue"], connection=django_rq.get_connection("video_queue"))

    assert ffmpeg._resolve.cache_info().misses == 1
    # A work-horse is a fork of the worker: its first encode finds the binary in the same cache
    # instead of resolving it again (for imageio-ffmpeg's build, running `ffmpeg -version`).
    ffmpeg.resolve_ffmpeg_binary()
    assert ffmpeg._resolve.cache_info().misses == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_a_temporary_failure_with_a_plain_message(code):
    failure = failures.classify_failure(OSError(code, os.strerror(code)))
    assert failure.permanent is False
    assert failure.message == "The server ran out of disk space while processing this file."


def start_forking_worker(queue: str, storage_root: Path, **environment: str) -> subprocess.Popen:
    """A real `rqworker --burst` with Konvrt's forking worker class, on the test database (and with
    ``environment`` on top)."""
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rqworker",
            queue,
            "--burst",
            "--worker-class",
            "apps.operations.worker.KonvrtWorker",
        ],
        cwd=ROOT,
        env={**worker_environment(storage_root), **environment},
    )


@pytest.fixture
def long_encode(media, submit):
    """A video compression that keeps FFmpeg busy for a while."""
    return lambda: submit("video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_during_processing_stops_ffmpeg_and_leaves_nothing_behind(long_encode, storage_root):
    operation = long_encode()
    worker = start_forking_worker("video_queue", storage_root)
    try:
        running = wait_until(lambda: ffmpeg_processes_under(worker.pid), timeout=60)
        assert running
        assert wait_until(lambda: operation.refresh_from_db() or operation.progress > 0, timeout=60)
        assert all(is_alive(pid) for pid in running)  # the encoder, still at work when cancelled

        lifecycle.operation_cancel(operation=operation)

        assert wait_until(lambda: not any(is_alive(pid) for pid in running), timeout=10)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    operation.refresh_from_db()
    assert operation.status == S.CANCELLED
    assert not operation.files.filter(file_type=FileType.OUTPUT).exists()
    assert list((storage_root / "outputs").iterdir()) == []
    assert jobs_workspaces(storage_root) == []
    assert rq_job(operation).return_value() == "stopped"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_work_horse_takes_ffmpeg_with_it_and_the_operation_is_retried(long_encode, storage_root):
    operation = long_encode()
    worker = start_forking_worker("video_queue", storage_root)
    try:
        running = wait_until(lambda: ffmpeg_processes_under(worker.pid), timeout=60)
        assert running
        horse = parent_of(running[0])

        os.kill(horse, signal.SIGKILL)  # the OOM killer's way

        assert wait_until(lambda: not any(is_alive(pid) for pid in running), timeout=10)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    operation.refresh_from_db()
    assert operation.status == S.QUEUED
    assert (
        operation.error_message
        == "The worker processing this file stopped unexpectedly; it will be tried again in 1 minute."
    )
    assert queue_of(operation).scheduled_job_registry.count == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_work_horse_cut_off_from_database_and_redis_abandons_the_attempt_and_its_ffmpeg(
    media, submit, storage_root, capfd
):
    """A machine cut off from the network: its job can write neither its heartbeat (the database)
    nor its RQ execution (Redis). Once the attempt could be handed to another worker, its
    work-horse kills itself and FFmpeg with it, so that two attempts never encode at once."""
    # Long enough that FFmpeg still runs well past the fence (5 s here), on a busy machine too.
    operation = submit("video_compress", media.video(duration=120), {"preset": "veryslow", "quality": 18})
    redis_url = urlsplit(os.environ["REDIS_URL"])
    redis_link = TcpProxy((redis_url.hostname or "127.0.0.1", redis_url.port or 6379))
    worker = start_forking_worker(
        "video_queue",
        storage_root,
        REDIS_URL=redis_url._replace(netloc=f"127.0.0.1:{redis_link.port}").geturl(),
        RECOVERY_STALE_SECONDS="6",
        JOB_HEARTBEAT_SECONDS="1",
        DATABASE_LINK_TIMEOUT="2",
    )
    try:
        running = wait_until(lambda: ffmpeg_processes_under(worker.pid), timeout=60)
        assert running
        assert wait_until(lambda: operation.refresh_from_db() or operation.progress > 0, timeout=60)
        horse = parent_of(running[0])

        # The job's database writes hang from now on (a row lock holds them), Redis is gone.
        with transaction.atomic():
            Operation.objects.select_for_update().get(id=operation.id)
            redis_link.cut()
            assert all(is_alive(pid) for pid in running)  # still encoding when cut off
            # fence_after = RECOVERY_STALE_SECONDS - JOB_HEARTBEAT_SECONDS = 5 s after its last beat.
            assert wait_until(lambda: not any(is_alive(pid) for pid in [*running, horse]), timeout=20)
    finally:
        redis_link.close()
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)
    assert "abandoning this attempt" in capfd.readouterr().err
