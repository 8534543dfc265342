"""The RQ side of processing: the job function, its failure callback and the worker class.

``process_operation`` is a thin adapter: it claims the operation, walks it through its phases
(fetching → probing → processing → storing) with the storage service, the registry's processor and
the guarded transitions in ``lifecycle.py``, and classifies whatever goes wrong:

- permanent (bad input, codec error, no stream to work on, a failed output check, the time limit):
  the operation fails at once with a message for its user and the job returns normally, so RQ
  does not retry it;
- retryable (storage or network timeouts, a database or Redis hiccup): while RQ has retries left
  the operation goes back to ``queued`` with a note and the exception is re-raised, so RQ's Retry
  runs it again after 60 s, then 300 s (through RQ's scheduler); on the last attempt it fails.

Failures that never reach the function's own handling (a worker killed mid-job and found by RQ's
registry cleanup, a work-horse killed by the OOM killer) arrive in ``on_job_failure`` and
``KonvrtWorker``; a job whose worker died with it, or whose failure could not be recorded (the
database unreachable), is found by the recovery sweep (``apps/operations/services/recovery.py``)
through its silent heartbeats. User messages go to ``error_message``; FFmpeg's stderr tail and
exception text go to the logs and ``Operation.metadata`` for operators.

Importing this module also imports Pillow, PyAV and every processor, so that a worker started with
``KonvrtWorker`` pays for those imports once in its parent process instead of in every job.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django_rq
from django import db
from django.conf import settings
from redis.exceptions import RedisError
from rq import Queue, Worker, get_current_job
from rq.defaults import DEFAULT_WORKER_TTL
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException
from rq.utils import now as rq_now

from apps.core.exceptions import StorageError, ValidationFailed
from apps.core.utils import file_extension
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.operations.services.file_manager import job_workspace, jobs_temp_root, mime_type_for_extension
from apps.operations.services.storage import get_storage

# Preloaded in the worker parent (see the module docstring).
from apps.processors import audio_processing, image_processing, video_processing  # noqa: F401
from apps.processors.base_processor import (
    ProcessingContext,
    ProcessingResult,
    input_decoder,
    inspect_input,
    output_file_name,
    verify_output,
)
from apps.processors.exceptions import FFmpegError, FFmpegTimeout, OperationStopped, ProcessingError
from apps.processors.parameters import validate_parameters
from apps.processors.registry import OperationDefinition, get_operation
from apps.processors.utils.track_progress import Heartbeat, ProgressTracker

logger = logging.getLogger(__name__)

# Part of a job's time kept back from FFmpeg, so that a run that hits its limit still leaves time
# to record the failure cleanly before RQ's own timeout fires.
STORING_MARGIN_RATIO = 0.1
STORING_MARGIN_MAX_SECONDS = 30
OPERATOR_DETAIL_LIMIT = 4000
_GROUP_NOUNS = {"video": "videos", "image": "images", "audio": "audio"}


@dataclass(frozen=True)
class Failure:
    message: str  # for the user
    retryable: bool
    detail: str  # for operators


class WorkHorseKilled(Exception):
    """The process running the job died without reporting back (OOM killer, SIGKILL)."""


# --- the job --------------------------------------------------------------------------------------
def process_operation(operation_id: str) -> str:
    """Process one operation; returns what happened (``completed``, ``failed``, ``stopped``,
    ``skipped``) for RQ's job result. Raises only to ask RQ for a retry."""
    operation = lifecycle.operation_claim(operation_id=uuid.UUID(operation_id))
    if operation is None:
        logger.info("Operation %s is not queued (cancelled, deleted or already taken); skipping", operation_id)
        return "skipped"
    job = get_current_job()
    definition = get_operation(operation.operation)
    if definition is None:
        _fail(operation, Failure("This operation is no longer offered.", False, f"unknown {operation.operation!r}"))
        return "failed"
    time_limit = job.timeout if job is not None and job.timeout and job.timeout > 0 else definition.timeout
    margin = min(STORING_MARGIN_MAX_SECONDS, time_limit * STORING_MARGIN_RATIO)
    started = time.monotonic()
    tracker = ProgressTracker(operation_id=operation.id, attempt=operation.attempt)
    logger.info("Processing %s %s (attempt %s)", operation.operation, operation.id, operation.attempt)
    _remove_earlier_workspaces(operation)
    try:
        with Heartbeat(operation_id=operation.id, attempt=operation.attempt), job_workspace(operation.id) as workspace:
            _process(operation, definition, tracker, workspace, deadline=started + time_limit - margin)
    except OperationStopped:
        logger.info("Operation %s was cancelled, deleted or taken over; stopped its work", operation.id)
        return "stopped"
    except (FFmpegTimeout, JobTimeoutException) as e:
        # A job that ran out of time would run out of time again: fail now, never retry.
        failure = Failure(time_limit_message(definition, time_limit), False, _detail(e))
        try:
            _fail(operation, failure)
        except db.DatabaseError:
            # RQ's timeout can interrupt a query half-way and leave the connection unusable.
            db.connection.close()
            _fail(operation, failure)
        return "failed"
    except Exception as e:
        failure = classify_failure(e)
        if failure.retryable and _rq_will_retry(job):
            _mark_retrying(operation, failure, job)
            raise
        _fail(operation, failure if not failure.retryable else _final(failure), error=e)
        return "failed"
    logger.info("Completed %s %s in %.1f s", operation.operation, operation.id, time.monotonic() - started)
    return "completed"


