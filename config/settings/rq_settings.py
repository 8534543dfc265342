"""Redis Queue configuration: the queues, their timeouts and how many workers serve each."""

from __future__ import annotations

from typing import TypedDict

from config.settings.env import env_url


class WorkerGroup(TypedDict):
    queue: str  # the RQ queue its operations go to
    timeout: int  # a job's time limit, in seconds
    count: int  # workers the scripts start on each machine
    worker_ttl: int  # RQ's worker_ttl: see WORKER_TTL


# Parsed here once; base.py reads it from this module for the cache.
REDIS_URL = env_url("REDIS_URL", "redis://localhost:6379/0", schemes=("redis", "rediss", "unix"))

# RQ's worker_ttl, short for every group. It bounds how long a lost machine's workers still count
# as listening (``/queues/``, a status's ``waiting_reason``): RQ lets a worker's registration expire
# worker_ttl + 60 s after its last heartbeat, and an idle worker beats every worker_ttl - 15 s (its
# BLMOVE's timeout, a busy one every JOB_HEARTBEAT_SECONDS), so a killed or cut-off machine's
# workers stop counting at most 90 s after it went. RQ's default, 420 s, kept them 8 minutes. The
# same timeout ends, on the Redis side, the BLMOVE of a cut-off machine's idle worker: it can take
# (and lose to the dead link) a job for at most 15 s after the cut. The price: one BLMOVE per idle
# worker every 15 s. A running job does not depend on it (RQ extends the worker's registration for
# the job's duration).
WORKER_TTL = 30

WORKER_CONFIG: dict[str, WorkerGroup] = {
    "video": {
        "queue": "video_queue",
        "timeout": 1800,  # 30 minutes
        "count": 1,
        "worker_ttl": WORKER_TTL,
    },
    "image": {
        "queue": "image_queue",
        "timeout": 60,  # 1 minute
        "count": 2,
        "worker_ttl": WORKER_TTL,
    },
    "audio": {
        "queue": "audio_queue",
        "timeout": 300,  # 5 minutes
        "count": 1,
        "worker_ttl": WORKER_TTL,
    },
    # Webhook deliveries, apart from the media queues so that a slow receiver never holds up
    # media work; two at once, so that a slow receiver leaves a worker for the others. A delivery's
    # own limit is WEBHOOK_TIMEOUT (the job's, set when it is queued, a little more).
    "webhook": {
        "queue": "webhook_queue",
        "timeout": 60,
        "count": 2,
        "worker_ttl": WORKER_TTL,
    },
}

# django-rq reads this: every queue on REDIS_URL, each with its job timeout.
RQ_QUEUES = {
    worker["queue"]: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": worker["timeout"]} for worker in WORKER_CONFIG.values()
}
