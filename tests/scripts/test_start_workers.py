"""scripts/start_workers.sh on real processes and the test's Redis: start, status, a job processed by
the pools, restart, warm and cold stop, and the foreground mode the Procfile uses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from tests.processors.processes import (
    children_of,
    descendants,
    ffmpeg_processes_under,
    is_alive,
    wait_until,
    worker_environment,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "start_workers.sh"
GROUPS = {"video": 1, "image": 2, "audio": 1, "webhook": 2, "cron": 0}  # group → pool size (cron is one process)

# Tests with real worker processes are transactional: the workers must see the test's rows.


@pytest.fixture
def fleet(storage_root, tmp_path):
    """Run the script against this test's database, storage and Redis; stop whatever it started."""
    run_dir = tmp_path / "workers"
    env = {**worker_environment(storage_root), "WORKER_RUN_DIR": str(run_dir), "WORKER_STOP_GRACE": "60"}

    def script(*args: str, grace: int | None = None) -> subprocess.CompletedProcess:
        run_env = env if grace is None else {**env, "WORKER_STOP_GRACE": str(grace)}
        return subprocess.run(
            ["bash", str(SCRIPT), *args], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=180
        )

    script.run_dir = run_dir
    script.env = env
    yield script
    script("stop", grace=5)


def pid_of(run_dir: Path, group: str) -> int:
    return int((run_dir / f"{group}.pid").read_text().split()[0])


