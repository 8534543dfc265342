"""Redis Queue configuration: the queues, their timeouts and how many workers serve each."""

from __future__ import annotations

from typing import TypedDict

from config.settings.env import env_url


class WorkerGroup(TypedDict):
    queue: str  # the RQ queue its operations go to
    timeout: int  # a job's time limit, in seconds
    count: int  # workers the scripts start on each machine
    worker_ttl: int  # seconds a worker's registration lives without a heartbeat


# Parsed here once; base.py reads it from this module for the cache.
REDIS_URL = env_url("REDIS_URL", "redis://localhost:6379/0", schemes=("redis", "rediss", "unix"))

WORKER_CONFIG: dict[str, WorkerGroup] = {
    "video": {
        "queue": "video_queue",
        "timeout": 1800,  # 30 minutes
        "count": 1,
        "worker_ttl": 600,
    },
    "image": {
        "queue": "image_queue",
        "timeout": 60,  # 1 minute
        "count": 2,
        "worker_ttl": 180,
    },
    "audio": {
        "queue": "audio_queue",
        "timeout": 300,  # 5 minutes
        "count": 1,
        "worker_ttl": 360,
    },
    # Webhook deliveries, apart from the media queues so that a slow receiver never holds up
    # media work; two at once, so that a slow receiver leaves a worker for the others. A delivery's
    # own limit is WEBHOOK_TIMEOUT (the job's, set when it is queued, a little more).
    "webhook": {
        "queue": "webhook_queue",
        "timeout": 60,
        "count": 2,
        "worker_ttl": 120,
    },
}

# django-rq reads this: every queue on REDIS_URL, each with its job timeout.
RQ_QUEUES = {
    worker["queue"]: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": worker["timeout"]} for worker in WORKER_CONFIG.values()
}