def _process(
    operation: Operation,
    definition: OperationDefinition,
    tracker: ProgressTracker,
    workspace: Path,
    *,
    deadline: float,
) -> None:
    started = time.monotonic()
    input_file = operation.files.filter(file_type=FileType.INPUT).first()
    if input_file is None:
        raise ProcessingError("The uploaded file of this operation is missing; please upload it again.")
    extension = file_extension(input_file.file_path)
    storage = get_storage()
    input_path = storage.fetch_to_path(key=input_file.file_path, destination=workspace / f"input.{extension}")
    input_size = input_path.stat().st_size

    tracker.enter_phase(ProcessingPhase.PROBING)
    input_format = input_decoder(
        extension=extension, media_type=definition.media_type, recorded=input_file.metadata.get("container")
    )
    input_info = inspect_input(path=input_path, extension=extension, definition=definition, input_format=input_format)
    parameters = validate_parameters(definition, operation.parameters)

    tracker.enter_phase(ProcessingPhase.PROCESSING)
    context = ProcessingContext(
        operation_id=operation.id,
        definition=definition,
        parameters=parameters,
        input_path=input_path,
        input_extension=extension,
        input_format=input_format,
        input_info=input_info,
        workspace=workspace,
        tracker=tracker,
        deadline=deadline,
    )
    result: ProcessingResult = definition.load_processor()(context)
    try:
        output_info = verify_output(result=result, input_info=input_info)
    except ProcessingError as e:
        # FFmpeg may have exited 0 after warnings that explain the bad output (a truncated input).
        if context.ffmpeg_stderr_tail:
            e.operator_detail = f"{e.operator_detail}\nFFmpeg stderr:\n{context.ffmpeg_stderr_tail}"
        raise

    tracker.enter_phase(ProcessingPhase.STORING)
    output_size = result.path.stat().st_size
    compression_ratio = round(output_size / input_size, 4) if input_size else None
    file_metadata = {
        **output_info.as_metadata(),
        # The format as people name it ("mp4"), not FFmpeg's demuxer for it ("mov").
        "format": result.extension,
        **result.details,
        "compression_ratio": compression_ratio,
    }
    stored = storage.save_output(
        operation_id=operation.id, local_path=result.path, extension=result.extension, media_type=result.media_type
    )
    completed = lifecycle.operation_mark_completed(
        operation_id=operation.id,
        attempt=operation.attempt,
        output={
            "file_path": stored.key,
            "file_name": output_file_name(
                original_name=input_file.file_name, operation=definition.name, extension=result.extension
            ),
            "file_size": stored.size,
            "mime_type": mime_type_for_extension(result.extension),
            "metadata": file_metadata,
            "cloudinary_public_id": stored.public_id,
            "cloudinary_url": stored.url,
        },
        metadata={
            "processing_seconds": round(time.monotonic() - started, 3),
            "compression_ratio": compression_ratio,
            **result.details,
        },
    )
    if not completed:
        # Cancelled or deleted while storing: the stored output belongs to nobody. (If a newer
        # attempt completed meanwhile, the key is its output: leave it.)
        if not Operation.objects.filter(id=operation.id, status=OperationStatus.COMPLETED).exists():
            storage.delete(key=stored.key, media_type=result.media_type)
        raise OperationStopped(f"Operation {operation.id} changed while its output was being stored.")


def _remove_earlier_workspaces(operation: Operation) -> None:
    """Remove what an earlier attempt of this operation left on this machine: it was killed before
    its own cleanup ran (this attempt's claim proves it no longer works on it)."""
    for leftover in jobs_temp_root().glob(f"{operation.id}-*"):
        logger.info("Removing the workspace %s of an interrupted attempt of %s", leftover, operation.id)
        shutil.rmtree(leftover, ignore_errors=True)


# --- classifying failures -------------------------------------------------------------------------
_TRANSIENT = (db.OperationalError, db.InterfaceError, RedisError, ConnectionError, TimeoutError)


