"""What the bench runs inside Konvrt's own processes (a warm process, see ``bench.warm``, or a fresh
one, see ``bench.image_child``).

Konvrt's side of a processing case is the code the worker runs: an operation stored and claimed
through the services, then the processing service (``operation_process``) under the job's
heartbeat, in a job workspace, with the progress tracker writing to the database, timed from
inside. The FFmpeg commands it ran come back in the service's outcome, so that the baseline is
exactly those commands.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import lifecycle
from apps.operations.services.operations_manager import operation_delete
from apps.operations.services.processing import ProcessingOutcome, operation_process
from apps.operations.services.progress import Heartbeat, ProgressTracker
from apps.operations.services.url_import import operation_fetch_source
from apps.operations.services.workspace import job_workspace
from apps.processors.parameters import validate_parameters
from apps.processors.probe import local_url
from apps.processors.registry import get_operation
from apps.processors.sniffing import inspect_upload
from apps.storage.backend import get_storage
from bench.harness import SERVICE_SHARE

BENCH_SESSION = "bench" + "0" * 27


def by_hand(command: list[str], *, input_path: str | Path, output_path: str | Path) -> list[str]:
    """A command Konvrt ran as a person would type it: less ``-progress pipe:1``, reading the
    original input (Konvrt read the job's link to its stored copy) and writing ``output_path``
    (FFmpeg's output comes last in every command, see ``ffmpeg.output_args``)."""
    index = command.index("-progress")
    typed = command[:index] + command[index + 2 :]
    if typed.count("-i") != 1:
        raise ValueError(f"Expected a command with one input: {typed}")
    typed[typed.index("-i") + 1] = local_url(Path(input_path))
    typed[-1] = str(Path(output_path).absolute())
    return typed


def create_operation(*, operation: str, parameters: dict[str, Any], input_path: str | None = None) -> Operation:
    """A pending operation; with ``input_path``, its input checked and stored as the API does."""
    definition = get_operation(operation)
    created = Operation.objects.create(
        session_key=BENCH_SESSION, operation=operation, parameters=validate_parameters(definition, parameters)
    )
    if input_path is not None:
        source = Path(input_path)
        inspection = inspect_upload(path=source, definition=definition)
        stored = get_storage().save_upload(
            operation_id=created.id, source=source, extension=inspection.extension, media_type=definition.media_type
        )
        File.objects.create(
            operation=created,
            file_type=FileType.INPUT,
            file_path=stored.key,
            file_name=source.name,
            file_size=stored.size,
            mime_type=inspection.mime_type,
            metadata={**inspection.metadata, "container": inspection.container},
        )
    return created


def claimed_operation(*, operation: str, parameters: dict[str, Any], input_path: str) -> Operation:
    """An operation with a stored input, queued and claimed as a worker claims it."""
    created = create_operation(operation=operation, parameters=parameters, input_path=input_path)
    lifecycle.operation_mark_queued(operation_id=created.id, job_id=f"bench-{created.id}")
    claimed = lifecycle.operation_claim(operation_id=created.id)
    if claimed is None:
        raise RuntimeError(f"Could not claim bench operation {created.id}.")
    return claimed


def process(claimed: Operation) -> ProcessingOutcome:
    """What the job (``apps.operations.jobs.process_operation``) does with an operation it claimed,
    less RQ and the failure policy: the processing service under a heartbeat, in a job workspace."""
    definition = get_operation(claimed.operation)
    with Heartbeat(operation_id=claimed.id, attempt=claimed.attempt), job_workspace(claimed.id) as workspace:
        tracker = ProgressTracker(operation_id=claimed.id, attempt=claimed.attempt)
        return operation_process(
            operation=claimed,
            definition=definition,
            tracker=tracker,
            workspace=workspace,
            deadline=time.monotonic() + definition.timeout,
        )


def run_operation(*, operation: str, input_path: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Process one operation as the worker does (see ``process``), timed from inside.

    CPU is this process's (the service, the supervisor's threads, the tracker's queries, the
    probes) plus FFmpeg's; peak RSS is this process's plus FFmpeg's (the largest child this
    process has run, so one warm process serves one kind of command). The operation is deleted
    afterwards, its stored files with it.
    """
    claimed = claimed_operation(operation=operation, parameters=parameters, input_path=input_path)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    outcome = process(claimed)
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
    operation_delete(operation=Operation.objects.get(id=claimed.id))
    return {
        "wall": wall,
        "cpu": cpu,
        "own_rss_mb": own.ru_maxrss / 1024,
        "ffmpeg_rss_mb": children.ru_maxrss / 1024,
        SERVICE_SHARE: (wall - outcome.processor_seconds) * 1000,
        "ffmpeg_seconds": sum(run.elapsed_seconds for run in outcome.ffmpeg_runs),
        "commands": [list(run.command) for run in outcome.ffmpeg_runs],
        "details": outcome.result.details,
    }


def fetch_from_url(*, operation: str, url: str) -> dict[str, Any]:
    """The fetching phase of an import from a URL as the worker runs it (download through the
    outbound guard, content check, store, record), timed from inside; then the operation is deleted."""
    definition = get_operation(operation)
    created = Operation.objects.create(session_key=BENCH_SESSION, operation=operation, source_url=url)
    with job_workspace(created.id) as workspace:
        started = time.perf_counter()
        operation_fetch_source(
            operation=created, definition=definition, workspace=workspace, deadline=time.monotonic() + 600
        )
        wall = time.perf_counter() - started
    operation_delete(operation=Operation.objects.get(id=created.id))
    return {"wall": wall}


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
