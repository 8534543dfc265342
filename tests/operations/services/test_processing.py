"""The processing service as its callers see it: what a completed run tells them."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.operations.enums import OperationStatus
from apps.operations.services import lifecycle
from apps.operations.services.operations_manager import operation_create
from apps.operations.services.processing import operation_process
from apps.operations.services.progress import ProgressTracker
from apps.processors.parameters import validate_parameters
from apps.processors.registry import get_operation

pytestmark = pytest.mark.django_db


def claimed(name: str, path, parameters: dict):
    """An operation created through the API's service, queued and claimed as a worker claims it."""
    definition = get_operation(name)
    created = operation_create(
        session_key="p" * 32,
        definition=definition,
        parameters=validate_parameters(definition, parameters),
        upload=SimpleUploadedFile(path.name, path.read_bytes()),
    ).operation
    assert lifecycle.operation_mark_queued(operation_id=created.id, job_id=f"test-{created.id}")
    operation = lifecycle.operation_claim(operation_id=created.id)
    assert operation is not None
    return operation, definition


def process(operation, definition, workspace):
    return operation_process(
        operation=operation,
        definition=definition,
        tracker=ProgressTracker(operation_id=operation.id, attempt=operation.attempt),
        workspace=workspace,
        deadline=time.monotonic() + 60,
    )


def test_a_completed_run_returns_the_ffmpeg_commands_it_ran_and_the_processors_time(media, tmp_path):
    operation, definition = claimed("audio_convert", media.audio(duration=1), {"output_format": "mp3"})
    workspace = tmp_path / "job"
    workspace.mkdir()

    started = time.monotonic()
    outcome = process(operation, definition, workspace)
    whole = time.monotonic() - started

    operation.refresh_from_db()
    assert operation.status == OperationStatus.COMPLETED
    [run] = outcome.ffmpeg_runs
    command = list(run.command)
    assert command[command.index("-i") + 1] == f"file:{workspace / 'input.wav'}"
    assert command[command.index("-c:a") + 1] == "libmp3lame"
    assert command[-1] == str(outcome.result.path) == str(workspace / "output.mp3")
    assert outcome.result.extension == "mp3"
    # FFmpeg ran inside the processor, which ran inside the whole service (probes, storing, writes).
    assert 0 < run.elapsed_seconds <= outcome.processor_seconds < whole


def test_an_image_run_reports_no_ffmpeg_and_its_processors_time(media, tmp_path):
    operation, definition = claimed("image_resize", media.jpeg(width=64, height=32), {"width": 16})

    started = time.monotonic()
    outcome = process(operation, definition, tmp_path)
    whole = time.monotonic() - started

    assert outcome.ffmpeg_runs == ()
    assert outcome.result.extension == "jpg"
    assert 0 < outcome.processor_seconds < whole
