"""A smoke run of the benchmark harness (``make bench``): every case on tiny inputs, one repeat, so
that the harness cannot rot. Figures are not judged here (speed is the bench's business, not the
suite's); what is checked is that each case ran both sides and produced its figures.

Marked ``bench``: left out of a plain ``make test`` or ``pytest`` run; ``-m bench`` runs it, and
CI (``.ci/run``) runs it with the rest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from django.conf import settings

from bench.cases.processing import AUDIO_CASES, VIDEO_CASES
from bench.environment import Bench
from bench.harness import KONVRT, Result, format_table, write_json
from bench.run import CASES, run_cases
from tests.processors.processes import worker_environment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.bench]


@pytest.fixture
def bench(tmp_path, storage_root) -> Bench:
    return Bench(
        work=tmp_path / "bench",
        storage_root=storage_root,
        database_url=worker_environment(storage_root)["DATABASE_URL"],
        redis_url=settings.REDIS_URL,
        scale="smoke",
        repeats=1,
    )


def by_case(results: list[Result], prefix: str) -> list[Result]:
    return [result for result in results if result.case.startswith(prefix)]


def test_every_case_runs_both_sides_and_reports(bench, tmp_path):
    results = run_cases(bench, CASES, log=lambda line: None)

    expected = {
        "video_compress mp4": 1,
        "video_convert mp4": 1,
        "video_convert webm": 1,
        "audio_convert": 5,
        "audio_extract": 2,
        "image_resize": 1,
        "image_convert": 1,
        "progress": 1,
        "queue": 2,
        "upload": 1,
        "tus upload": 1,
        "url import": 1,
        "end to end": 1,
        "status polling": 1,
        "video_trim": 3,
        "video_thumbnail": 1,
        "video_to_gif": 1,
        "audio_normalize": 1,
        "video_compress to": 1,
        "target size": 1,
        "webhook": 2,
        "live progress": 1,
    }
    for prefix, count in expected.items():
        assert len(by_case(results, prefix)) == count, prefix
    for result in results:
        assert result.konvrt, result.case
        assert all(math.isfinite(value) and value >= 0 for value in result.values(KONVRT)), result.case
        if result.case.startswith(("progress", "target size")):
            continue  # judged against limits, not against a baseline
        assert result.baseline, result.case
        assert result.checks, result.case
        assert math.isfinite(result.ratio()), result.case
    for result in by_case(results, "video") + by_case(results, "audio") + by_case(results, "image"):
        # Konvrt's time is the whole processing service's; the service's own share is within it.
        share = next(check for check in result.checks if check.label.startswith("of which the service"))
        assert 0 < share.value < result.median(KONVRT) * 1000, result.case

    assert_baselines_run_the_command_konvrt_runs(bench, results)

    path = tmp_path / "latest.json"
    write_json(results, path, options={"scale": "smoke"})
    written = json.loads(path.read_text())
    assert [entry["case"] for entry in written["results"]] == [result.case for result in results]
    table = format_table(results)
    assert all(result.case[:46] in table for result in results)


def test_progress_case_counts_the_jobs_database_writes(bench):
    [result] = run_cases(bench, ("progress",), log=lambda line: None)

    writes = result.konvrt[0].extra
    # A claim, phase changes and the completion at least; progress writes are a part of the tracker's.
    assert writes["writes"] >= 4
    assert writes["progress_writes"] <= writes["tracker_writes"] <= writes["writes"]


def assert_baselines_run_the_command_konvrt_runs(bench: Bench, results: list[Result]) -> None:
    """The video and audio cases time, as their baseline, the very command Konvrt ran, and audio
    that fits the output is copied. (Checked on the full smoke run's results: running those cases
    again for it took a fifth of the suite's bench time.)"""
    assert set(bench.commands) == {case.name for case in (*VIDEO_CASES, *AUDIO_CASES)}
    for command in bench.commands.values():
        assert "-progress" not in command
        # The bench's own input, not the job's link to its stored copy (gone with the workspace).
        source = command[command.index("-i") + 1]
        assert source.startswith("file:")
        assert Path(source.removeprefix("file:")).parent == bench.media.directory
    copies = [result for result in results if "(copy)" in result.case]
    assert len(copies) == 2
    for result in copies:
        copied = next(check for check in result.checks if check.label.startswith("audio stream copied"))
        assert copied.passed, result.case
        command = bench.commands[result.case]
        assert command[command.index("-c:a") + 1] == "copy"
