"""Looking at real processes through /proc: which FFmpeg processes a process started, and whether
they are still alive. By pid and ancestry only, never by name: other tests run FFmpeg too."""

from __future__ import annotations

import os
import time
from pathlib import Path

from apps.processors.ffmpeg import resolve_ffmpeg_binary


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: parse after its closing one.
    return int(stat.rpartition(")")[2].split()[1])


def is_alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has already stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    return parents


def children_of(pid: int) -> list[int]:
    return [child for child, parent in _parents().items() if parent == pid and is_alive(child)]


def descendants(pid: int) -> list[int]:
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def ffmpeg_processes_under(pid: int) -> list[int]:
    binary = resolve_ffmpeg_binary()
    found = []
    for child in descendants(pid):
        try:
            argv0 = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if argv0 == binary and is_alive(child):
            found.append(child)
    return found


def wait_until(condition, *, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (a bound, not a speed check)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def worker_environment(storage_root: Path) -> dict[str, str]:
    """The environment for a worker process of our own that must see this test's database (a
    transactional test's, so that rows are committed), its storage and its Redis database."""
    import pytest
    from django.db import connection

    if connection.vendor != "postgresql":
        # SQLite's test database lives in this process's memory: no other process can see it.
        pytest.skip("Worker processes share the test database only on PostgreSQL: set DATABASE_URL.")
    database = connection.settings_dict
    credentials = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{credentials}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "STORAGE_ROOT": str(storage_root),
        "TEMP_ROOT": str(storage_root / "temp"),
    }
