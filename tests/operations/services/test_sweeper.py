"""The sweeper (one per worker machine): recovery that no worker can swallow, RQ's scheduler taken
over once a lost machine's lock lapses, and this machine's temp files cleaned at start."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import django_rq
import pytest
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler

from apps.operations.enums import OperationStatus
from apps.operations.services import sweeper as sweeper_module
from apps.operations.services.sweeper import SchedulerKeeper, Sweeper
from apps.operations.services.workspace import jobs_temp_root
from tests.operations.services.test_recovery import started_by_a_dead_worker

S = OperationStatus
QUEUES = ["video_queue", "image_queue", "audio_queue"]


@pytest.fixture
def image_job(media, submit):
    return lambda **options: submit("image_convert", media.png(), {"output_format": "jpg"}, **options)


@pytest.fixture
def keeper(redis_connection):
    keeper = SchedulerKeeper(connection=django_rq.get_connection("image_queue"), queue_names=QUEUES)
    yield keeper
    keeper.stop()


def wait_until(condition, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# --- RQ's scheduler -------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_lost_machines_scheduler_lock_is_taken_over_once_it_lapses_and_due_retries_run(
    keeper, redis_connection, image_job
):
    operation = image_job()
    queue = django_rq.get_queue("image_queue")
    job = Job.fetch(operation.job_id, connection=queue.connection)
    queue.remove(job)
    queue.scheduled_job_registry.schedule(job, job.created_at)  # a retry that is due now
    # The machine that held every lock is gone: its locks lapse on their own (RQ's TTL, here 2 s).
    for name in QUEUES:
        redis_connection.set(RQScheduler.get_locking_key(name), "lost-machine", ex=2)

    assert keeper.tick() == []  # still held
    assert wait_until(lambda: keeper.free_locks() == QUEUES, timeout=5)
    started = time.monotonic()
    assert keeper.tick() == sorted(QUEUES)

    assert wait_until(lambda: job.get_status(refresh=True) == JobStatus.QUEUED, timeout=10)
    assert time.monotonic() - started < 10
    assert all(redis_connection.get(RQScheduler.get_locking_key(name)) != b"lost-machine" for name in QUEUES)
    assert keeper.free_locks() == []
    assert keeper.tick() == []  # held, by us: nothing to take


@pytest.mark.django_db(transaction=True)
def test_a_lock_held_by_a_live_scheduler_is_left_alone(keeper, redis_connection):
    redis_connection.set(RQScheduler.get_locking_key("video_queue"), "another-machine", ex=60)

    taken = keeper.tick()

    assert taken == ["audio_queue", "image_queue"]
    assert redis_connection.get(RQScheduler.get_locking_key("video_queue")) == b"another-machine"
    keeper.stop()
    # Stopping releases what this one held, and only that.
    assert sorted(keeper.free_locks()) == ["audio_queue", "image_queue"]
    assert redis_connection.get(RQScheduler.get_locking_key("video_queue")) == b"another-machine"


# --- recovery -------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_recovery_runs_even_while_a_cut_off_machines_idle_worker_waits_on_the_queue(image_job, redis_connection):
    """A cut-off machine's idle worker stays blocked in BLMOVE on a connection Redis believes
    alive, and would be handed the next job of its queue. The sweep is no such job."""
    operation = image_job()
    started_by_a_dead_worker(operation, silent_for=120)
    queue = django_rq.get_queue("image_queue")
    swallowed: list[object] = []
    blocked = threading.Thread(
        target=lambda: swallowed.append(
            django_rq.get_connection("image_queue").blmove(queue.key, "konvrt-test-cut-off", 3, "LEFT", "RIGHT")
        ),
        daemon=True,
    )
    blocked.start()
    time.sleep(0.2)

    sweeper = Sweeper()
    try:
        sweeper.tick()
    finally:
        sweeper.keeper.stop()

    operation.refresh_from_db()
    assert operation.status == S.QUEUED
    assert operation.attempt == 1  # queued again for attempt 2
    blocked.join(timeout=5)
    # The blocked client got the operation's new job (it would have got a sweep job too), yet the
    # sweep had already run: the new job is on the queue or in the cut-off client's hands.
    assert swallowed and swallowed[0] is not None


@pytest.mark.django_db(transaction=True)
def test_a_failing_step_does_not_stop_the_others(monkeypatch, settings):
    workspace = jobs_temp_root() / "killed-job"
    workspace.mkdir(parents=True)
    stamp = time.time() - timedelta(days=2).total_seconds()
    os.utime(workspace, (stamp, stamp))

    def unreachable() -> None:
        raise ConnectionError("the database is on the other side of a cut link")

    monkeypatch.setattr(sweeper_module, "recovery_run", unreachable)
    sweeper = Sweeper()
    monkeypatch.setattr(sweeper.keeper, "tick", unreachable)

    sweeper.tick()

    # This machine's leftovers went, at start, whatever else failed.
    assert not workspace.exists()


@pytest.mark.django_db(transaction=True)
def test_each_step_runs_on_its_own_interval(monkeypatch, settings):
    settings.RECOVERY_INTERVAL_SECONDS = 30
    calls: list[str] = []
    now = [1000.0]
    monkeypatch.setattr(sweeper_module, "recovery_run", lambda: calls.append("recovery"))
    monkeypatch.setattr(sweeper_module, "cleanup_local", lambda: calls.append("cleanup"))
    sweeper = Sweeper(clock=lambda: now[0])
    monkeypatch.setattr(sweeper.keeper, "tick", lambda: calls.append("scheduler"))

    for moment in (1000, 1001, 1005, 1030, 4600):
        now[0] = moment
        sweeper.tick()

    assert calls == [
        "scheduler", "recovery", "cleanup",  # at start
        "scheduler",  # 5 s later
        "scheduler", "recovery",  # 30 s later
        "scheduler", "recovery", "cleanup",  # an hour later
    ]  # fmt: skip
