"""Settings for the processes the bench starts: production's, plus the bench's bare views.

The harness sets what production insists on (a SECRET_KEY) and what a load test needs (raised
THROTTLE_* rates, no HTTPS redirect on loopback) in the environment of every process it starts.
"""

from __future__ import annotations

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
