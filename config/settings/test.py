"""The test suite: development settings with faster hashing and no debug pages."""

from __future__ import annotations

from config.settings.base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
