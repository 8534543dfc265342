"""One clock for every host: the database's.

Heartbeats are stamped and judged on the database server's clock (``Now()`` in the UPDATE, and
``database_now()`` for the sweeps that compare against them), never on the clock of whichever
host writes or reads: with machines whose clocks disagree by a minute, a healthy job stamped by one
host would otherwise look stale to the sweep of another.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection


def database_now() -> datetime:
    """The database's current time, read the way Django's ``Now()`` writes it: PostgreSQL's
    ``statement_timestamp()``; SQLite's own clock (``'now'``, UTC), which is the machine's but not
    whatever this process's ``timezone.now`` has been told."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT statement_timestamp()")
        else:
            cursor.execute("SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'now')")
        row = cursor.fetchone()
    value = row[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value
