"""``make run``: the whole of Konvrt on one machine, in the foreground.

Migrates, then runs the web server and the workers as child processes, with a private
redis-server when REDIS_URL does not answer, SQLite when DATABASE_URL is unset and local storage
when Cloudinary is off. Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from embedded_redis import ensure_redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def manage(*args: str) -> list[str]:
    return [PYTHON, str(ROOT / "manage.py"), *args]


# Konvrt's forking worker: worker_ttl from WORKER_CONFIG, heavy imports preloaded, killed
# work-horses handled (see apps/operations/worker.py).
FORKING_WORKER = "apps.operations.worker.KonvrtWorker"
CRON_CONFIG = "config/cron.py"


def can_fork() -> bool:
    return hasattr(os, "fork")


def worker_config() -> dict[str, dict]:
    # rq_settings reads only the environment: no Django set-up needed to know the fleet.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from config.settings.rq_settings import WORKER_CONFIG

    return WORKER_CONFIG


def group_commands(group: str, *, forking: bool | None = None) -> list[list[str]]:
    """The processes that serve one WORKER_CONFIG group.

    Where fork exists: one ``rqworker-pool`` of ``count`` forking workers (RQ's WorkerPool restarts a
    worker that dies, and runs RQ's scheduler in its workers for retry delays). Elsewhere (Windows):
    ``count`` ``rqworker`` processes with RQ's SimpleWorker, each with the group's worker_ttl, and the
    scheduler enabled (RQ's scheduler lock lets only one of them act at a time).
    """
    worker = worker_config()[group]
    if forking if forking is not None else can_fork():
        return [
            manage(
                "rqworker-pool",
                worker["queue"],
                "--num-workers",
                str(worker["count"]),
                "--worker-class",
                FORKING_WORKER,
            )
        ]
    return [
        manage(
            "rqworker",
            worker["queue"],
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--worker-ttl",
            str(worker["worker_ttl"]),
            "--with-scheduler",
        )
        for _ in range(worker["count"])
    ]


def cron_command() -> list[str]:
    """RQ's cron scheduler for the periodic jobs in config/cron.py: one per machine."""
    return manage("rqcron", CRON_CONFIG)


def worker_commands(*, forking: bool | None = None) -> list[list[str]]:
    """Every worker group of WORKER_CONFIG, and the cron scheduler."""
    commands = [command for group in worker_config() for command in group_commands(group, forking=forking)]
    return [*commands, cron_command()]


def main() -> int:
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env", override=False)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    with ensure_redis():
        if subprocess.call(manage("migrate", "--noinput", "-v", "0")) != 0:
            print("Migrations failed; not starting.", file=sys.stderr)
            return 1
        children.append(subprocess.Popen(manage("runserver", f"{host}:{port}", "--noreload")))
        children.extend(subprocess.Popen(command) for command in worker_commands())
        print(f"\nKonvrt is running at http://{host}:{port}/  (API: /api/v1/, docs: /api/docs/)")
        print("Press Ctrl-C to stop.\n", flush=True)
        try:
            while not stopping:
                if any(child.poll() is not None for child in children):
                    print("A Konvrt process exited; stopping the others.", file=sys.stderr)
                    break
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
