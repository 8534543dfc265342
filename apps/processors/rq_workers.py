"""The job path of Konvrt 1.0, kept so that jobs queued before the upgrade still run.

RQ stores a job's function and callbacks by dotted path: a job that 1.0 queued names
``apps.processors.rq_workers.process_operation`` and ``...on_job_failure``. They now live in
``apps.operations.jobs`` (the worker class in ``apps.operations.worker``); new jobs name those.
Remove this module in 1.2, by which time every 1.0 job has run or failed: a
queued job runs within its queue's backlog, a retry within RQ's 60 s + 300 s intervals, and the
recovery sweep re-queues anything older under the new path.

This is the one import from ``apps.processors`` up into ``apps.operations``, allowed by name in the
layer contract (``pyproject.toml``, ``[tool.importlinter]``).
"""

from __future__ import annotations

from apps.operations.jobs import on_job_failure, on_work_horse_killed, process_operation
from apps.operations.worker import KonvrtWorker

__all__ = ["KonvrtWorker", "on_job_failure", "on_work_horse_killed", "process_operation"]
