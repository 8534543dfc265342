"""The processing service as its callers see it: what a completed run tells them."""

from __future__ import annotations

import logging
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.operations.enums import FileType, OperationStatus, ProcessingPhase
from apps.operations.models import Operation
from apps.operations.services import lifecycle, processing
from apps.operations.services.operations_manager import operation_create
from apps.operations.services.processing import operation_process, remove_earlier_workspaces
from apps.operations.services.progress import ProgressTracker
from apps.operations.services.workspace import jobs_temp_root
from apps.processors.exceptions import OperationStopped, ProbeError, ProcessingError
from apps.processors.parameters import validate_parameters
from apps.processors.registry import get_operation

pytestmark = pytest.mark.django_db


def claimed(name: str, path, parameters: dict, *, file_name: str | None = None):
    """An operation created through the API's service, queued and claimed as a worker claims it."""
    definition = get_operation(name)
    created = operation_create(
        session_key="p" * 32,
        definition=definition,
        parameters=validate_parameters(definition, parameters),
        upload=SimpleUploadedFile(file_name or path.name, path.read_bytes()),
    ).operation
    assert lifecycle.operation_mark_queued(operation_id=created.id, job_id=f"test-{created.id}")
    operation = lifecycle.operation_claim(operation_id=created.id)
    assert operation is not None
    return operation, definition


class RecordingTracker(ProgressTracker):
    """The worker's tracker, also keeping the phases entered and the progress reported, and
    running ``on_phase[phase]`` right after the phase is recorded (something that happens
    meanwhile, such as a user's cancel)."""

    def __init__(self, operation, on_phase=None) -> None:
        super().__init__(operation_id=operation.id, attempt=operation.attempt)
        self.phases: list[str] = []
        self.reports: list[float | None] = []
        self.on_phase = on_phase or {}

    def enter_phase(self, phase: ProcessingPhase) -> None:
        super().enter_phase(phase)
        self.phases.append(phase)
        if phase in self.on_phase:
            self.on_phase[phase]()

    def report(self, percent: float | None) -> bool:
        self.reports.append(percent)
        return super().report(percent)


def process(operation, definition, workspace, tracker=None):
    return operation_process(
        operation=operation,
        definition=definition,
        tracker=tracker or ProgressTracker(operation_id=operation.id, attempt=operation.attempt),
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


def test_a_run_goes_through_its_phases_and_reports_progress_while_ffmpeg_works(media, tmp_path):
    operation, definition = claimed("audio_convert", media.audio(duration=4), {"output_format": "mp3"})
    tracker = RecordingTracker(operation)

    process(operation, definition, tmp_path, tracker)

    assert tracker.phases == [ProcessingPhase.PROBING, ProcessingPhase.PROCESSING, ProcessingPhase.STORING]
    assert any(percent is not None and percent > 0 for percent in tracker.reports)


def test_a_completed_run_stores_the_output_and_records_what_it_is(media, storage_root, tmp_path):
    operation, definition = claimed(
        "image_resize", media.jpeg(width=64, height=32), {"width": 16}, file_name="holiday.jpg"
    )
    input_size = operation.files.get(file_type=FileType.INPUT).file_size
    started = time.monotonic()

    process(operation, definition, tmp_path)

    whole = time.monotonic() - started
    operation.refresh_from_db()
    output = operation.files.get(file_type=FileType.OUTPUT)
    assert (output.file_name, output.mime_type) == ("holiday_resized.jpg", "image/jpeg")
    assert output.file_size == (storage_root / output.file_path).stat().st_size > 0
    assert (output.cloudinary_public_id, output.cloudinary_url) == ("", "")
    ratio = round(output.file_size / input_size, 4)
    assert output.metadata["format"] == "jpg"
    assert (output.metadata["width"], output.metadata["height"]) == (16, 8)
    assert output.metadata["compression_ratio"] == ratio
    assert operation.metadata["compression_ratio"] == ratio
    seconds = operation.metadata["processing_seconds"]
    assert 0 < seconds <= whole and round(seconds, 3) == seconds


def test_an_operation_whose_upload_is_gone_fails_with_a_sentence(media, tmp_path):
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    operation.files.filter(file_type=FileType.INPUT).delete()

    with pytest.raises(ProcessingError) as caught:
        process(operation, definition, tmp_path)

    assert caught.value.user_message == "The uploaded file of this operation is missing; please upload it again."


def test_an_input_damaged_in_storage_since_its_upload_is_refused_as_unreadable(media, storage_root, tmp_path):
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    stored = storage_root / operation.files.get(file_type=FileType.INPUT).file_path
    stored.write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)

    with pytest.raises(ProbeError) as caught:
        process(operation, definition, tmp_path)

    assert caught.value.user_message == (
        "This file could not be read as a JPG image. It may be damaged or not what its name says."
    )


