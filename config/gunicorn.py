"""gunicorn's configuration for the web tier (the Procfile's web command and ``make run``).

ASGI under uvicorn workers: a slow client (headers one line at a time, a body trickling in) and a
live-progress stream cost a coroutine, not a worker. Django runs each request's synchronous part in
a thread of its own, with a database connection borrowed from the worker's pool (config/asgi.py
turns the pool on). Sizes come from WEB_CONCURRENCY, WEB_THREADS and WEB_TIMEOUT
(config/settings/web_settings.py; docs/deployment.md explains the model).
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings.web_settings import WEB_CONCURRENCY, WEB_THREADS, WEB_TIMEOUT  # noqa: E402

wsgi_app = "config.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]  # noqa: S104
workers = WEB_CONCURRENCY
# Read by config/settings/web_settings.py in each worker (the pool size); gunicorn's own `threads`
# only applies to its threaded workers.
threads = WEB_THREADS
timeout = WEB_TIMEOUT
graceful_timeout = WEB_TIMEOUT
# Idle keep-alive connections are closed after this many seconds (a proxy in front reuses them).
keepalive = 5
# The proxy in front (NUM_PROXIES, read by the API) decides who the client is; uvicorn must not
# rewrite the socket address from X-Forwarded-For on its own.
forwarded_allow_ips = ""
accesslog = "-"
errorlog = "-"


def post_worker_init(worker: object) -> None:
    """Each web worker, as it starts (Django is set up by then): remove the upload temp files that
    killed requests left on this machine. A web-only machine runs no sweeper, and a worker killed
    mid-request (a restart, the OOM killer, gunicorn's own timeout) is replaced through here."""
    from apps.operations.services.cleanup import cleanup_upload_temp_at_start

    try:
        cleanup_upload_temp_at_start()
    except OSError as e:  # never a reason not to serve
        print(f"Upload temp cleanup failed: {e!r}", file=sys.stderr)
    # What is loaded by now (Django, the apps, the URL patterns: about 125,000 objects) lives as long
    # as the process: kept out of the garbage collector's scans, whose oldest generation otherwise
    # walked it all every few thousand requests, stalling every request in flight for up to 100 ms
    # (measured on the status poll; 6 ms frozen).
    gc.freeze()


# gunicorn 27's control socket lives at one fixed path per user: several servers on one machine
# (tests, a second checkout) would take it from each other. Nothing of Konvrt uses it.
control_socket_disable = True