def wait_for(operation: Operation, *statuses: str, timeout: float = 60) -> None:
    assert wait_until(lambda: operation.refresh_from_db() or operation.status in statuses, timeout=timeout), (
        operation.status
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_start_status_process_restart_and_stop(fleet, submit, media):
    started = fleet("all")

    assert started.returncode == 0, started.stderr
    pids = {group: pid_of(fleet.run_dir, group) for group in GROUPS}
    for group, size in GROUPS.items():
        assert is_alive(pids[group])
        # The pool's children are its workers (a worker holding RQ's scheduler lock has a child too).
        assert wait_until(lambda: len(children_of(pids[group])) == size, timeout=60), group  # noqa: B023

    status = fleet("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for group in GROUPS:
        assert f"{group}: running (pid {pids[group]}" in status.stdout
    assert "image_queue: 0 waiting, 0 scheduled for retry, 2 workers (configured here: 2)" in status.stdout
    assert status.stdout.count(": idle") + status.stdout.count(": busy") == 6

    # The pools process real jobs (KonvrtWorker forks a work-horse per job).
    operation = submit("image_convert", media.png(), {"output_format": "jpg"})
    wait_for(operation, OperationStatus.COMPLETED, OperationStatus.FAILED)
    assert operation.status == OperationStatus.COMPLETED, operation.error_message

    restarted = fleet("restart", "image")
    assert restarted.returncode == 0, restarted.stderr
    new_image = pid_of(fleet.run_dir, "image")
    assert new_image != pids["image"] and not is_alive(pids["image"])
    assert is_alive(pids["video"])  # the other pools were left alone

    stopped = fleet("stop")

    assert stopped.returncode == 0, stopped.stderr
    every_process = [*pids.values(), new_image]
    assert not any(is_alive(pid) for pid in every_process)
    assert not list(fleet.run_dir.glob("*.pid"))
    after = fleet("status")
    assert after.returncode == 3
    assert "video: not running" in after.stdout


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_warm_stop_lets_the_running_job_finish(fleet, submit, media):
    operation = submit("video_compress", media.video(duration=30), {"preset": "slow"})
    assert fleet("video").returncode == 0
    wait_for(operation, OperationStatus.PROCESSING)

    stopped = fleet("stop", "video")

    assert stopped.returncode == 0, stopped.stderr
    operation.refresh_from_db()
    assert operation.status == OperationStatus.COMPLETED, operation.error_message


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stop_past_its_grace_period_stops_the_job_and_its_ffmpeg(fleet, submit, media):
    operation = submit("video_compress", media.video(duration=30), {"preset": "veryslow", "quality": 18})
    assert fleet("video").returncode == 0
    pool = pid_of(fleet.run_dir, "video")
    encoders = wait_until(lambda: ffmpeg_processes_under(pool), timeout=60)
    assert encoders
    running = [*descendants(pool), pool]
    assert set(encoders) <= set(running)

    stopped = fleet("stop", "video", grace=1)

    assert stopped.returncode == 0, stopped.stderr
    assert "stopping them" in stopped.stdout
    assert wait_until(lambda: not any(is_alive(pid) for pid in running), timeout=10)
    operation.refresh_from_db()
    assert operation.status != OperationStatus.COMPLETED


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_foreground_mode_runs_everything_until_sigterm(fleet):
    launcher = subprocess.Popen(
        ["bash", str(SCRIPT), "run"],
        cwd=ROOT,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: all((fleet.run_dir / f"{group}.pid").exists() for group in GROUPS), timeout=60)
        assert wait_until(lambda: len(descendants(launcher.pid)) >= 4, timeout=30)
        pids = [pid_of(fleet.run_dir, group) for group in GROUPS]

        launcher.send_signal(signal.SIGTERM)
        output, _ = launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            launcher.kill()

    assert launcher.returncode == 0, output
    assert not any(is_alive(pid) for pid in pids)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_unknown_action_prints_the_usage(fleet):
    result = fleet("launch")

    assert result.returncode == 2
    assert "scripts/start_workers.sh all" in result.stderr


def test_the_procfile_migrates_on_release_and_starts_the_worker_fleet():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())

    assert lines["release"] == "python manage.py migrate --noinput"
    # The web tier: gunicorn with its configuration (uvicorn workers, config/gunicorn.py).
    assert lines["web"] == "gunicorn --config config/gunicorn.py"
    assert lines["worker"] == "bash scripts/start_workers.sh run"
    assert os.access(SCRIPT, os.X_OK)


def start_time_of(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat, as the script records it."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to read process start times")
def test_a_pid_file_is_taken_only_for_the_process_that_wrote_it(fleet):
    """A restarted host (fresh pid namespace, same run directory) hands the pids of the old pid
    files to other processes: another group's pool, or a process with the right command that is
    not the one the file was written for."""
    fleet.run_dir.mkdir(parents=True)

    def impostor(*argv: str) -> subprocess.Popen:
        # A sleeping Python whose command line reads like a worker's (ps shows sys.argv).
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv])  # noqa: S603

    other_group = impostor("manage.py", "rqworker-pool", "video_queue", "--num-workers", "1")
    same_command = impostor("manage.py", "rqworker-pool", "audio_queue", "--num-workers", "1")
    genuine = impostor("manage.py", "rqworker-pool", "image_queue", "--num-workers", "2")
    try:
        assert wait_until(
            lambda: all(Path(f"/proc/{p.pid}/stat").exists() for p in (other_group, same_command, genuine)), timeout=5
        )
        # cron's old file names the pid now held by a video pool.
        (fleet.run_dir / "cron.pid").write_text(f"{other_group.pid} {start_time_of(other_group.pid)}\n")
        # audio's old file names a pid that an audio pool holds, but one started at another time.
        (fleet.run_dir / "audio.pid").write_text(f"{same_command.pid} {int(start_time_of(same_command.pid)) - 1}\n")
        # A file from before start times were recorded: the pid alone proves nothing.
        (fleet.run_dir / "video.pid").write_text(f"{other_group.pid}\n")
        (fleet.run_dir / "image.pid").write_text(f"{genuine.pid} {start_time_of(genuine.pid)}\n")

        status = fleet("status")

        assert "cron: not running" in status.stdout
        assert "audio: not running" in status.stdout
        assert "video: not running" in status.stdout
        assert f"image: running (pid {genuine.pid}" in status.stdout
        assert sorted(path.name for path in fleet.run_dir.glob("*.pid")) == ["image.pid"]
    finally:
        (fleet.run_dir / "image.pid").unlink(missing_ok=True)
        for process in (other_group, same_command, genuine):
            process.kill()
            process.wait()
