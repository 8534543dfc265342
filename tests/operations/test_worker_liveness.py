"""A lost machine's workers stop counting as listening within a bound (``/queues/`` and a queued
operation's ``waiting_reason``): RQ lets a worker's registration expire ``worker_ttl`` + 60 s after
its last heartbeat, and ``WORKER_CONFIG`` gives every group a 30 s ``worker_ttl``."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from apps.operations import selectors
from apps.operations import worker as konvrt_worker
from apps.operations.enums import OperationStatus

pytestmark = pytest.mark.django_db

LOST_WORKER_BOUND = 90  # docs/deployment.md, "Several machines"


@pytest.fixture
def video_worker(redis_connection):
    worker = konvrt_worker.KonvrtWorker(["video_queue"], connection=redis_connection)
    worker.register_birth()
    yield worker
    worker.register_death()


def test_every_group_lets_a_silent_workers_registration_expire_within_the_bound(video_worker, redis_connection):
    for group in settings.WORKER_CONFIG.values():
        assert group["worker_ttl"] + 60 <= LOST_WORKER_BOUND, group
    # An idle worker beats at the end of each BLMOVE, every worker_ttl - 15 s.
    assert video_worker.dequeue_timeout == 15

    assert 0 < redis_connection.ttl(video_worker.key) <= LOST_WORKER_BOUND
    video_worker.heartbeat()
    assert 0 < redis_connection.ttl(video_worker.key) <= LOST_WORKER_BOUND


def test_a_worker_whose_registration_expired_no_longer_counts(video_worker, redis_connection, make_operation):
    operation = make_operation("status-session", operation="video_compress", status=OperationStatus.QUEUED)
    assert selectors.queue_statistics()["video_queue"]["workers"] == 1
    assert selectors.operation_status_of(operation).waiting_reason is None

    # Its machine went: no heartbeat, so its registration expires (here at once, not after 90 s).
    redis_connection.pexpire(video_worker.key, 1)
    time.sleep(0.05)

    assert selectors.queue_statistics()["video_queue"]["workers"] == 0
    assert selectors.operation_status_of(operation).waiting_reason.startswith("No video worker is running")
