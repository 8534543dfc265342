"""The one module that talks to FFmpeg.

The binary is resolved once: ``FFMPEG_BINARY`` if set, else ``ffmpeg`` on PATH, else the build
shipped inside the ``imageio-ffmpeg`` package, so a machine with nothing but Python can process.
FFmpeg always runs from an argument list (never a shell), with a timeout, in a process group of
its own that is stopped as a whole; failures come back as ``FFmpegError`` with a message for the
user, FFmpeg's stderr tail for operators and whether trying again could help.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.processors.exceptions import FFmpegError, FFmpegTimeout, OperationStopped
from apps.processors.probe import local_url, safe_input_options

logger = logging.getLogger(__name__)


@functools.cache
def _resolve(configured: str | None) -> str:
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ImproperlyConfigured(f"FFMPEG_BINARY is set to {configured!r}, which is not an executable.")
        return str(Path(found).resolve())
    on_path = shutil.which("ffmpeg")
    if on_path:
        return str(Path(on_path).resolve())
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise ImproperlyConfigured(
            "No FFmpeg found: set FFMPEG_BINARY, put ffmpeg on PATH, or install imageio-ffmpeg."
        ) from e
    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    logger.info("Using the FFmpeg build bundled with imageio-ffmpeg: %s", bundled)
    return bundled


def resolve_ffmpeg_binary() -> str:
    """The absolute path of the FFmpeg executable to run."""
    return _resolve(settings.FFMPEG_BINARY)


# --- running FFmpeg -------------------------------------------------------------------------------
# How often the supervisor wakes up when FFmpeg prints nothing, so that a cancel or a timeout is
# noticed even while the encoder is stuck on a hard stretch of input.
POLL_SECONDS = 0.5
# SIGTERM lets FFmpeg close its files; whatever is still running after this gets SIGKILL.
STOP_GRACE_SECONDS = 3.0
STDERR_TAIL_LINES = 40
_STDERR_LINE_LIMIT = 500
_EOF = object()

# percent (0-100, or None when FFmpeg reported nothing new) -> False to stop FFmpeg.
ProgressCallback = Callable[[float | None], bool]


class FFmpegStalled(FFmpegError):
    """FFmpeg kept running, but its output stopped advancing for ``STALL_TIMEOUT_SECONDS``; it has
    been stopped. Retryable: a hang says more about the machine at that moment (a stuck disk, a
    starved CPU) than about the file, and RQ's retries bound how often it is tried."""

    default_message = "Processing stalled: the encoder stopped making progress."

    def __init__(self, message: str | None = None, *, stderr_tail: str = "") -> None:
        super().__init__(message, permanent=False, stderr_tail=stderr_tail)


@dataclass(frozen=True)
class FFmpegResult:
    # The whole argv FFmpeg ran with, binary first (with Konvrt's ``-progress pipe:1``).
    command: tuple[str, ...]
    stderr_tail: str
    elapsed_seconds: float


def ffmpeg_command(args: Sequence[str], *, binary: str | None = None) -> list[str]:
    """The command ``run_ffmpeg`` runs for ``args``: no prompts or banner, warnings only, and the
    progress as key=value blocks on stdout instead of the stats line."""
    return [
        binary or resolve_ffmpeg_binary(),
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "warning",
        "-progress",
        "pipe:1",
        "-filter_threads",
        str(settings.FFMPEG_THREADS),
        *args,
    ]


def input_args(path: Path, *, demuxer: str) -> list[str]:
    """Arguments that open one input: its demuxer pinned to the format the file was accepted
    as, no other demuxer allowed on anything inside it, only the ``file`` protocol and the local
    file's absolute path (see ``probe.safe_input_options``), so a crafted file cannot make FFmpeg
    read anything else (playlists, concat lists, another upload, network URLs). Decoding uses at
    most FFMPEG_THREADS threads."""
    options = [[f"-{name}", value] for name, value in safe_input_options(demuxer).items()]
    return [
        "-threads",
        str(settings.FFMPEG_THREADS),
        "-f",
        demuxer,
        *itertools.chain.from_iterable(options),
        "-i",
        local_url(path),
    ]


def output_args(path: Path, *, muxer: str) -> list[str]:
    """Arguments that end every command: the encoder's threads, a size cap (FFmpeg stops writing
    at PROCESSING_MAX_OUTPUT_SIZE; ``verification.verify_output`` then refuses the result) and
    the output file, overwritten if it exists."""
    return [
        "-threads",
        str(settings.FFMPEG_THREADS),
        "-fs",
        str(settings.PROCESSING_MAX_OUTPUT_SIZE),
        "-f",
        muxer,
        "-y",
        str(Path(path).absolute()),
    ]


