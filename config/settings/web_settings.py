"""The web tier's sizing: read from the environment alone, so that config/gunicorn.py (which runs
before Django is set up) and base.py (the database pool) agree on the same numbers."""

from __future__ import annotations

from config.settings.env import env_int

# gunicorn worker processes; each runs its own event loop (uvicorn) and its own database pool.
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 2, minimum=1)
# Requests one worker process runs Django's synchronous code for at once: the size of its
# database connection pool (under ASGI each request's synchronous part runs in a thread of its own
# and waits for a pooled connection; slow clients, waiting for headers or a body, hold none).
WEB_THREADS = env_int("WEB_THREADS", 8, minimum=1)
# Seconds a worker may stay unresponsive before gunicorn restarts it, and the grace period of a
# restart; also how long a request waits for a database connection before it is a 503.
WEB_TIMEOUT = env_int("WEB_TIMEOUT", 30, minimum=1)
# Database connections each worker process keeps for the status poll, which it serves in its event
# loop (apps/api/status_poll.py) beside the pool above: one answers a poll in well under a
# millisecond, so two keep up with thousands a second. 0 serves polls like every other request.
WEB_STATUS_DB_CONNECTIONS = env_int("WEB_STATUS_DB_CONNECTIONS", 2, minimum=0)
