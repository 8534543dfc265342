"""What the bench runs inside Konvrt's own processes (a warm process, see ``bench.warm``).

Konvrt's side of a processing case is the registry's processor with a real ``ProcessingContext``
(an operation row claimed through ``lifecycle``, a real progress tracker writing to the database),
timed from inside. The FFmpeg command it runs is captured from the runner's debug log record, so
that the baseline is exactly that command.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.core.utils import file_extension
from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle
from apps.operations.services.progress import ProgressTracker
from apps.processors import ffmpeg
from apps.processors.contract import ProcessingContext
from apps.processors.formats import mime_type_for_extension
from apps.processors.inspection import input_decoder, inspect_input
from apps.processors.parameters import validate_parameters
from apps.processors.registry import get_operation
from apps.storage.backend import get_storage

BENCH_SESSION = "bench" + "0" * 27


class _CommandCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.commands: list[list[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Running %s" and record.args:
            self.commands.append(list(record.args[0]))


@contextmanager
def captured_ffmpeg_commands() -> Iterator[list[list[str]]]:
    """Every argv ``run_ffmpeg`` starts inside the block (from its "Running %s" debug record)."""
    logger = logging.getLogger(ffmpeg.__name__)
    handler = _CommandCapture()
    previous = logger.level, logger.propagate
    logger.addHandler(handler)
    # Captured, not printed: the bench's own output stays a table.
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler.commands
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = previous


def without_progress(command: list[str]) -> list[str]:
    """The command as a person would type it: Konvrt's argv less ``-progress pipe:1``."""
    index = command.index("-progress")
    return command[:index] + command[index + 2 :]


def create_operation(*, operation: str, parameters: dict[str, Any], input_path: str | None = None) -> Operation:
    """A pending operation (with its input stored through the storage service when given)."""
    definition = get_operation(operation)
    created = Operation.objects.create(
        session_key=BENCH_SESSION, operation=operation, parameters=validate_parameters(definition, parameters)
    )
    if input_path is not None:
        source = Path(input_path)
        extension = file_extension(source.name)
        stored = get_storage().save_upload(
            operation_id=created.id, source=source, extension=extension, media_type=definition.media_type
        )
        File.objects.create(
            operation=created,
            file_type=FileType.INPUT,
            file_path=stored.key,
            file_name=source.name,
            file_size=stored.size,
            mime_type=mime_type_for_extension(extension),
        )
    return created


def _claimed_operation(operation: str, parameters: dict[str, Any]) -> Operation:
    created = create_operation(operation=operation, parameters=parameters)
    lifecycle.operation_mark_queued(operation_id=created.id, job_id=f"bench-{created.id}")
    claimed = lifecycle.operation_claim(operation_id=created.id)
    if claimed is None:
        raise RuntimeError(f"Could not claim bench operation {created.id}.")
    return claimed


def run_processor(*, operation: str, input_path: str, parameters: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Run the registry's processor as the worker does, timing the processor call from inside.

    CPU is this process's (the supervisor's threads, the tracker's queries) plus FFmpeg's; peak
    RSS is this process's plus FFmpeg's (the largest child this process has run, so one warm
    process serves one kind of command).
    """
    definition = get_operation(operation)
    claimed = _claimed_operation(operation, parameters)
    path = Path(input_path)
    extension = file_extension(path.name)
    input_format = input_decoder(extension=extension, media_type=definition.media_type, recorded=None)
    info = inspect_input(path=path, extension=extension, definition=definition, input_format=input_format)
    workspace = Path(workdir) / str(claimed.id)
    workspace.mkdir(parents=True)
    context = ProcessingContext(
        operation=definition.name,
        media_type=definition.media_type,
        parameters=validate_parameters(definition, parameters),
        input_path=path,
        input_extension=extension,
        input_format=input_format,
        input_info=info,
        workspace=workspace,
        deadline=time.monotonic() + definition.timeout,
        report_progress=ProgressTracker(operation_id=claimed.id, attempt=claimed.attempt).report,
    )
    with captured_ffmpeg_commands() as commands:
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = definition.load_processor()(context)
        wall = time.perf_counter() - started
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (
        own.ru_utime
        + own.ru_stime
        - own_before.ru_utime
        - own_before.ru_stime
        + children.ru_utime
        + children.ru_stime
        - children_before.ru_utime
        - children_before.ru_stime
    )
    lifecycle.operation_cancel(operation=claimed)
    return {
        "wall": wall,
        "cpu": cpu,
        "own_rss_mb": own.ru_maxrss / 1024,
        "ffmpeg_rss_mb": children.ru_maxrss / 1024,
        "commands": commands,
        "output": str(result.path),
        "details": result.details,
    }


def probe_seconds(*, input_path: str, demuxer: str) -> float:
    """One probe of a file, as a client calling FFmpeg itself would make before its command."""
    from apps.processors.probe import probe_media

    started = time.perf_counter()
    probe_media(Path(input_path), format_name=demuxer)
    return time.perf_counter() - started


# --- database writes of one job -------------------------------------------------------------------
class _WriteCounter:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        statement = sql.lstrip().split(" ", 1)[0].upper()
        if statement in ("INSERT", "UPDATE", "DELETE"):
            self.writes.append(sql)
        return execute(sql, params, many, context)


def count_job_writes(*, operation: str, input_path: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run one whole job (``process_operation``, as RQ would call it) on a queued operation and count
    the database writes it makes, progress writes apart."""
    from apps.operations.jobs import process_operation
    from apps.operations.services.queue_manager import job_id_for

    created = create_operation(operation=operation, parameters=parameters, input_path=input_path)
    lifecycle.operation_mark_queued(operation_id=created.id, job_id=job_id_for(created))
    counter = _WriteCounter()
    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        outcome = process_operation(str(created.id))
    wall = time.perf_counter() - started
    finished = Operation.objects.get(id=created.id)
    if finished.status != OperationStatus.COMPLETED:
        raise RuntimeError(f"The bench job ended {finished.status}: {finished.error_message} {finished.metadata}")
    # The tracker's writes (progress, phase, heartbeat) are the updates that set a heartbeat
    # without changing the status.
    tracker_writes = [sql for sql in counter.writes if '"heartbeat_at" =' in sql and '"status" =' not in sql]
    progress_writes = [sql for sql in tracker_writes if '"progress" =' in sql]
    return {
        "outcome": outcome,
        "wall": wall,
        "processing_seconds": (finished.completed_at - finished.started_at).total_seconds(),
        "writes": len(counter.writes),
        "tracker_writes": len(tracker_writes),
        "progress_writes": len(progress_writes),
        "finished_at": timezone.now().isoformat(),
    }
