"""config/cron.py: RQ cron enqueues the retention pass, and a real worker runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rq.cron import CronScheduler

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services.cleanup import CleanupReport, cleanup_run
from apps.operations.services.recovery import RecoveryReport, recovery_run
from apps.processors.formats import MediaType
from apps.storage.backend import get_storage


@pytest.mark.django_db
def test_the_cron_config_schedules_cleanup_hourly_and_a_worker_runs_it(redis_connection, run_worker, media):
    scheduler = CronScheduler(connection=redis_connection)
    scheduler.load_config_from_file("config/cron.py")
    (cleanup,) = [job for job in scheduler.get_jobs() if job.name == "konvrt-cleanup"]
    assert cleanup.func is cleanup_run
    assert cleanup.queue_name == "image_queue"
    assert cleanup.interval == 60 * 60
    assert cleanup.job_options["job_timeout"] == 15 * 60
    expired = Operation.objects.create(
        session_key="k" * 32,
        operation="image_convert",
        status=OperationStatus.FAILED,
        expires_at=timezone.now() - timedelta(hours=1),
    )
    stored = get_storage().save_upload(
        operation_id=expired.id, source=media.png(), extension="png", media_type=MediaType.IMAGE
    )
    File.objects.create(operation=expired, file_type=FileType.INPUT, file_path=stored.key, mime_type="image/png")

    job = cleanup.enqueue(redis_connection)
    run_worker("image_queue")

    job.refresh()
    assert job.is_finished
    report = job.return_value()
    assert isinstance(report, CleanupReport) and report.expired_operations == 1
    assert not get_storage().exists(key=stored.key, media_type=MediaType.IMAGE)


@pytest.mark.django_db
def test_the_cron_config_schedules_the_recovery_sweep_every_30_seconds_and_a_worker_runs_it(
    redis_connection, run_worker, settings
):
    scheduler = CronScheduler(connection=redis_connection)
    scheduler.load_config_from_file("config/cron.py")
    (recovery,) = [job for job in scheduler.get_jobs() if job.name == "konvrt-recovery"]
    assert recovery.func is recovery_run
    assert recovery.queue_name == "image_queue"
    assert recovery.interval == settings.RECOVERY_INTERVAL_SECONDS == 30
    pending = Operation.objects.create(session_key="k" * 32, operation="image_convert")

    job = recovery.enqueue(redis_connection)
    run_worker("image_queue", max_jobs=1)

    job.refresh()
    assert job.is_finished
    assert job.return_value() == RecoveryReport(pending_queued=1)
    pending.refresh_from_db()
    assert pending.status == OperationStatus.QUEUED
