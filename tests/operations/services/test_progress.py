"""The progress tracker: one database contact per second at most, writes only on change, truthful
percentages, and a cancel noticed within a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.operations.enums import OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.operations.services.progress import HEARTBEAT_SECONDS, Heartbeat, ProgressTracker
from apps.processors.exceptions import OperationStopped
from tests.factories import backdate
from tests.processors.processes import is_alive, wait_until

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def claimed(make_operation) -> Operation:
    return make_operation(status=OperationStatus.PROCESSING)


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


# The calls run_ffmpeg made to the tracker in the first 4 s of a real encode (a 30 s clip, x264
# veryslow, Debian's FFmpeg 5.1): (seconds, percent). FFmpeg 5.1 reports a little more than half a
# second apart, so the runner's own half-second wait (None: nothing new) ends just before each
# report. Before the tracker kept what it was given between contacts, every contact fell on a None
# and this whole encode (11 s) ended without one percentage written.
FFMPEG_5_1_CALLS = [
    (0.0, 0.5),
    (0.49, 12.4),
    (1.0, None),
    (1.02, 15.9),
    (1.52, None),
    (1.56, 19.2),
    (2.06, None),
    (2.1, 23.8),
    (2.6, None),
    (2.62, 29.0),
    (3.12, None),
    (3.13, 33.7),
    (3.63, None),
    (3.63, 37.8),
    (4.14, None),
    (4.14, 42.0),
]


def test_a_percentage_reported_between_contacts_is_written_at_the_next_contact(tracker, clock, claimed):
    started = clock.now
    changes = [(0.0, 0)]
    for seconds, percent in FFMPEG_5_1_CALLS:
        clock.now = started + seconds
        assert tracker.report(percent) is True
        claimed.refresh_from_db()
        if claimed.progress != changes[-1][1]:
            changes.append((seconds, claimed.progress))

    # Once a second, each time the highest percentage given so far (the None's contact included).
    assert changes == [(0.0, 0), (1.0, 12), (2.06, 19), (3.12, 29), (4.14, 37)]


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


# --- the job's heartbeat thread -------------------------------------------------------------------
def heartbeat_of(operation: Operation):
    return Operation.objects.values_list("heartbeat_at", flat=True).get(id=operation.id)


@pytest.mark.django_db(transaction=True)  # the thread has a connection of its own: rows must be committed
def test_the_heartbeat_thread_beats_whatever_the_job_is_doing_and_stops_with_it(claimed):
    long_ago = backdate(claimed, timedelta(minutes=5)).heartbeat_at

    with Heartbeat(operation_id=claimed.id, attempt=claimed.attempt, interval=0.1) as heartbeat:
        # The job is busy elsewhere (a long download, Pillow): it writes nothing itself.
        assert wait_until(lambda: heartbeat_of(claimed) > long_ago, timeout=10)

    assert not heartbeat._thread.is_alive()
    stopped_at = heartbeat_of(claimed)
    time.sleep(0.3)
    assert heartbeat_of(claimed) == stopped_at


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_never_revives_an_operation_that_no_longer_wants_the_attempt(claimed):
    lifecycle.operation_cancel(operation=claimed)
    cancelled = Operation.objects.get(id=claimed.id)

    with Heartbeat(operation_id=claimed.id, attempt=claimed.attempt, interval=0.1) as heartbeat:
        assert wait_until(lambda: not heartbeat._thread.is_alive(), timeout=10)  # it gave up by itself

    assert Operation.objects.get(id=claimed.id).heartbeat_at == cancelled.heartbeat_at


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_fences_off_an_attempt_whose_beats_cannot_be_written(claimed):
    """The database out of reach (its writes hang, as on a cut link): once no beat was written for
    ``fence_after`` seconds, ``on_lost`` runs, once. Beats that are written keep it away."""
    lost = []
    with Heartbeat(
        operation_id=claimed.id, attempt=claimed.attempt, interval=0.1, fence_after=1.0, on_lost=lambda: lost.append(1)
    ) as heartbeat:
        time.sleep(1.5)  # beats written all along
        assert lost == []
        with transaction.atomic():
            Operation.objects.select_for_update().get(id=claimed.id)  # the next beat hangs on the row lock
            assert wait_until(lambda: lost, timeout=10)
    assert lost == [1] and heartbeat.lost


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_that_stops_because_the_attempt_is_over_fences_nothing(claimed):
    lifecycle.operation_cancel(operation=claimed)
    lost = []

    with Heartbeat(
        operation_id=claimed.id, attempt=claimed.attempt, interval=0.1, fence_after=0.5, on_lost=lambda: lost.append(1)
    ) as heartbeat:
        time.sleep(1.0)

    assert lost == [] and not heartbeat.lost


def test_abandoning_a_work_horse_kills_it_and_its_ffmpeg_and_only_in_a_work_horse(tmp_path):
    """In a forked work-horse (self fencing on) the abandon is a SIGKILL, and the kernel takes the
    horse's FFmpeg with it; in a process that runs jobs itself it is only logged."""
    script = f"""
import os, subprocess, sys, time
import django
django.setup()
from apps.operations.services import progress
from apps.processors.ffmpeg import process_group_options, resolve_ffmpeg_binary
progress.abandon_work_horse()  # self fencing off: logged, the process lives on
if sys.argv[1] == "horse":
    progress.enable_self_fencing()
ffmpeg = subprocess.Popen(
    [resolve_ffmpeg_binary(), "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "null", "-"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **process_group_options(),
)
open(r"{tmp_path}/ffmpeg.pid", "w").write(str(ffmpeg.pid))
time.sleep(0.5)
progress.abandon_work_horse()
ffmpeg.kill()
print("still here")
"""
    for role, expected in (("worker", 0), ("horse", -signal.SIGKILL)):
        done = subprocess.run(
            [sys.executable, "-c", script, role],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == expected, done.stderr[-2000:]
        assert ("still here" in done.stdout) is (role == "worker")
        ffmpeg_pid = int((tmp_path / "ffmpeg.pid").read_text())
        assert wait_until(lambda pid=ffmpeg_pid: not is_alive(pid), timeout=10)


@pytest.mark.django_db(transaction=True)
def test_no_fence_while_the_attempts_other_sign_of_life_is_still_heard(claimed):
    """The database alone out of reach: while RQ still hears the machine (its worker's parent
    beats in Redis) the sweep will not take the attempt over, so it is not abandoned."""
    lost, heard = [], [True]
    with Heartbeat(
        operation_id=claimed.id,
        attempt=claimed.attempt,
        interval=0.1,
        fence_after=0.5,
        on_lost=lambda: lost.append(1),
        still_heard=lambda: heard[0],
    ):
        with transaction.atomic():
            Operation.objects.select_for_update().get(id=claimed.id)
            time.sleep(1.5)
            assert lost == []  # silent, but heard
            heard[0] = False  # now Redis is gone too
            assert wait_until(lambda: lost, timeout=10)
