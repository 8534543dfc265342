"""scripts/start_workers_windows.py, the launcher for machines without fork, run here on real
processes: SimpleWorker processes per WORKER_CONFIG, status, a job, a dead worker replaced, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps.operations.enums import OperationStatus
from tests.processors.processes import children_of, is_alive, wait_until, worker_environment

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "scripts" / "start_workers_windows.py"
EXPECTED = {"video-1", "image-1", "image-2", "audio-1", "webhook-1", "webhook-2", "cron", "sweeper"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_launcher_runs_reports_replaces_and_stops_its_workers(storage_root, tmp_path, submit, media):
    run_dir = tmp_path / "workers"
    env = {**worker_environment(storage_root), "WORKER_RUN_DIR": str(run_dir), "WORKER_STOP_GRACE": "30"}
    state_file = run_dir / "windows-launcher.json"

    def launcher(*args: str, **options) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(LAUNCHER), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **options,
        )

    def workers() -> dict[str, int]:
        try:
            return json.loads(state_file.read_text())["workers"]
        except (OSError, ValueError):
            return {}

    orphans: list[int] = []
    running = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "all"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: set(workers()) == EXPECTED, timeout=60)
        first = workers()
        sweeper_log = run_dir / "sweeper.log"
        assert wait_until(lambda: "Sweeper started" in sweeper_log.read_text(errors="replace"), timeout=30)

        status = launcher("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"Workers: running all (launcher pid {running.pid})" in status.stdout
        # Each status runs manage.py: ask again only while the first answer shows a worker not yet idle.
        assert status.stdout.count(": idle") == 6 or wait_until(
            lambda: launcher("status").stdout.count(": idle") == 6, timeout=30
        )

        operation = submit("image_convert", media.png(), {"output_format": "webp"})
        assert wait_until(
            lambda: operation.refresh_from_db() or operation.status == OperationStatus.COMPLETED, timeout=60
        ), operation.status

        # A worker killed outright (the OOM killer) leaves RQ's scheduler process it forked behind.
        orphans = children_of(first["audio-1"])
        os.kill(first["audio-1"], signal.SIGKILL)
        assert wait_until(lambda: workers().get("audio-1") not in (None, first["audio-1"]), timeout=30)

        assert launcher("all").returncode == 1  # one launcher per run directory

        stopped = launcher("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        output, _ = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
        for orphan in orphans:
            if is_alive(orphan):
                os.kill(orphan, signal.SIGKILL)

    assert running.returncode == 0, output
    assert not any(is_alive(pid) for pid in [*first.values(), *workers().values()])
    assert not state_file.exists()
    assert launcher("status").returncode == 3
