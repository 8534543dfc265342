"""Reads from the event loop, for the one request that is served there (the status poll,
``apps.api.status_poll``): psycopg's asynchronous connection pool, one per event loop.

Django's ORM has no asynchronous database layer yet: its ``a``-methods run the synchronous query
in a thread, which is what serving the poll in the loop avoids. The connections are made with
Django's own parameters for the database (``get_connection_params``: the same server, options,
time-zone adapters and prepared-statement policy), so a row reads here as the ORM would read it,
and the SQL is the ORM's (the caller compiles it). PostgreSQL only, and not on Windows: SQLite has no
asynchronous driver here, and the embedded setup serves the poll the usual way.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from django.db.backends.postgresql.base import ServerBindingCursor
from psycopg_pool import AsyncConnectionPool

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncConnectionPool]] = (
    weakref.WeakKeyDictionary()
)
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def async_reads_available(using: str) -> bool:
    # psycopg's asynchronous connections cannot run on the event loop Windows uses by default
    # (uvicorn's there: the proactor), so a Windows server reads the usual way.
    return connections[using].vendor == "postgresql" and sys.platform != "win32"


async def fetch_one(using: str, sql: str, params: Sequence[Any]) -> tuple[list[str], tuple[Any, ...]] | None:
    """The first row of ``sql`` and its column names, or ``None`` when there is none.

    A pooled connection that the server closed (a restart, a failover, an idle timeout) fails its
    next query and leaves the pool; the read is then made once more on another. Django's pool
    checks every connection as it lends it instead, a round trip more on every read."""
    pool = await _pool(using)
    for attempt in (1, 2):
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            async with pool.connection() as connection:
                cursor = await connection.execute(sql, params)
                row = await cursor.fetchone()
                if row is None:
                    return None
                return [column.name for column in cursor.description or ()], tuple(row)
        except psycopg.OperationalError:
            if attempt == 2 or connection is None or not connection.closed:
                raise
    raise AssertionError("unreachable")


async def close_pools() -> None:
    """Closes this event loop's pools (a test's loop ends; a server's lives as long as its process)."""
    for pool in _pools.pop(asyncio.get_running_loop(), {}).values():
        await pool.close()


async def _pool(using: str) -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    if using in pools:
        return pools[using]
    async with _opening.setdefault(loop, asyncio.Lock()):
        if using not in pools:
            parameters = connections[using].get_connection_params()
            # The asynchronous twin of the cursor class Django picks: it binds parameters on the
            # client unless the database's OPTIONS ask for server-side binding.
            server_side = parameters.pop("cursor_factory", None) is ServerBindingCursor
            parameters["cursor_factory"] = psycopg.AsyncCursor if server_side else psycopg.AsyncClientCursor
            # As Django's connections are: a read is its own transaction, with nothing to commit.
            parameters["autocommit"] = True
            pool = AsyncConnectionPool(
                kwargs=parameters,
                min_size=1,
                max_size=settings.WEB_STATUS_DB_CONNECTIONS,
                timeout=settings.WEB_TIMEOUT,
                max_idle=300,
                open=False,
            )
            await pool.open()
            pools[using] = pool
    return pools[using]