def test_a_cancel_while_the_output_is_stored_removes_it_and_stops_the_attempt(media, storage_root, tmp_path):
    other, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    (tmp_path / "other").mkdir()
    process(other, definition, tmp_path / "other")  # another operation's completion changes nothing here
    other_output = storage_root / other.files.get(file_type=FileType.OUTPUT).file_path
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    cancel = {ProcessingPhase.STORING: lambda: lifecycle.operation_cancel(operation=operation)}

    with pytest.raises(OperationStopped) as caught:
        process(operation, definition, tmp_path, RecordingTracker(operation, cancel))

    assert str(caught.value) == f"Operation {operation.id} changed while its output was being stored."
    assert Operation.objects.get(id=operation.id).status == OperationStatus.CANCELLED
    assert [path for path in (storage_root / "outputs").rglob("*") if path.is_file()] == [other_output]


def test_a_newer_attempt_that_completed_meanwhile_keeps_the_stored_output(media, storage_root, tmp_path):
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    old, newer = tmp_path / "old", tmp_path / "newer"
    old.mkdir()
    newer.mkdir()

    def taken_over_and_completed() -> None:
        lifecycle.operation_mark_retrying(operation_id=operation.id, attempt=operation.attempt, message="Again.")
        process(lifecycle.operation_claim(operation_id=operation.id), definition, newer)

    with pytest.raises(OperationStopped):
        process(
            operation, definition, old, RecordingTracker(operation, {ProcessingPhase.STORING: taken_over_and_completed})
        )

    operation.refresh_from_db()
    assert (operation.status, operation.attempt) == (OperationStatus.COMPLETED, 2)
    assert (storage_root / operation.files.get(file_type=FileType.OUTPUT).file_path).is_file()


def test_the_workspaces_of_earlier_attempts_are_removed_and_no_other(media, caplog):
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    root = jobs_temp_root()
    earlier = [root / f"{operation.id}-1", root / f"{operation.id}-2"]
    another = root / "0b8c7f0e-0000-4000-8000-000000000000-1"
    for directory in [*earlier, another]:
        (directory / "partial").mkdir(parents=True)

    with caplog.at_level(logging.INFO, logger=processing.__name__):
        remove_earlier_workspaces(operation)

    assert [directory.exists() for directory in [*earlier, another]] == [False, False, True]
    assert sorted(caplog.messages) == [
        f"Removing the workspace {directory} of an interrupted attempt of {operation.id}" for directory in earlier
    ]


def test_with_cloudinary_an_image_is_fetched_and_stored_as_an_image_resource(cloudinary_standin, media, tmp_path):
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})

    process(operation, definition, tmp_path)

    output = Operation.objects.get(id=operation.id).files.get(file_type=FileType.OUTPUT)
    assert cloudinary_standin.asset(output.cloudinary_public_id, "image") is not None
    assert "/image/authenticated/" in output.cloudinary_url


def test_with_cloudinary_a_cancel_while_storing_destroys_the_image_resource(cloudinary_standin, media, tmp_path):
    operation, definition = claimed("image_resize", media.jpeg(), {"width": 16})
    cancel = {ProcessingPhase.STORING: lambda: lifecycle.operation_cancel(operation=operation)}

    with pytest.raises(OperationStopped):
        process(operation, definition, tmp_path, RecordingTracker(operation, cancel))

    assert [call.resource_type for call in cloudinary_standin.calls_of("destroy")] == ["image"]
