"""Periodic jobs, run by RQ's cron scheduler (``python manage.py rqcron config/cron.py``).

The scheduler only enqueues; the jobs run on the ordinary workers. Every job registered here
must be idempotent and safe when two schedulers (two machines) enqueue it at once.
"""

from __future__ import annotations

from django.conf import settings
from rq import cron

from apps.operations.services.cleanup import cleanup_run
from apps.operations.services.recovery import recovery_run
from apps.operations.services.webhooks import webhook_sweep_run

MINUTE = 60
HOUR = 60 * MINUTE

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

# Recovery (apps/operations/services/recovery.py), every RECOVERY_INTERVAL_SECONDS (30): pending
# operations queued, vanished jobs queued again, interrupted work retried or failed.
# - image_queue, for the same reasons as the cleanup: short jobs, two workers. A pass takes well
#   under a second; it waits behind the image jobs queued before it.
# - ttl 10 minutes: passes that no worker could take (every image worker busy or down) do not pile
#   up beyond twenty; the first one to run does what all of them would have.
# - result_ttl 10 minutes: a pass every 30 s would otherwise keep thousands of results a day.
cron.register(
    recovery_run,
    "image_queue",
    interval=settings.RECOVERY_INTERVAL_SECONDS,
    job_timeout=5 * MINUTE,
    ttl=10 * MINUTE,
    result_ttl=10 * MINUTE,
    failure_ttl=24 * HOUR,
    name="konvrt-recovery",
)

# Webhook deliveries (apps/operations/services/webhooks.py), every RECOVERY_INTERVAL_SECONDS: an
# overdue attempt whose job RQ lost (a worker killed mid-POST, Redis restarted) is queued again.
# - webhook_queue: the sweep needs a webhook worker to be of any use, and takes none from media work.
# - ttl and result_ttl as the recovery's, for the same reasons.
cron.register(
    webhook_sweep_run,
    "webhook_queue",
    interval=settings.RECOVERY_INTERVAL_SECONDS,
    job_timeout=5 * MINUTE,
    ttl=10 * MINUTE,
    result_ttl=10 * MINUTE,
    failure_ttl=24 * HOUR,
    name="konvrt-webhook-sweep",
)
