"""Job functions for the plain-RQ baselines."""

from __future__ import annotations

import time


def started_at() -> float:
    """The moment the job function began running (the queue case's "start")."""
    return time.time()


def post_json(url: str, body: str) -> int:
    """The webhook baseline: one POST of ``body`` with a plain HTTP client, no signing, no outbox."""
    import urllib3

    return urllib3.request(
        "POST", url, body=body.encode(), headers={"Content-Type": "application/json"}, timeout=10, retries=False
    ).status
