"""Periodic jobs, run by RQ's cron scheduler (``python manage.py rqcron config/cron.py``).

The scheduler only enqueues; the jobs run on the ordinary workers. Every job registered here
must be idempotent and safe when two schedulers (two machines) enqueue it at once.
"""

from __future__ import annotations

from rq import cron

from apps.operations.services.cleanup import cleanup_run

HOUR = 60 * 60

# Retention (apps/operations/services/cleanup.py), hourly: files expire after days, so an hour's
# lateness is nothing, and abandoned temp files do not pile up for long.
# - image_queue: two workers whose jobs last a minute at most, so the pass starts promptly and
#   never waits behind a 30-minute video, and the single video and audio workers are never taken.
# - job_timeout 15 minutes: a pass handles at most cleanup.DEFAULT_LIMIT (500) operations, two
#   deletes each, well within it even against a slow Cloudinary; whatever is left waits an hour.
# - ttl one hour: a pass that no worker picked up before the next one is due is dropped, not
#   stacked. Reports stay a day in RQ's results for operators.
cron.register(
    cleanup_run,
    "image_queue",
    interval=HOUR,
    job_timeout=15 * 60,
    ttl=HOUR,
    result_ttl=24 * HOUR,
    name="konvrt-cleanup",
)
