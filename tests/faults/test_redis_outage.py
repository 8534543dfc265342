"""Redis stopped and started again (without persistence: every job it held is gone), and Redis
flushed under queued jobs: every accepted upload still ends completed."""

from __future__ import annotations

import signal
import time

from django.core.management import get_commands
from django.test import Client
from redis import Redis
from rq import Worker
from rq.cron import CronScheduler

from apps.operations.models import Operation
from tests.api.conftest import API, upload
from tests.faults.conftest import FAULT_TEST, assert_nothing_orphaned, wait_for_status
from tests.processors.conftest import assert_completed
from tests.processors.processes import wait_until

pytestmark = FAULT_TEST


def cron_is_up(redis_server) -> bool:
    return bool(CronScheduler.all(Redis.from_url(redis_server.url)))


def fleet_is_up(redis_server) -> bool:
    """A worker listens and the cron scheduler has registered (so both meet the outage)."""
    return Worker.count(connection=Redis.from_url(redis_server.url)) >= 1 and cron_is_up(redis_server)


def test_an_upload_while_redis_is_down_is_kept_and_completed_once_redis_is_back(
    fleet, redis_server, media, storage_root, fault_timings
):
    cron = fleet.start_cron()
    pool = fleet.start_pool("image_queue")
    assert wait_until(lambda: fleet_is_up(redis_server), timeout=60), fleet.log_tails()
    redis_server.stop()

    client = Client()
    response = upload(client, media.png(), operation="image_convert", parameters={"output_format": "jpg"})

    assert response.status_code == 201, response.content
    created = response.json()["data"]
    assert created["status"] == "pending"
    status = client.get(f"{API}/operations/{created['id']}/status/").json()["data"]
    assert status["waiting_reason"] == (
        "The job queue could not be reached; the operation will be queued automatically."
    )
    # Down for longer than a few sweep intervals: the scheduler and the worker meet the outage.
    time.sleep(4)
    assert cron.poll() is None and pool.poll() is None
    redis_server.start()
    back = time.monotonic()

    operation = Operation.objects.get(id=created["id"])
    wait_for_status(operation, "completed", "failed", fleet=fleet)
    fault_timings("Redis back → pending upload completed", time.monotonic() - back)
    assert_completed(operation)
    assert cron.poll() is None, "the cron scheduler did not survive the outage"
    assert_nothing_orphaned(storage_root)


def test_queued_jobs_lost_in_a_redis_flush_are_queued_again_and_complete(
    fleet, redis_server, media, submit, storage_root, fault_timings
):
    operations = [submit("image_convert", media.png(), {"output_format": "jpg"}) for _ in range(3)]
    redis_server.flush()  # no worker has seen them: they exist only in the database now
    flushed = time.monotonic()
    fleet.start_cron()
    fleet.start_pool("image_queue")

    for operation in operations:
        wait_for_status(operation, "completed", "failed", fleet=fleet)
        assert_completed(operation)
    fault_timings("Redis flushed → 3 queued operations completed", time.monotonic() - flushed)
    assert_nothing_orphaned(storage_root)


def test_the_cron_scheduler_waits_out_an_outage_and_still_stops_when_asked(fleet, redis_server):
    assert get_commands()["rqcron"] == "apps.operations"  # every launcher's `manage.py rqcron`
    cron = fleet.start_cron()
    assert wait_until(lambda: cron_is_up(redis_server), timeout=60), fleet.log_tails()
    redis_server.stop()
    log = fleet.logs / "cron.log"
    assert wait_until(lambda: "Redis is unreachable" in log.read_text(), timeout=30), fleet.log_tails()
    assert cron.poll() is None

    cron.send_signal(signal.SIGTERM)

    assert cron.wait(timeout=30) == 0
