"""``manage.py rqcron config/cron.py``: django-rq's cron command, with a scheduler that outlives a
Redis outage.

RQ's cron scheduler ends at the first Redis error (its loop catches nothing), so a Redis restart
would silently stop every periodic job, the recovery sweep first, on the very occasion it exists
for; and ``make run`` and ``start_workers.sh run`` stop all their processes when one of them exits.
This command runs the same scheduler and, while Redis does not answer, waits for it and then goes
on with the same jobs and timings. Konvrt's apps come before ``django_rq`` in ``INSTALLED_APPS`` so
that this command takes django-rq's name, and every launcher keeps starting it unchanged.
"""

from __future__ import annotations

import logging
import time
from types import FrameType
from typing import Any

from django_rq.cron import DjangoCronScheduler
from django_rq.management.commands import rqcron
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import StopRequested

RECONNECT_SECONDS = 2


class PersistentCronScheduler(DjangoCronScheduler):
    """RQ's cron scheduler, started again (same jobs, same next run times) after Redis failed it."""

    _stopping = False

    def start(self) -> None:
        while True:
            try:
                super().start()
                return  # asked to stop
            except (RedisConnectionError, RedisTimeoutError) as e:
                if self._stopping:
                    return  # the stop request met the outage on the way out
                self.log.warning(
                    "CronScheduler %s: Redis is unreachable (%s); trying again in %s s", self.name, e, RECONNECT_SECONDS
                )
            try:
                # RQ's signal handlers are still installed: a stop request raises StopRequested.
                time.sleep(RECONNECT_SECONDS)
            except StopRequested:
                return

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        super()._request_stop(signum, frame)


class Command(rqcron.Command):
    help = "Starts RQ's cron scheduler, which keeps going through Redis outages"

    def handle(self, *args: Any, **options: Any) -> None:
        scheduler = PersistentCronScheduler(logging_level=getattr(logging, options["logging_level"]))
        self.stdout.write(f"Loading cron configuration from {options['config_path']}")
        scheduler.load_config_from_file(options["config_path"])
        self.stdout.write(self.style.SUCCESS(f"Starting cron scheduler with {len(scheduler.get_jobs())} jobs..."))
        scheduler.start()
