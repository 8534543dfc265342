"""The worker processes `make run` starts, derived from WORKER_CONFIG (scripts/run_local.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import run_local  # noqa: E402


def arguments(command: list[str]) -> list[str]:
    assert command[:2] == [sys.executable, str(run_local.ROOT / "manage.py")]
    return command[2:]


def test_with_fork_each_group_is_one_pool_of_its_size_plus_the_cron_scheduler():
    commands = [arguments(command) for command in run_local.worker_commands(forking=True)]

    expected = [
        [
            "rqworker-pool",
            worker["queue"],
            "--num-workers",
            str(worker["count"]),
            "--worker-class",
            run_local.FORKING_WORKER,
        ]
        for worker in settings.WORKER_CONFIG.values()
    ]
    assert commands == [*expected, ["rqcron", "config/cron.py"]]
    assert [command[1] for command in commands[:3]] == ["video_queue", "image_queue", "audio_queue"]


@pytest.mark.parametrize("group", ["video", "image", "audio"])
def test_without_fork_each_worker_is_a_simple_worker_with_its_ttl_and_the_scheduler(group):
    worker = settings.WORKER_CONFIG[group]

    commands = [arguments(command) for command in run_local.group_commands(group, forking=False)]

    assert len(commands) == worker["count"]
    for command in commands:
        assert command == [
            "rqworker",
            worker["queue"],
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--worker-ttl",
            str(worker["worker_ttl"]),
            "--with-scheduler",
        ]
