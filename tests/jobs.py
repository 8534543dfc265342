"""Tiny job functions for testing the worker fixture itself."""

from __future__ import annotations

from pathlib import Path


def write_marker(path: str, text: str) -> str:
    Path(path).write_text(text)
    return text
