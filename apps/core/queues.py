"""RQ queues on the process's kept Redis clients (``apps.core.redis``).

``django_rq.get_queue(name)`` without a connection builds a new connection pool from the queue's
URL on every call, so every status poll paid a TCP connect and redis-py's handshake before its
first command (measured: 296 status requests/s before, see docs/performance.md).
"""

from __future__ import annotations

import django_rq
import redis.asyncio as aioredis
from django.conf import settings
from redis import Redis
from rq import Queue

from apps.core.redis import async_redis_client, redis_client


def get_queue(name: str) -> Queue:
    """django-rq's queue ``name`` (its class, timeout and serializer) on this process's client."""
    return django_rq.get_queue(name, connection=get_connection(name))


def get_connection(name: str) -> Redis:
    """This process's client for the Redis that holds queue ``name``."""
    return redis_client(settings.RQ_QUEUES[name]["URL"])


def get_async_connection(name: str) -> aioredis.Redis:
    """This event loop's client for the Redis that holds queue ``name``."""
    return async_redis_client(str(settings.RQ_QUEUES[name]["URL"]))
