"""Redis clients that each process keeps for its lifetime: one factory for queues, throttles and
the health check.

Building a client per call (as ``django_rq.get_queue(name)`` without a connection does) pays a TCP
connect and redis-py's handshake before every first command; a kept client reuses its pool.
redis-py's pool notices a fork and opens fresh connections in the child (RQ's work-horse), so a
client made in a worker's parent is safe to use there.
"""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis.asyncio as aioredis
from redis import Redis

# A Redis that stopped answering (a host gone, packets dropped) fails a connect in seconds instead
# of hanging the caller.
CONNECT_TIMEOUT_SECONDS = 5.0


@functools.lru_cache(maxsize=16)
def redis_client(
    url: str, *, connect_timeout: float | None = CONNECT_TIMEOUT_SECONDS, timeout: float | None = None
) -> Redis:
    """This process's client for ``url`` with these timeouts. ``timeout`` bounds every command;
    leave it unset for clients that block on purpose (workers wait on BLPOP through the queues')."""
    return Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=timeout)


# One asyncio client per event loop and URL: a client's connections belong to the loop that made them.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float | None], aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def async_redis_client(url: str, *, timeout: float | None = None) -> aioredis.Redis:
    """This event loop's client for ``url``; ``timeout`` as for ``redis_client``."""
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get((url, timeout))
    if client is None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=timeout)
        clients[(url, timeout)] = client
    return client


async def close_async_clients() -> None:
    """Closes this event loop's clients (a test's loop ends; a server's lives as long as its process)."""
    for client in _async_clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()
