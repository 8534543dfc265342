"""The sweeper: one small process on every worker machine (``manage.py konvrt_sweeper``, started by
``scripts/start_workers.sh`` as the group ``sweeper``) that keeps the fleet's bounds when a machine
is lost or cut off.

- **Recovery** (``recovery.recovery_run``) every ``RECOVERY_INTERVAL_SECONDS``, run here rather
  than only as an RQ job: a machine cut off from the network leaves its idle workers blocked in
  BLMOVE on connections Redis still believes alive, and Redis hands each of them the next job of
  its queue, a sweep included, which then never runs. A sweep run by a process on each live
  machine cannot be swallowed, and runs on time whether or not a worker is free. Passes on several
  machines at once are safe: every change is a compare-and-set (see ``recovery``).
- **RQ's scheduler** (retry delays): RQ's workers take a free scheduler lock only at their
  maintenance, every ten minutes, so a lost machine's locks (they expire 61 s after its last
  heartbeat) stayed free that long and a retry promised in a minute ran ten minutes late. Every
  ``SCHEDULER_CHECK_SECONDS`` this process asks RQ's own scheduler (``RQScheduler.acquire_locks``)
  to take whatever lock is free and, when it got one, to start scheduling: a lock is retaken at
  most 61 + 5 s after its holder stopped, within the recovery bound.
- **This machine's temp files** at start and every hour (``cleanup.cleanup_local``): job
  workspaces of workers killed here and upload temp files left here; the hourly ``cleanup_run``
  reaches only the machine that happens to run it.

A hand-written loop, not RQ cron: RQ cron only enqueues, which is exactly what a partitioned
machine's workers swallow. Every step is guarded: a database or Redis that does not answer is
logged and tried again at the next tick.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from django import db
from django.conf import settings
from redis import Redis
from rq.scheduler import RQScheduler

from apps.core import queues
from apps.operations.services.cleanup import cleanup_local
from apps.operations.services.recovery import recovery_run

logger = logging.getLogger(__name__)

SCHEDULER_CHECK_SECONDS = 5.0
LOCAL_CLEANUP_SECONDS = 3600.0


class SchedulerKeeper:
    """Takes over RQ's scheduler locks that nobody holds, through RQ's public scheduler API."""

    def __init__(self, *, connection: Redis, queue_names: list[str]) -> None:
        self.connection = connection
        self.queue_names = queue_names
        self.scheduler: RQScheduler | None = None
        self.process: BaseProcess | None = None

    def free_locks(self) -> list[str]:
        return [name for name in self.queue_names if not self.connection.exists(RQScheduler.get_locking_key(name))]

    def running(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def tick(self) -> list[str]:
        """Take the free locks and schedule for them; returns the queues taken over now."""
        free = self.free_locks()
        if not free:
            return []
        if self.running():
            # Ours schedules some queues; another machine's scheduler died holding the rest. A new
            # scheduler takes every free lock at once (RQ's scheduler fixes its queues at start).
            self.stop()
        self.scheduler = RQScheduler(self.queue_names, connection=self.connection)
        taken = sorted(self.scheduler.acquire_locks() & set(free))
        if self.scheduler.acquired_locks:
            # RQ's scheduler process: it heartbeats its locks and enqueues jobs as they fall due.
            self.process = self.scheduler.start()
        if taken:
            logger.warning("Took over RQ's scheduler for %s: no scheduler held it", ", ".join(taken))
        return taken

    def stop(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        process, self.process = self.process, None
        if scheduler is None:
            return
        if process is not None and process.is_alive():
            # RQ's scheduler stops on SIGTERM after its current pass and releases its locks.
            process.terminate()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        scheduler.release_locks()


class Sweeper:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._stopped = threading.Event()
        names = [worker["queue"] for worker in settings.WORKER_CONFIG.values()]
        self.keeper = SchedulerKeeper(connection=queues.get_connection(names[0]), queue_names=names)
        self._next_recovery = 0.0
        self._next_scheduler_check = 0.0
        self._next_local_cleanup = 0.0

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stopped.set()

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        logger.info("Sweeper started: recovery every %s s", settings.RECOVERY_INTERVAL_SECONDS)
        try:
            while not self._stopped.is_set():
                self.tick()
                self._stopped.wait(1.0)
        finally:
            self.keeper.stop()
            logger.info("Sweeper stopped")

    def tick(self) -> None:
        """Whatever is due now."""
        now = self.clock()
        if now >= self._next_scheduler_check:
            self._next_scheduler_check = now + SCHEDULER_CHECK_SECONDS
            self._guarded("scheduler check", self.keeper.tick)
        if now >= self._next_recovery:
            self._next_recovery = now + settings.RECOVERY_INTERVAL_SECONDS
            self._guarded("recovery", recovery_run)
        if now >= self._next_local_cleanup:
            self._next_local_cleanup = now + LOCAL_CLEANUP_SECONDS
            self._guarded("local cleanup", cleanup_local)

    @staticmethod
    def _guarded(name: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - a sweep that fails now is tried again at its next tick
            logger.warning("Sweeper: %s failed: %r", name, e)
            db.close_old_connections()
            db.connection.close()