def classify_failure(error: BaseException) -> Failure:
    """What to tell the user about ``error``, and whether trying again could help."""
    if isinstance(error, ProcessingError):
        return Failure(error.user_message, not error.permanent, error.operator_detail or repr(error))
    if isinstance(error, StorageError):
        if error.retryable:
            return Failure("File storage did not answer in time.", True, error.message)
        return Failure(error.message, False, repr(error))
    if isinstance(error, ValidationFailed):
        return Failure(
            "The parameters saved with this operation are not valid any more; please create it again.",
            False,
            f"{error.message} {error.details}",
        )
    if isinstance(error, _TRANSIENT):
        return Failure("A service Konvrt depends on did not answer in time.", True, repr(error))
    if isinstance(error, AbandonedJobError | WorkHorseKilled):
        return Failure("The worker processing this file stopped unexpectedly.", True, repr(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure("The server ran out of disk space while processing this file.", True, repr(error))
    if isinstance(error, OSError):
        return Failure("The worker could not read or write its working files.", True, repr(error))
    return Failure("Something went wrong on our side while processing this file.", False, repr(error))


def time_limit_message(definition: OperationDefinition, seconds: float) -> str:
    """What a user reads when a job ran out of time, e.g. "Processing took longer than the
    30-minute limit for videos."."""
    seconds = round(seconds)
    limit = f"{seconds // 60}-minute" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}-second"
    group = definition.worker_group or definition.media_type
    return f"Processing took longer than the {limit} limit for {_GROUP_NOUNS.get(group, 'this kind of file')}."


def _final(failure: Failure) -> Failure:
    """A temporary problem that outlasted RQ's retries (or a job run outside RQ)."""
    return Failure(f"{failure.message} Please try again later.", False, failure.detail)


def _rq_will_retry(job: Job | None) -> bool:
    return job is not None and bool(job.retries_left)


def _retry_delay_text(job: Job) -> str:
    seconds = job.get_retry_interval()
    if seconds >= 60:
        minutes = round(seconds / 60)
        return f"in {minutes} minute{'s' if minutes != 1 else ''}"
    return f"in {seconds} seconds" if seconds else "shortly"


def _mark_retrying(operation: Operation, failure: Failure, job: Job) -> None:
    logger.warning("Operation %s hit a temporary problem, RQ will retry: %s", operation.id, failure.detail)
    message = f"{failure.message.rstrip('.')}; it will be tried again {_retry_delay_text(job)}."
    lifecycle.operation_mark_retrying(operation_id=operation.id, attempt=operation.attempt, message=message)


def _fail(operation: Operation, failure: Failure, *, error: BaseException | None = None) -> None:
    metadata: dict[str, Any] = {"failure": {"detail": failure.detail[-OPERATOR_DETAIL_LIMIT:]}}
    if isinstance(error, FFmpegError) and error.stderr_tail:
        metadata["ffmpeg_stderr_tail"] = error.stderr_tail[-OPERATOR_DETAIL_LIMIT:]
    if error is not None and not isinstance(error, ProcessingError | StorageError | ValidationFailed):
        # Not one of ours: keep the traceback for whoever has to fix it.
        logger.error("Operation %s failed unexpectedly", operation.id, exc_info=error)
        metadata["failure"]["traceback"] = "".join(traceback.format_exception(error))[-OPERATOR_DETAIL_LIMIT:]
    else:
        logger.warning("Operation %s failed: %s | %s", operation.id, failure.message, failure.detail[-2000:])
    lifecycle.operation_mark_failed(
        operation_id=operation.id, attempt=operation.attempt, message=failure.message, metadata=metadata
    )


def _detail(error: BaseException) -> str:
    if isinstance(error, FFmpegError):
        return f"{error}: {error.stderr_tail}"
    return repr(error)


# --- failures RQ reports ----------------------------------------------------------------------------
def on_job_failure(job: Job, connection: Any, exc_type: type[BaseException], exc_value: BaseException, tb: Any) -> None:
    """RQ's failure callback: runs for every exception that leaves ``process_operation`` (the
    retryable ones it re-raised, or one raised where it could not catch it) and for jobs RQ found
    abandoned by a dead worker.

    A retryable failure while RQ has retries left puts a row still marked processing by this job
    back to queued; anything else fails the operation with a clear message, and a permanent failure
    also tells RQ not to retry. All are guarded transitions, so whatever ``process_operation``
    already recorded is never overwritten.
    """
    operation_id = _operation_id_of(job)
    if operation_id is None:
        return
    failure = classify_failure(exc_value)
    if isinstance(exc_value, JobTimeoutException):
        operation = Operation.objects.filter(id=operation_id).first()
        definition = get_operation(operation.operation) if operation is not None else None
        if definition is not None:
            failure = Failure(time_limit_message(definition, job.timeout or definition.timeout), False, repr(exc_value))
    if failure.retryable and _rq_will_retry(job):
        running = Operation.objects.filter(id=operation_id, status=OperationStatus.PROCESSING, job_id=job.id).first()
        if running is not None:
            _mark_retrying(running, failure, job)
        return
    if _rq_will_retry(job):
        # Permanent: RQ reads retries_left right after this callback, so it will not run the job again.
        job.retries_left = 0
    message = _final(failure).message if failure.retryable else failure.message
    # Only while the operation is still this job's: after the recovery sweep replaced a dead job,
    # RQ's late word on the old one must not fail the new attempt.
    if lifecycle.operation_mark_failed(
        operation_id=operation_id, message=message, metadata={"failure": {"detail": failure.detail}}, job_id=job.id
    ):
        logger.warning("Operation %s failed after RQ gave up on job %s: %s", operation_id, job.id, failure.detail)


def on_work_horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """A forking worker's horse died without reporting (RQ calls no failure callback for this).

    Past its time limit (RQ kills a horse that ignored JobTimeoutException) the operation fails and
    RQ is told not to retry; otherwise it is treated like any retryable failure.
    """
    operation_id = _operation_id_of(job)
    if operation_id is None:
        return
    operation = Operation.objects.filter(id=operation_id).first()
    definition = get_operation(operation.operation) if operation is not None else None
    if job.started_at and job.timeout and job.timeout > 0 and definition is not None:
        if (rq_now() - job.started_at).total_seconds() >= job.timeout:
            job.retries_left = 0  # RQ reads this right after the handler: no retry of a timed-out job
            lifecycle.operation_mark_failed(
                operation_id=operation_id, message=time_limit_message(definition, job.timeout), job_id=job.id
            )
            return
    on_job_failure(job, None, WorkHorseKilled, WorkHorseKilled(f"work-horse exited with {ret_val}"), None)


def _operation_id_of(job: Job) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(job.args[0]))
    except (IndexError, ValueError, TypeError):
        logger.error("Job %s does not carry an operation id: %r", job.id, job.args)
        return None


