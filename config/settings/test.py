"""The test suite: development settings with faster hashing and no debug pages."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from config.settings.base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A test database in a file, as the embedded setup's is, rather than in memory: the live
    # server's threads then each open their own connection (WAL, IMMEDIATE transactions) instead of
    # sharing one, whose transactions and savepoints concurrent requests from a browser interleave.
    DATABASES["default"] = {  # noqa: F405
        **DATABASES["default"],  # noqa: F405
        "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"konvrt-test-{os.getpid()}.sqlite3")},
    }
