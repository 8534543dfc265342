"""The progress tracker: one database contact per second at most, writes only on change, truthful
percentages, and a cancel noticed within a second."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.processors.exceptions import OperationStopped
from apps.processors.utils.track_progress import HEARTBEAT_SECONDS, ProgressTracker

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def claimed() -> Operation:
    operation = Operation.objects.create(
        session_key="k" * 32, operation="video_compress", status=OperationStatus.QUEUED
    )
    return lifecycle.operation_claim(operation_id=operation.id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker(claimed, clock) -> ProgressTracker:
    return ProgressTracker(operation_id=claimed.id, attempt=claimed.attempt, clock=clock)


def updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]


def test_progress_is_written_at_most_once_per_second_and_only_when_it_changed(tracker, clock, claimed):
    with CaptureQueriesContext(connection) as queries:
        tracker.report(5.2)  # first report: written
        clock.now += 0.5
        tracker.report(9.0)  # within the second: nothing
        clock.now += 0.5
        tracker.report(9.4)  # a second later and changed: written
        clock.now += 1.0
        tracker.report(9.9)  # same whole percent: a read, not a write
        clock.now += 0.3
        tracker.report(None)  # within the second: nothing at all

    assert len(queries) == 3
    assert len(updates(queries)) == 2
    claimed.refresh_from_db()
    assert claimed.progress == 9


def test_progress_never_goes_back_and_stays_below_100_while_running(tracker, clock, claimed):
    tracker.report(50)
    clock.now += 1
    tracker.report(40)
    claimed.refresh_from_db()
    assert claimed.progress == 50

    clock.now += 1
    tracker.report(100)
    claimed.refresh_from_db()
    assert claimed.progress == 99


def test_a_cancel_is_noticed_within_a_second_even_without_progress(tracker, clock, claimed):
    assert tracker.report(None) is True
    lifecycle.operation_cancel(operation=claimed)

    clock.now += 0.5
    assert tracker.report(None) is True  # not asked yet
    clock.now += 0.5
    assert tracker.report(None) is False
    with pytest.raises(OperationStopped):
        tracker.raise_if_stopped()


def test_a_newer_attempt_stops_the_old_one(tracker, claimed):
    lifecycle.operation_mark_retrying(operation_id=claimed.id, attempt=claimed.attempt, message="storage timeout")
    lifecycle.operation_claim(operation_id=claimed.id)

    assert tracker.report(30) is False
    claimed.refresh_from_db()
    assert claimed.progress == 0  # the old attempt wrote nothing over the new one


def test_a_heartbeat_is_written_when_nothing_changed_for_a_minute(tracker, clock, claimed):
    tracker.report(10)
    claimed.refresh_from_db()
    first_heartbeat = claimed.heartbeat_at

    with CaptureQueriesContext(connection) as queries:
        clock.now += HEARTBEAT_SECONDS - 1
        tracker.report(10.5)
        clock.now += 1
        tracker.report(10.5)

    assert len(updates(queries)) == 1
    claimed.refresh_from_db()
    assert claimed.heartbeat_at > first_heartbeat
    assert claimed.progress == 10


def test_entering_a_phase_records_it_and_stops_a_cancelled_job(tracker, claimed):
    tracker.enter_phase(ProcessingPhase.PROBING)
    claimed.refresh_from_db()
    assert claimed.phase == ProcessingPhase.PROBING

    lifecycle.operation_cancel(operation=claimed)
    with pytest.raises(OperationStopped):
        tracker.enter_phase(ProcessingPhase.PROCESSING)
