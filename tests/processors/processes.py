"""Looking at real processes through /proc: which FFmpeg encoders a process started, and whether
they are still alive. By pid and ancestry only, never by name: other tests run FFmpeg too."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from apps.processors.ffmpeg import resolve_ffmpeg_binary

T = TypeVar("T")


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
    """The running FFmpeg encoders below ``pid``: processes executing the FFmpeg binary Konvrt
    resolves, with the ``-progress`` argument every ``run_ffmpeg`` passes. Anything else that runs
    the binary (a short ``ffmpeg -version``, a sample being generated) is not one."""
    binary = Path(resolve_ffmpeg_binary()).resolve()
    found = []
    for child in descendants(pid):
        try:
            executable = Path(os.readlink(f"/proc/{child}/exe"))
            arguments = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if executable == binary and b"-progress" in arguments and is_alive(child):
            found.append(child)
    return found


def wait_until(condition: Callable[[], T], *, timeout: float, interval: float = 0.1) -> T:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (a bound, not a speed check).
    Returns what it returned last, so that what was waited for is what the caller goes on with
    (``running = wait_until(lambda: ffmpeg_processes_under(pid), ...)``) rather than a second look
    that may find something else."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if result := condition():
            return result
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
