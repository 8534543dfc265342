"""What the cases run on: the database, Redis, storage and inputs, and the Konvrt processes the
bench starts (gunicorn as in the Procfile, a KonvrtWorker, warm processes)."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.media import SCALES, BenchMedia
from bench.procfs import children_of
from bench.warm import REPO, WarmProcess

# Load tests need limits no client reaches; production's defaults would answer 429 within a second.
RAISED_THROTTLES = {
    "THROTTLE_ANON_BURST": "100000000/minute",
    "THROTTLE_ANON_SUSTAINED": "100000000/day",
    "THROTTLE_UPLOADS": "100000000/hour",
    "THROTTLE_STATUS_CHECKS": "100000000/minute",
}
WORKER_CLASS = "apps.operations.worker.KonvrtWorker"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, *, process: subprocess.Popen, timeout: float = 60.0) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening on {port}.")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Nothing listened on port {port} within {timeout:.0f} s.")


def stop(process: subprocess.Popen, *, timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Bench:
    work: Path  # inputs, outputs and logs of this run
    storage_root: Path
    database_url: str
    redis_url: str
    scale: str = "full"
    repeats: int = 3
    other_ffmpeg: str | None = None
    settings_module: str = "bench.settings"
    web_concurrency: int = 2
    media: BenchMedia = field(init=False)
    secret_key: str = field(init=False, default_factory=lambda: secrets.token_urlsafe(50))
    # The FFmpeg commands the processing cases captured, by case name (for the build comparison).
    commands: dict[str, list[str]] = field(init=False, default_factory=dict)
    # Run-wide notes for the report (a case skipped, a tool missing).
    notes: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.media = BenchMedia(self.work / "media", SCALES[self.scale])
        for directory in (self.outputs, self.logs, self.storage_root):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def outputs(self) -> Path:
        return self.work / "outputs"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def smoke(self) -> bool:
        return self.scale == "smoke"

    @property
    def warmup(self) -> bool:
        """Whether a case runs each side once unmeasured first. Not in a smoke run, which checks that
        every case runs and reports, not its figures."""
        return not self.smoke

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every Konvrt process the bench starts."""
        return {
            **os.environ,
            **RAISED_THROTTLES,
            "DJANGO_SETTINGS_MODULE": self.settings_module,
            "SECRET_KEY": self.secret_key,
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "STORAGE_ROOT": str(self.storage_root),
            "TEMP_ROOT": str(self.storage_root / "temp"),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
            **extra,
        }

    def warm(self) -> WarmProcess:
        return WarmProcess(self.env())

    def output_dir(self) -> Path:
        directory = self.outputs / uuid.uuid4().hex[:12]
        directory.mkdir(parents=True)
        return directory

    def clean_outputs(self) -> None:
        shutil.rmtree(self.outputs, ignore_errors=True)
        self.outputs.mkdir(parents=True)

    # --- Konvrt's processes -------------------------------------------------------------------
    def start_web(self, *, concurrency: int | None = None) -> WebServer:
        """The Procfile's web command (gunicorn with config/gunicorn.py; workers from WEB_CONCURRENCY)."""
        port = free_port()
        log = (self.logs / "gunicorn.log").open("ab")
        process = subprocess.Popen(
            procfile_web_command(),
            env=self.env(WEB_CONCURRENCY=str(concurrency or self.web_concurrency), HOST="127.0.0.1", PORT=str(port)),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(port, process=process)
        return WebServer(process=process, port=port)

    def start_worker(self, *queues: str) -> subprocess.Popen:
        """One KonvrtWorker (RQ's forking worker as Konvrt runs it) on ``queues``, registered and idle."""
        (process,) = self.start_workers(1, *queues)
        return process

    def start_workers(self, count: int, *queues: str) -> list[subprocess.Popen]:
        """``count`` KonvrtWorkers on ``queues``, started together; returns once every one of them is
        registered and idle."""
        import django_rq
        from rq import Worker

        connection = django_rq.get_queue(queues[0]).connection
        before = {worker.name for worker in Worker.all(connection=connection)}
        processes = []
        for _ in range(count):
            log = (self.logs / "worker.log").open("ab")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "rqworker", *queues, "--worker-class", WORKER_CLASS],
                    env=self.env(),
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            for process in processes:
                if process.poll() is not None:
                    for other in processes:
                        stop(other)
                    raise RuntimeError(f"A bench worker exited with {process.returncode}; see {self.logs}/worker.log.")
            started = [w for w in Worker.all(connection=connection) if w.name not in before]
            if len(started) >= count and all(worker.get_state() == "idle" for worker in started):
                return processes
            time.sleep(0.1)
        for process in processes:
            stop(process)
        raise RuntimeError(f"The bench workers did not register within 60 s ({count} started).")


def procfile_web_command() -> list[str]:
    """The Procfile's web command, with this virtualenv's executables."""
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            words = shlex.split(command)
            return [str(Path(sys.executable).with_name(words[0])), *words[1:]]
    raise RuntimeError("The Procfile has no web process.")


@dataclass
class WebServer:
    process: subprocess.Popen
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def stop(self) -> None:
        stop(self.process)
