"""RQ queues on Redis connections that each process keeps for its lifetime.

``django_rq.get_queue(name)`` without a connection builds a new connection pool from the queue's
URL on every call, so every status poll paid a TCP connect and redis-py's handshake before its
first command (measured: 296 status requests/s before, see the README's Performance section).
Here each process keeps one client per URL; redis-py's pool notices a fork and opens fresh
connections in the child (RQ's work-horse), so a client made in a worker's parent is safe to use.
"""

from __future__ import annotations

import functools

import django_rq
from django.conf import settings
from redis import Redis
from rq import Queue


def get_queue(name: str) -> Queue:
    """django-rq's queue ``name`` (its class, timeout and serializer) on this process's client."""
    return django_rq.get_queue(name, connection=get_connection(name))


def get_connection(name: str) -> Redis:
    """This process's client for the Redis that holds queue ``name``."""
    return _client(settings.RQ_QUEUES[name]["URL"])


@functools.lru_cache(maxsize=32)
def _client(url: str) -> Redis:
    # A Redis that stopped answering (a host gone, packets dropped) fails a connect in seconds
    # instead of hanging the request; no read timeout, since workers block on BLPOP through it.
    return Redis.from_url(url, socket_connect_timeout=5)
