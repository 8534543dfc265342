"""Strict readers for environment variables.

Every setting that comes from the environment goes through one of these, so a typo such as
``DEBUG=ture`` stops the process at start-up with the variable's name instead of silently
meaning something else.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}
_SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_RATE_PATTERN = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_str(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false, 1/0, yes/no); got {raw!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {raw!r}.") from e
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}.")
    return value


def env_size(name: str, default: int) -> int:
    """A byte count, with an optional unit: ``524288000``, ``500MB``, ``25m``, ``1G``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    match = _SIZE_PATTERN.match(raw)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ImproperlyConfigured(f"{name} must be a size such as 500MB, 25M or 1048576; got {raw!r}.")
    value = int(match.group(1)) * _SIZE_UNITS[unit]
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be greater than zero; got {raw!r}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int_list(name: str, default: list[int], *, minimum: int = 0) -> list[int]:
    """Comma-separated whole numbers, such as ``10,60,300``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    try:
        values = [int(item.strip()) for item in raw.split(",") if item.strip()]
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be whole numbers separated by commas; got {raw!r}.") from e
    if any(value < minimum for value in values):
        raise ImproperlyConfigured(f"{name} must hold numbers of at least {minimum}; got {raw!r}.")
    return values


def env_url(name: str, default: str | None, *, schemes: tuple[str, ...]) -> str | None:
    raw = os.environ.get(name, default)
    if raw is None or raw.strip() == "":
        return default
    parsed = urlparse(raw.strip())
    if parsed.scheme not in schemes:
        allowed = ", ".join(f"{scheme}://" for scheme in schemes)
        raise ImproperlyConfigured(f"{name} must be a URL starting with {allowed}; got {raw!r}.")
    return raw.strip()


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate such as ``60/minute``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if not _RATE_PATTERN.match(value):
        raise ImproperlyConfigured(f"{name} must be a rate such as 60/minute or 10/hour; got {raw!r}.")
    return value


def env_networks(name: str, default: list[str]) -> list[str]:
    """Comma-separated CIDRs (``10.0.0.0/8,fd00::/8``; a bare address is a one-address network)."""
    values = env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as e:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated networks such as 10.0.0.0/8; got {value!r}."
            ) from e
    return values