def run_ffmpeg(
    args: Sequence[str],
    *,
    duration: float | None,
    timeout: float,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float | None = None,
) -> FFmpegResult:
    """Run FFmpeg with ``args`` (inputs, filters, outputs) and supervise it to the end.

    Progress comes from ``-progress pipe:1`` as out_time / ``duration``. ``on_progress`` is
    called at least every ``POLL_SECONDS``; when it returns False FFmpeg is stopped and
    ``OperationStopped`` raised. FFmpeg runs in a process group of its own and is stopped with
    its children (SIGTERM, then SIGKILL after a grace period) however this function is left:
    an error, ``timeout`` (``FFmpegTimeout``), output that stopped advancing for
    ``stall_timeout`` seconds (``FFmpegStalled``; default ``STALL_TIMEOUT_SECONDS``), a cancel, or
    an exception raised into the job (RQ's JobTimeoutException, SystemExit on a cold shutdown).
    """
    stall_timeout = settings.STALL_TIMEOUT_SECONDS if stall_timeout is None else stall_timeout
    command = ffmpeg_command(args)
    logger.debug("Running %s", command)
    started = time.monotonic()
    deadline = started + timeout
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        **process_group_options(memory_limit=settings.FFMPEG_MEMORY_LIMIT_MB * 1024 * 1024),
    )
    # Popen opens both pipes when asked for them with PIPE, as above; typeshed cannot tie the
    # attributes to the arguments.
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    updates: queue.SimpleQueue[dict[str, str] | object] = queue.SimpleQueue()
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    readers = [
        threading.Thread(target=_read_progress, args=(stdout, updates), daemon=True),
        threading.Thread(target=_read_stderr, args=(stderr, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        _supervise(
            process,
            updates,
            duration=duration,
            deadline=deadline,
            timeout=timeout,
            stall_timeout=stall_timeout,
            on_progress=on_progress,
        )
        returncode = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as e:
        raise FFmpegTimeout(stderr_tail="\n".join(stderr_tail)) from e
    except FFmpegStalled as e:
        raise FFmpegStalled(stderr_tail="\n".join(stderr_tail)) from e
    finally:
        if process.poll() is None:
            stop_process(process)
        for reader in readers:
            reader.join(timeout=STOP_GRACE_SECONDS)
        stdout.close()
        stderr.close()
    tail = "\n".join(stderr_tail)
    if returncode != 0:
        message, permanent = _describe_failure(tail)
        logger.warning("FFmpeg exited with %s: %s", returncode, tail[-2000:])
        raise FFmpegError(message, permanent=permanent, stderr_tail=tail, returncode=returncode)
    return FFmpegResult(command=tuple(command), stderr_tail=tail, elapsed_seconds=time.monotonic() - started)


def _supervise(
    process: subprocess.Popen,
    updates: queue.SimpleQueue,
    *,
    duration: float | None,
    deadline: float,
    timeout: float,
    stall_timeout: float,
    on_progress: ProgressCallback | None,
) -> None:
    # The stall watchdog: how far the output got (out_time, bytes written) and when it last moved.
    # FFmpeg blocked on its input or stuck in an encoder reports nothing, or the same position.
    furthest = (-1, -1)
    advanced_at = time.monotonic()
    while True:
        try:
            update = updates.get(timeout=POLL_SECONDS)
        except queue.Empty:
            update = None
        if update is _EOF:
            return
        percent = _percent(update, duration) if update is not None else None
        if on_progress is not None and not on_progress(percent):
            stop_process(process)
            raise OperationStopped("The operation no longer wants this work.")
        now = time.monotonic()
        if now > deadline:
            stop_process(process)
            raise FFmpegTimeout(f"FFmpeg was stopped after the {timeout:.0f} seconds it was given.")
        if update is not None:
            position = _output_position(update)
            if position[0] > furthest[0] or position[1] > furthest[1]:
                furthest = (max(position[0], furthest[0]), max(position[1], furthest[1]))
                advanced_at = now
        if now - advanced_at > stall_timeout and process.poll() is None:
            logger.warning("FFmpeg's output has not advanced for %.0f seconds; stopping it", now - advanced_at)
            stop_process(process)
            raise FFmpegStalled()


def _output_position(update: dict[str, str]) -> tuple[int, int]:
    """(microseconds of output written, bytes of output written), -1 where FFmpeg says N/A."""
    position = []
    for key in ("out_time_us", "total_size"):
        try:
            position.append(int(update.get(key, "")))
        except ValueError:
            position.append(-1)
    return position[0], position[1]


def _percent(update: dict[str, str], duration: float | None) -> float | None:
    if update.get("progress") == "end":
        return 100.0
    if not duration or duration <= 0:
        return None
    # out_time_us is the reliable key (out_time_ms is microseconds too, a historical bug);
    # both are "N/A" until the first frame is written.
    raw = update.get("out_time_us") or update.get("out_time_ms")
    if raw is None:
        return None
    try:
        out_time = int(raw) / 1_000_000
    except ValueError:
        return None
    return max(0.0, min(100.0, out_time / duration * 100))


def _read_progress(stream: IO[str], updates: queue.SimpleQueue) -> None:
    block: dict[str, str] = {}
    try:
        for line in stream:
            key, sep, value = line.strip().partition("=")
            if not sep:
                continue
            block[key] = value
            # Each report ends with progress=continue (or =end on the last one).
            if key == "progress":
                updates.put(block)
                block = {}
    except (OSError, ValueError):
        pass  # the pipe was closed under us while stopping FFmpeg
    finally:
        updates.put(_EOF)


def _read_stderr(stream: IO[str], tail: deque[str]) -> None:
    try:
        for line in stream:
            line = line.rstrip()
            if line:
                tail.append(line[:_STDERR_LINE_LIMIT])
    except (OSError, ValueError):
        pass  # the pipe was closed under us while stopping FFmpeg


# What FFmpeg says, and what a person should read instead. Checked in order; the default is a
# permanent "could not be processed".
_FAILURES: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (
        ("No space left on device",),
        "The server ran out of disk space while processing this file.",
        False,
    ),
    (
        # Older builds (Debian's 5.1) report a decoder's failed frame allocation as get_buffer().
        ("Cannot allocate memory", "get_buffer() failed"),
        "The server ran out of memory while processing this file.",
        True,
    ),
    (
        ("does not contain any stream", "Output file does not contain any stream"),
        "The file has no stream that this operation can work on.",
        True,
    ),
    (
        (
            "Invalid data found when processing input",
            "moov atom not found",
            "could not find codec parameters",
            "Could not find codec parameters",
            "EBML header parsing failed",
        ),
        "The file could not be read. It may be damaged, incomplete or not what its name says.",
        True,
    ),
    (
        ("Decoder (codec", "Unknown decoder", "Decoding error", "Error while decoding"),
        "The file uses a codec or feature that cannot be decoded.",
        True,
    ),
)


def _describe_failure(stderr_tail: str) -> tuple[str, bool]:
    for needles, message, permanent in _FAILURES:
        if any(needle in stderr_tail for needle in needles):
            return message, permanent
    return FFmpegError.default_message, True


# --- stopping FFmpeg with its children ------------------------------------------------------------
if sys.platform.startswith("linux"):
    import resource

    _libc = ctypes.CDLL(None, use_errno=True)
    _PR_SET_PDEATHSIG = 1

    def _die_with_parent(parent_pid: int) -> None:
        # Runs in the child between fork and exec. If the work-horse that started FFmpeg is
        # SIGKILLed (RQ's cold shutdown, the OOM killer) nothing in Python runs to stop FFmpeg,
        # and being in its own process group it would not get the horse's signal: the kernel
        # kills it instead.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    def _prepare_child(parent_pid: int, memory_limit: int) -> None:
        # Also between fork and exec, after subprocess has moved the child into its own process
        # group: the limit binds FFmpeg alone, never the worker. An allocation beyond it fails
        # inside FFmpeg ("Cannot allocate memory"), which reports it and exits: a bomb ends as a
        # failed operation, not as the kernel's OOM killer choosing some process on the machine.
        _die_with_parent(parent_pid)
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))


def process_group_options(*, memory_limit: int = 0) -> dict[str, Any]:
    """Popen options that start a process in a group of its own (and, on Linux, make the kernel
    kill it when the process that started it dies, and cap its address space at
    ``memory_limit`` bytes when given)."""
    if sys.platform == "win32":  # the one non-POSIX platform; spelled so that mypy knows the flag exists
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    options: dict[str, Any] = {"process_group": 0}
    if sys.platform.startswith("linux"):
        options["preexec_fn"] = functools.partial(_prepare_child, os.getpid(), memory_limit)
    return options


def stop_process(process: subprocess.Popen, *, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop a process started in its own group, and everything else in that group: SIGTERM,
    then SIGKILL after ``grace`` seconds. Safe to call on a process that already exited."""
    if os.name != "posix":
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        return
    if process.returncode is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    give_up = time.monotonic() + grace
    # Wait without reaping: while the leader is an unreaped zombie its process group id cannot
    # be reused, so the SIGKILL below can only reach FFmpeg's own leftovers.
    while not _has_exited(process.pid) and time.monotonic() < give_up:
        time.sleep(0.05)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _has_exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the whole group is already gone