# --- the worker -----------------------------------------------------------------------------------
class KonvrtWorker(Worker):
    """RQ's forking worker, fitted to Konvrt.

    - Its ``worker_ttl`` comes from ``WORKER_CONFIG`` for the queues it serves when not given
      (``rqworker-pool`` has no ``--worker-ttl`` option).
    - Database connections the parent opened (failure callbacks, registry cleanup) are closed
      before each fork, so a horse never shares a socket with its parent.
    - A work-horse killed without reporting goes through ``on_work_horse_killed``.
    - While a job runs, the parent refreshes its RQ execution every ``JOB_HEARTBEAT_SECONDS``
      (RQ's job monitoring interval, 30 s by default), the second sign of life the recovery sweep
      reads.
    """

    def __init__(
        self,
        queues: str | Queue | Sequence[str] | Sequence[Queue],
        *args: Any,
        worker_ttl: int | None = None,
        work_horse_killed_handler: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("job_monitoring_interval", settings.JOB_HEARTBEAT_SECONDS)
        super().__init__(
            queues,
            *args,
            worker_ttl=worker_ttl or worker_ttl_for(queues),
            work_horse_killed_handler=work_horse_killed_handler or on_work_horse_killed,
            **kwargs,
        )

    def execute_job(self, job: Job, queue: Queue) -> None:
        db.connections.close_all()
        super().execute_job(job, queue)


def worker_ttl_for(queues: str | Queue | Sequence[str] | Sequence[Queue]) -> int:
    """The largest ``worker_ttl`` that ``WORKER_CONFIG`` gives the queues served."""
    items = [queues] if isinstance(queues, str | Queue) else list(queues)
    names = {item if isinstance(item, str) else item.name for item in items}
    ttls = [worker["worker_ttl"] for worker in settings.WORKER_CONFIG.values() if worker["queue"] in names]
    return max(ttls, default=DEFAULT_WORKER_TTL)


def fleet_status() -> str:
    """What the worker scripts' ``status`` prints from RQ's registries: per queue its backlog and
    every worker registered on it (on any machine), its state and the job it is running."""
    lines = []
    for worker_config in settings.WORKER_CONFIG.values():
        queue = django_rq.get_queue(worker_config["queue"])
        workers = Worker.all(queue=queue)
        lines.append(
            f"{queue.name}: {queue.count} waiting, {queue.scheduled_job_registry.count} scheduled for retry, "
            f"{len(workers)} worker{'s' if len(workers) != 1 else ''} (configured here: {worker_config['count']})"
        )
        for worker in sorted(workers, key=lambda w: w.name):
            job = worker.get_current_job()
            doing = worker.get_state()
            if job is not None:
                seconds = (rq_now() - job.started_at).total_seconds() if job.started_at else 0
                doing += f", running {job.description or job.id} for {seconds:.0f} s"
            lines.append(f"  {worker.name} (pid {worker.pid} on {worker.hostname}): {doing}")
    return "\n".join(lines)
