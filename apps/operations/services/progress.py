"""Keeping an operation's progress truthful without flooding the database, and noticing a cancel.

One ``ProgressTracker`` per job attempt. FFmpeg reports progress twice a second; the tracker turns
that into at most one database contact per second:

- the percentage changed → one UPDATE through ``lifecycle.operation_record_progress`` (which also
  refreshes the heartbeat);
- it did not change → a primary-key ``SELECT`` (``lifecycle.operation_is_current``), so a cancel or
  a delete is noticed within about a second even while the encoder is stuck on a hard stretch;
- nothing changed for ``HEARTBEAT_SECONDS`` → an UPDATE of the heartbeat alone, so that a recovery
  sweep can tell a slow job from a dead one.

Both the write and the read answer the same question, "may this attempt still work?": when the
operation was cancelled, deleted or taken over by a newer attempt, the tracker says stop and the
FFmpeg runner stops FFmpeg. The reading of the operation's row, rather than an RQ stop command or a
Redis flag, is deliberate: every path that ends an operation (the API's cancel and delete, the
admin, a recovery sweep) already goes through the guarded transitions in ``lifecycle.py``, so none of
them has to remember to signal the worker as well.

The percentage never goes backwards and stays at most 99 while the job runs: 100 is written by
``operation_mark_completed``, once the output is stored. The API derives the ETA from it and
``started_at`` (``apps.operations.selectors.operation_eta_seconds``), so a truthful percentage is a
truthful ETA.

``Heartbeat`` is the job's sign of life for the recovery sweep: a thread of its own refreshes the
attempt's heartbeat every ``JOB_HEARTBEAT_SECONDS`` (10) whatever the job is doing, FFmpeg or not
(fetching a large input, Pillow, storing the result), so that only a job whose process is gone
falls silent.

It also fences the attempt off. A worker cut off from the network keeps running: once its
heartbeat has gone unwritten long enough for the recovery sweep to take the attempt over
(``RECOVERY_STALE_SECONDS`` less one beat) and this machine cannot reach Redis either (where the
worker's parent keeps the job's RQ execution alive: the sweep takes over only when both are
silent), a second attempt may start on another machine, and only the current one may go on
encoding. The heartbeat then abandons its own: in a forked
work-horse (``KonvrtWorker``, see ``enable_self_fencing``) it kills the horse, FFmpeg with it (the
kernel kills FFmpeg when its parent dies, ``apps.processors.ffmpeg``), without another word to the
database or the storage; RQ's parent reports the horse killed. A database write on a dead link
fails within ``DATABASE_LINK_TIMEOUT``, so the heartbeat gets to decide in time; the job's own
progress checks, which touch the database every second, usually stop FFmpeg even sooner.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from django import db
from django.conf import settings
from redis.exceptions import RedisError

from apps.core.redis import redis_client
from apps.operations.enums import ProcessingPhase
from apps.operations.services.lifecycle import operation_is_current, operation_record_progress
from apps.processors.exceptions import OperationStopped

logger = logging.getLogger(__name__)

CONTACT_INTERVAL_SECONDS = 1.0
REDIS_PROBE_SECONDS = 2.0
HEARTBEAT_SECONDS = 60.0
RUNNING_MAXIMUM = 99

# Set in each forked work-horse (``KonvrtWorker``): a horse may kill itself to abandon an attempt
# it lost. A process that runs jobs itself (RQ's SimpleWorker on Windows, tests) must not: it would
# take the worker down with the job.
_SELF_FENCING = threading.Event()


def enable_self_fencing() -> None:
    _SELF_FENCING.set()


def rq_still_hears_this_machine() -> bool:
    """Whether this machine reaches Redis, where its RQ worker keeps the running job's execution
    alive: while it does, the recovery sweep leaves the attempt alone, whatever the database says."""
    url = next(iter(settings.RQ_QUEUES.values()))["URL"]
    try:
        return bool(redis_client(url, connect_timeout=REDIS_PROBE_SECONDS, timeout=REDIS_PROBE_SECONDS).ping())
    except RedisError:
        return False


def abandon_work_horse() -> None:
    """The fence of a lost attempt: kill this work-horse at once (FFmpeg dies with it) when self
    fencing is on; elsewhere only log, and leave the stop to the job's own progress checks."""
    if not _SELF_FENCING.is_set():
        logger.error("This attempt lost its heartbeat, but this process runs jobs itself: not killing it")
        return
    os.kill(os.getpid(), signal.SIGKILL)


