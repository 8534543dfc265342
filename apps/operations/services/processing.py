"""Processing one claimed operation: the pipeline around a processor.

The processor (``apps/processors``) only turns a local input into a local output. Around it this
service fetches the input from storage, inspects it as the format it was accepted as, validates
the saved parameters, runs the processor with a progress callback that also notices a cancel,
verifies the output, stores it and completes the operation through the guarded transition, all
while recording the phase a client polling the status sees.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from apps.core.utils import file_extension
from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import lifecycle
from apps.operations.services.progress import ProgressTracker
from apps.operations.services.url_import import operation_fetch_source
from apps.operations.services.workspace import jobs_temp_root
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import OperationStopped, ProcessingError
from apps.processors.ffmpeg import FFmpegResult
from apps.processors.formats import mime_type_for_extension
from apps.processors.inspection import input_decoder, inspect_input
from apps.processors.parameters import validate_parameters
from apps.processors.registry import OperationDefinition
from apps.processors.verification import verify_output
from apps.storage.backend import get_storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessingOutcome:
    """What a completed ``operation_process`` did, for callers that measure it (the bench); the job
    needs none of it."""

    # The processor's answer; its ``path`` has since been moved into storage.
    result: ProcessingResult
    # Every FFmpeg run, in order, each with the command it ran.
    ffmpeg_runs: tuple[FFmpegResult, ...]
    # The processor call alone, of the whole run.
    processor_seconds: float


def operation_process(
    *,
    operation: Operation,
    definition: OperationDefinition,
    tracker: ProgressTracker,
    workspace: Path,
    deadline: float,
) -> ProcessingOutcome:
    """Run a claimed operation through its phases (fetching → probing → processing → storing) and
    complete it. Raises whatever went wrong, for the job to classify; ``OperationStopped`` when the
    operation no longer wants this attempt (cancelled, deleted or taken over meanwhile)."""
    started = time.monotonic()
    input_file = operation.files.filter(file_type=FileType.INPUT).first()
    if input_file is None and operation.source_url:
        # Import from a URL: the phase is already ``fetching`` (set by the claim).
        input_file = operation_fetch_source(
            operation=operation, definition=definition, workspace=workspace, deadline=deadline
        )
    if input_file is None:
        raise ProcessingError("The uploaded file of this operation is missing; please upload it again.")
    extension = file_extension(input_file.file_path)
    storage = get_storage()
    input_path = storage.fetch_to_path(
        key=input_file.file_path, destination=workspace / f"input.{extension}", media_type=definition.media_type
    )
    input_size = input_path.stat().st_size

    tracker.enter_phase(ProcessingPhase.PROBING)
    input_format = input_decoder(
        extension=extension, media_type=definition.media_type, recorded=input_file.metadata.get("container")
    )
    input_info = inspect_input(
        path=input_path,
        extension=extension,
        definition=definition,
        input_format=input_format,
        recorded_streams=input_file.metadata.get("streams"),
    )
    parameters = validate_parameters(definition, operation.parameters)

    tracker.enter_phase(ProcessingPhase.PROCESSING)
    context = ProcessingContext(
        operation=definition.name,
        media_type=definition.media_type,
        parameters=parameters,
        input_path=input_path,
        input_extension=extension,
        input_format=input_format,
        input_info=input_info,
        workspace=workspace,
        deadline=deadline,
        report_progress=tracker.report,
    )
    processor_started = time.monotonic()
    result: ProcessingResult = definition.load_processor()(context)
    processor_seconds = time.monotonic() - processor_started
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
    download_name = definition.output_file_name(original_name=input_file.file_name, extension=result.extension)
    stored = storage.save_output(
        operation_id=operation.id,
        local_path=result.path,
        extension=result.extension,
        media_type=result.media_type,
        download_name=download_name,
    )
    completed = lifecycle.operation_mark_completed(
        operation_id=operation.id,
        attempt=operation.attempt,
        output={
            "file_path": stored.key,
            "file_name": download_name,
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
    return ProcessingOutcome(result=result, ffmpeg_runs=tuple(context.ffmpeg_runs), processor_seconds=processor_seconds)


def remove_earlier_workspaces(operation: Operation) -> None:
    """Remove what an earlier attempt of this operation left on this machine: it was killed before
    its own cleanup ran (this attempt's claim proves it no longer works on it)."""
    for leftover in jobs_temp_root().glob(f"{operation.id}-*"):
        logger.info("Removing the workspace %s of an interrupted attempt of %s", leftover, operation.id)
        shutil.rmtree(leftover, ignore_errors=True)
