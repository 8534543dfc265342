"""config/cron.py: RQ cron enqueues the retention pass, and a real worker runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq.cron import CronScheduler

from apps.operations.enums import FileType, OperationStatus
from apps.operations.services.cleanup import CleanupReport, cleanup_run
from apps.operations.services.recovery import RecoveryReport, recovery_run
from apps.processors.formats import MediaType
from apps.storage.backend import get_storage
from tests.factories import let_expire


@pytest.mark.django_db
def test_the_cron_config_schedules_cleanup_hourly_and_a_worker_runs_it(redis_connection, run_worker, make_operation):
    scheduler = CronScheduler(connection=redis_connection)
    scheduler.load_config_from_file("config/cron.py")
    (cleanup,) = [job for job in scheduler.get_jobs() if job.name == "konvrt-cleanup"]
    assert cleanup.func is cleanup_run
    assert cleanup.queue_name == "image_queue"
    assert cleanup.interval == 60 * 60
    assert cleanup.job_options["job_timeout"] == 15 * 60
    expired = let_expire(
        make_operation(operation="image_convert", status=OperationStatus.FAILED), ago=timedelta(hours=1)
    )
    stored_key = expired.files.get(file_type=FileType.INPUT).file_path

    job = cleanup.enqueue(redis_connection)
    run_worker("image_queue")

    job.refresh()
    assert job.is_finished
    report = job.return_value()
    assert isinstance(report, CleanupReport) and report.expired_operations == 1
    assert not get_storage().exists(key=stored_key, media_type=MediaType.IMAGE)


@pytest.mark.django_db
def test_the_cron_config_schedules_the_recovery_sweep_every_30_seconds_and_a_worker_runs_it(
    redis_connection, run_worker, settings, make_operation
):
    scheduler = CronScheduler(connection=redis_connection)
    scheduler.load_config_from_file("config/cron.py")
    (recovery,) = [job for job in scheduler.get_jobs() if job.name == "konvrt-recovery"]
    assert recovery.func is recovery_run
    assert recovery.queue_name == "image_queue"
    assert recovery.interval == settings.RECOVERY_INTERVAL_SECONDS == 30
    pending = make_operation(operation="image_convert", status=OperationStatus.PENDING)

    job = recovery.enqueue(redis_connection)
    run_worker("image_queue", max_jobs=1)

    job.refresh()
    assert job.is_finished
    assert job.return_value() == RecoveryReport(pending_queued=1)
    pending.refresh_from_db()
    assert pending.status == OperationStatus.QUEUED


def test_the_cron_config_schedules_the_webhook_sweep_on_the_webhook_queue(redis_connection, settings):
    from apps.operations.services.webhooks import webhook_sweep_run

    scheduler = CronScheduler(connection=redis_connection)
    scheduler.load_config_from_file("config/cron.py")
    (sweep,) = [job for job in scheduler.get_jobs() if job.name == "konvrt-webhook-sweep"]

    assert sweep.func is webhook_sweep_run
    assert sweep.queue_name == "webhook_queue"
    assert sweep.interval == settings.RECOVERY_INTERVAL_SECONDS
