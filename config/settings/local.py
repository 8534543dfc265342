"""``make run``: production's settings on one machine, served over plain HTTP on this machine.

DEBUG stays off and everything else is production's (scripts/run_local.py keeps a random
SECRET_KEY under the storage root); only what needs the HTTPS a PaaS router provides is relaxed:
no redirect to https, and cookies that a browser sends back over http://127.0.0.1.
"""

from __future__ import annotations

from config.settings.env import env_bool
from config.settings.production import *  # noqa: F403

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
