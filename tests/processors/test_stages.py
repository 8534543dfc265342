"""Jobs of several FFmpeg runs (measure then encode, two-pass encodes): one progress from 0 to 100
across the runs, and a stop asked for in any run stops that run's FFmpeg."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from apps.processors.contract import ProcessingContext
from apps.processors.exceptions import OperationStopped, ProcessingError
from apps.processors.formats import get_format
from apps.processors.inspection import inspect_input
from apps.processors.parameters import validate_parameters
from apps.processors.presets import PRESETS
from apps.processors.registry import OPERATIONS, get_operation
from apps.processors.stages import in_stage
from tests.processors.processes import ffmpeg_processes_under


def context_for(
    operation: str,
    source: Path,
    parameters: dict[str, Any],
    workspace: Path,
    report=None,
    *,
    extension: str | None = None,
) -> ProcessingContext:
    """A claimed job's processing context for ``source`` (accepted as ``extension``, by default its
    own), its progress to ``report`` (else the context's default)."""
    definition = get_operation(operation)
    extension = extension or source.suffix.lstrip(".")
    demuxer = get_format(extension).demuxer
    workspace.mkdir(parents=True, exist_ok=True)
    options = {} if report is None else {"report_progress": report}
    return ProcessingContext(
        operation=operation,
        media_type=definition.media_type,
        parameters=validate_parameters(definition, parameters),
        input_path=source,
        input_extension=extension,
        input_format=demuxer,
        input_info=inspect_input(path=source, extension=extension, definition=definition, input_format=demuxer),
        workspace=workspace,
        deadline=time.monotonic() + 120,
        **options,
    )


def test_a_stage_maps_its_runs_percentages_onto_its_share_of_the_job(tmp_path, media):
    seen: list[float | None] = []
    context = context_for("audio_normalize", media.audio(), {}, tmp_path, lambda p: seen.append(p) or True)

    stage = in_stage(context, 35, 85)

    assert stage.report_progress(0) and stage.report_progress(50) and stage.report_progress(100)
    assert stage.report_progress(None)
    assert stage.report_progress(250)  # never past the stage's end
    assert seen == [35, 60, 85, None, 85]
    assert stage.ffmpeg_runs is context.ffmpeg_runs


@pytest.mark.parametrize(
    ("operation", "parameters", "passes"),
    [
        ("video_compress", {"target_size_mb": 0.3, "preset": "ultrafast"}, 2),
        ("audio_normalize", {}, 3),
    ],
)
def test_a_multi_pass_job_reports_one_rising_progress(tmp_path, media, operation, parameters, passes):
    source = media.audio(duration=2) if operation == "audio_normalize" else media.video(duration=2, noisy=True)
    seen: list[float] = []
    context = context_for(operation, source, parameters, tmp_path, lambda p: (p is None or seen.append(p)) or True)

    OPERATIONS[operation].load_processor()(context)

    assert len(context.ffmpeg_runs) == passes
    assert seen == sorted(seen)
    # 100 at the end, or 95 when the room left for a corrective pass was not needed (the job's
    # completion writes 100).
    assert seen[-1] >= 95
    # Each run ends at its stage's end: the first never claims the whole job.
    assert any(0 < percent < 100 for percent in seen)


@pytest.mark.parametrize(
    ("operation", "parameters", "stop_at"),
    [
        ("video_compress", {"target_size_mb": 0.3, "preset": "ultrafast"}, 40),  # in the second pass
        ("audio_normalize", {}, 35),  # while encoding, after measuring
        ("video_to_gif", {"duration": 1}, 0),
        ("video_thumbnail", {}, 0),
        ("video_trim", {"start": 0.5}, 0),
    ],
)
def test_a_stop_in_any_pass_stops_ffmpeg(tmp_path, media, operation, parameters, stop_at):
    source = media.audio(duration=2) if operation == "audio_normalize" else media.video(duration=2, noisy=True)
    calls: list[float | None] = []

    def report(percent: float | None) -> bool:
        calls.append(percent)
        if stop_at == 0:
            return False
        return percent is None or percent <= stop_at

    context = context_for(operation, source, parameters, tmp_path, report)

    with pytest.raises(OperationStopped):
        OPERATIONS[operation].load_processor()(context)

    assert ffmpeg_processes_under(os.getpid()) == []
    if stop_at:
        assert len(context.ffmpeg_runs) >= 1  # an earlier pass finished before the stop


def test_every_preset_names_an_operation_and_valid_parameters():
    for preset in PRESETS.values():
        assert preset.operation in OPERATIONS
        assert validate_parameters(preset.definition, preset.parameters).items() >= preset.parameters.items()


def test_a_target_missed_twice_fails_after_one_corrective_pass_saying_what_it_reached(tmp_path, media, monkeypatch):
    # Aiming past the target makes every attempt miss, as a clip x264 cannot size would.
    monkeypatch.setattr("apps.processors.target_size.AIM", 1.3)
    context = context_for(
        "video_compress",
        media.video(duration=4, noisy=True),
        {"target_size_mb": 0.3, "preset": "ultrafast"},
        tmp_path,
        lambda p: True,
    )

    with pytest.raises(ProcessingError) as failed:
        OPERATIONS["video_compress"].load_processor()(context)

    assert len(context.ffmpeg_runs) == 3  # the analysis, the encode and one corrective encode
    assert re.fullmatch(
        r"The video came out at 0\.\d\d MB and could not be made to fit 0\.3 MB\. "
        r"A slightly larger target would work\.",
        failed.value.user_message,
    )
    assert failed.value.permanent
