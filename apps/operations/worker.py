"""The RQ worker Konvrt runs, and what the worker scripts' ``status`` prints.

Importing this module also imports Pillow, PyAV and every processor, so that a worker started with
``KonvrtWorker`` pays for those imports once in its parent process instead of in every job. The
FFmpeg binary is resolved there once too (see ``KonvrtWorker``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import django_rq
from django import db
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rq import Queue, Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.utils import now as rq_now

from apps.operations.jobs import on_work_horse_killed
from apps.operations.services.progress import enable_self_fencing

# Preloaded in the worker parent (see the module docstring); the jobs module comes with the line above.
from apps.processors import audio, image, video  # noqa: F401
from apps.processors.ffmpeg import resolve_ffmpeg_binary

logger = logging.getLogger(__name__)


class KonvrtWorker(Worker):
    """RQ's forking worker, fitted to Konvrt.

    - Its ``worker_ttl`` comes from ``WORKER_CONFIG`` for the queues it serves when not given
      (``rqworker-pool`` has no ``--worker-ttl`` option).
    - Database connections the parent opened (failure callbacks, registry cleanup) are closed
      before each fork, so a horse never shares a socket with its parent.
    - A work-horse killed without reporting goes through ``on_work_horse_killed``.
    - While a job runs, the parent refreshes its RQ execution every ``JOB_HEARTBEAT_SECONDS``
      (RQ's job monitoring interval, 30 s by default), the second sign of life the recovery sweep
      reads.
    - A work-horse whose heartbeat could not be written for longer than the recovery sweep waits
      kills itself, FFmpeg with it: a cut-off machine stops encoding before the work is given to
      another (``progress.Heartbeat``).
    - The FFmpeg binary is resolved when the worker starts, before any fork: the resolution is
      cached, so every work-horse inherits the answer instead of resolving it again (which, for the
      build bundled with imageio-ffmpeg, runs ``ffmpeg -version`` in each new horse).
    """

    def __init__(
        self,
        queues: str | Queue | Sequence[str] | Sequence[Queue],
        *,
        worker_ttl: int | None = None,
        work_horse_killed_handler: Any = None,
        **kwargs: Any,
    ) -> None:
        # Keyword-only past the queues (as RQ's CLI, WorkerPool and django-rq all call it), so a
        # positional argument can never land on worker_ttl or the handler as well.
        kwargs.setdefault("job_monitoring_interval", settings.JOB_HEARTBEAT_SECONDS)
        super().__init__(
            queues,
            worker_ttl=worker_ttl or worker_ttl_for(queues),
            work_horse_killed_handler=work_horse_killed_handler or on_work_horse_killed,
            **kwargs,
        )
        try:
            logger.info("FFmpeg: %s", resolve_ffmpeg_binary())
        except ImproperlyConfigured as e:
            # Image jobs need no FFmpeg; a job that does fails with this same error when it runs.
            logger.warning("No usable FFmpeg for this worker: %s", e)

    def setup_work_horse_signals(self) -> None:
        """RQ calls this in each new work-horse, and only there: a horse may kill itself to abandon
        an attempt it lost (``progress.Heartbeat``); the worker, or a test running jobs in its own
        process, may not."""
        super().setup_work_horse_signals()
        enable_self_fencing()

    def execute_job(self, job: Job, queue: Queue) -> None:
        db.connections.close_all()
        super().execute_job(job, queue)


def worker_ttl_for(queues: str | Queue | Sequence[str] | Sequence[Queue]) -> int:
    """The largest ``worker_ttl`` that ``WORKER_CONFIG`` gives the queues served."""
    items: list[str | Queue] = [queues] if isinstance(queues, str | Queue) else list(queues)
    names = {item if isinstance(item, str) else item.name for item in items}
    ttls = [worker["worker_ttl"] for worker in settings.WORKER_CONFIG.values() if worker["queue"] in names]
    return max(ttls, default=DEFAULT_WORKER_TTL)


def fleet_status() -> str:
    """What the worker scripts' ``status`` prints from RQ's registries: per queue its backlog and
    every worker registered on it (on any machine), its state and the job it is running."""
    lines = []
    for worker_config in settings.WORKER_CONFIG.values():
        queue = django_rq.get_queue(worker_config["queue"])
        workers = Worker.all(queue=queue)
        lines.append(
            f"{queue.name}: {queue.count} waiting, {queue.scheduled_job_registry.count} scheduled for retry, "
            f"{len(workers)} worker{'s' if len(workers) != 1 else ''} (configured here: {worker_config['count']})"
        )
        for worker in sorted(workers, key=lambda w: w.name):
            job = worker.get_current_job()
            doing = worker.get_state()
            if job is not None:
                seconds = (rq_now() - job.started_at).total_seconds() if job.started_at else 0
                doing += f", running {job.description or job.id} for {seconds:.0f} s"
            lines.append(f"  {worker.name} (pid {worker.pid} on {worker.hostname}): {doing}")
    return "\n".join(lines)
