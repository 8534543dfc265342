"""One clock for every host: the database's.

Heartbeats are stamped and judged on the database server's clock (``Now()`` in the UPDATE, and
``database_now()`` for the sweeps that compare against them), never on the clock of whichever
host writes or reads: with machines whose clocks disagree by a minute, a healthy job stamped by one
host would otherwise look stale to the sweep of another.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone


def database_now() -> datetime:
    """The database server's current time. PostgreSQL's ``statement_timestamp()`` (what Django's
    ``Now()`` writes there); SQLite is one machine's file, so that machine's clock is the one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            row = cursor.fetchone()
        value = row[0]
        assert isinstance(value, datetime)
        return value
    return timezone.now()
