"""Periodic jobs, run by RQ's cron scheduler (``python manage.py rqcron config/cron.py``).

The scheduler only enqueues; the jobs run on the ordinary workers. Every job registered here
must be idempotent and safe when two schedulers (two machines) enqueue it at once.
"""

from __future__ import annotations

from rq import cron  # noqa: F401  (jobs register themselves below with cron.register)
