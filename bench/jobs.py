"""Job functions for the plain-RQ baselines."""

from __future__ import annotations

import time


def started_at() -> float:
    """The moment the job function began running (the queue case's "start")."""
    return time.time()