class ProgressTracker:
    def __init__(self, *, operation_id: uuid.UUID, attempt: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.operation_id = operation_id
        self.attempt = attempt
        self._clock = clock
        self._written = 0
        # The highest percentage reported since the job started, written at the next contact.
        self._seen: float | None = None
        self._last_contact = -math.inf
        self._last_write = clock()
        self._current = True

    @property
    def written(self) -> int:
        """The last percentage written to the database."""
        return self._written

    def enter_phase(self, phase: ProcessingPhase) -> None:
        """Record the job's phase now (phases are few, and a client polling the status should see
        them); raise ``OperationStopped`` when this attempt may no longer work."""
        self._current = operation_record_progress(operation_id=self.operation_id, attempt=self.attempt, phase=phase)
        now = self._clock()
        self._last_contact = self._last_write = now
        self.raise_if_stopped()

    def report(self, percent: float | None) -> bool:
        """FFmpeg's latest percentage (``None``: nothing new). Returns ``False`` once the
        operation no longer wants this work; the caller then stops."""
        now = self._clock()
        # A percentage that arrives between contacts is kept, not dropped: the contact may fall on a
        # call that brings nothing new. The FFmpeg runner calls with None whenever half a second
        # passes without a report, and FFmpeg reports every half second (Debian's 5.1 a little
        # later, after the encoding step that crossed the half second). The two lock in step: the
        # empty call lands a few milliseconds before each report, so it was always the one that
        # got the once-a-second contact, and the report right after it fell within the second and
        # was thrown away; a whole encode could end without one percentage written.
        if percent is not None:
            self._seen = percent if self._seen is None else max(self._seen, percent)
        if not self._current or now - self._last_contact < CONTACT_INTERVAL_SECONDS:
            return self._current
        shown = min(RUNNING_MAXIMUM, int(self._seen)) if self._seen is not None else None
        if shown is not None and shown > self._written:
            self._current = operation_record_progress(
                operation_id=self.operation_id, attempt=self.attempt, progress=shown
            )
            self._written = shown
            self._last_write = now
        elif now - self._last_write >= HEARTBEAT_SECONDS:
            self._current = operation_record_progress(operation_id=self.operation_id, attempt=self.attempt)
            self._last_write = now
        else:
            self._current = operation_is_current(operation_id=self.operation_id, attempt=self.attempt)
        self._last_contact = now
        if not self._current:
            logger.info("Operation %s attempt %s is no longer current; stopping", self.operation_id, self.attempt)
        return self._current

    def raise_if_stopped(self) -> None:
        if not self._current:
            raise OperationStopped(f"Operation {self.operation_id} attempt {self.attempt} is no longer current.")


class Heartbeat:
    """Refreshes an attempt's heartbeat from a thread while the job runs (a context manager).

    A write that fails (the database unreachable for a moment) is logged and tried again at the
    next beat: the heartbeat going quiet is exactly what should tell the recovery sweep, through
    ``RECOVERY_STALE_SECONDS``, that something is wrong. It stops beating once the operation no
    longer wants this attempt; the job itself notices that at its next progress check or phase.

    A second thread, the fence, watches the beats: once none has been written for
    ``fence_after`` seconds (by default one beat less than ``RECOVERY_STALE_SECONDS``: from then
    on the sweep may give the work to another machine), whether the writes failed or hang, and
    ``still_heard`` (when given) says the attempt's other sign of life is gone too, it calls
    ``on_lost`` once.
    """

    def __init__(
        self,
        *,
        operation_id: uuid.UUID,
        attempt: int,
        interval: float | None = None,
        fence_after: float | None = None,
        on_lost: Callable[[], None] | None = None,
        still_heard: Callable[[], bool] | None = None,
    ) -> None:
        self.operation_id = operation_id
        self.attempt = attempt
        self.interval = interval if interval is not None else settings.JOB_HEARTBEAT_SECONDS
        self.fence_after = (
            fence_after if fence_after is not None else settings.RECOVERY_STALE_SECONDS - settings.JOB_HEARTBEAT_SECONDS
        )
        self.on_lost = on_lost
        self.still_heard = still_heard
        self.lost = False
        self._written = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{operation_id}", daemon=True)
        self._fence = threading.Thread(target=self._watch, name=f"fence-{operation_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._written = time.monotonic()
        self._thread.start()
        self._fence.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stopped.set()
        # A beat in flight finishes its one UPDATE first; a daemon thread never holds up the job.
        self._thread.join(timeout=5)
        self._fence.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    if not operation_record_progress(operation_id=self.operation_id, attempt=self.attempt):
                        return
                    self._written = time.monotonic()
                except db.DatabaseError as e:
                    logger.warning("Could not refresh the heartbeat of operation %s: %s", self.operation_id, e)
                    db.connection.close()  # a fresh connection for the next beat
        finally:
            # This thread's own connection: nobody else would ever close it.
            db.connection.close()
            # A beat that gave up (the operation no longer wants this attempt) is no lost link.
            self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(min(self.interval, self.fence_after)):
            silent = time.monotonic() - self._written
            if silent >= self.fence_after and self.still_heard is not None and self.still_heard():
                logger.warning(
                    "Operation %s attempt %s: no heartbeat written for %.0f s, but RQ still hears this machine",
                    self.operation_id,
                    self.attempt,
                    silent,
                )
            elif silent >= self.fence_after:
                logger.error(
                    "Operation %s attempt %s: no heartbeat written for %.0f s, so another worker may take it over; "
                    "abandoning this attempt",
                    self.operation_id,
                    self.attempt,
                    silent,
                )
                self.lost = True
                if self.on_lost is not None:
                    self.on_lost()
                return
