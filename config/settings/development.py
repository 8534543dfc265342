"""Local development: debug on by default, everything else from base."""

from __future__ import annotations

from config.settings.base import *  # noqa: F403
from config.settings.env import env_bool

DEBUG = env_bool("DEBUG", True)
