"""Detectors for hostile-input tests: a file that notices being opened, and a port that notices
being contacted. Also the API and processing fixtures the hostile tests share."""

from __future__ import annotations

import ctypes
import os
import secrets
import selectors
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from apps.operations.models import File, Operation
from tests.processors.conftest import output_path, run_operation, submit  # noqa: F401 - shared fixtures


class Tripwire:
    """A secret file (random content, ``marker``) that knows whether anything opened it.

    The kernel reports every open of the file through inotify, synchronously with the open call,
    so the answer is exact once the code under test has returned: no timing, no polling. The
    tests themselves never read it (``everything_kept`` skips it), so a single open is a leak.
    """

    planted: ClassVar[set[Path]] = set()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marker = secrets.token_hex(24).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.marker * 64)
        self._watch = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._watch < 0 or _libc.inotify_add_watch(self._watch, os.fsencode(path), _IN_OPEN | _IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), f"cannot watch {path}")
        self._opened = False
        Tripwire.planted.add(path)

    @property
    def opened(self) -> bool:
        if not self._opened:
            try:
                self._opened = bool(os.read(self._watch, 65536))
            except BlockingIOError:
                pass  # no event queued: nobody opened it
        return self._opened

    def close(self) -> None:
        os.close(self._watch)
        Tripwire.planted.discard(self.path)


_libc = ctypes.CDLL(None, use_errno=True)
_IN_ACCESS = 0x001
_IN_OPEN = 0x020


class Listener:
    """A TCP and a UDP socket on one local port, recording every connection and datagram."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.contacts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/segment.ts"

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.tcp, selectors.EVENT_READ)
            selector.register(self.udp, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    if key.fileobj is self.tcp:
                        connection, peer = self.tcp.accept()
                        self.contacts.append(f"tcp from {peer}")
                        connection.close()
                    else:
                        _, peer = self.udp.recvfrom(65536)
                        self.contacts.append(f"udp from {peer}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.tcp.close()
        self.udp.close()


@pytest.fixture(autouse=True)
def _clean_redis(redis_connection) -> None:
    """Hostile input arrives through the API (rate limits in Redis) and runs on real workers."""


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def plant_tripwire() -> Iterator:
    """``plant_tripwire(path)``: a Tripwire at ``path``; all of them are removed after the test."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the tripwire watches files with Linux's inotify")
    planted: list[Tripwire] = []

    def plant(path: Path) -> Tripwire:
        tripwire = Tripwire(path)
        planted.append(tripwire)
        return tripwire

    yield plant
    for tripwire in planted:
        tripwire.close()


def everything_kept(storage_root: Path) -> bytes:
    """Every byte Konvrt kept: stored files, and every operation's and file's row as text
    (metadata, messages, names). A secret that leaked into a result would be somewhere in here."""
    files = [path for path in storage_root.rglob("*") if path.is_file() and path not in Tripwire.planted]
    blobs = [path.read_bytes() for path in files]
    rows = [repr(row).encode() for row in Operation.objects.values()]
    rows += [repr(row).encode() for row in File.objects.values()]
    return b"\n".join(blobs + rows)
