"""``make run``: the whole of Konvrt on one machine, in the foreground.

Migrates, then runs the web server and the workers as child processes, with a private
redis-server when REDIS_URL does not answer, SQLite when DATABASE_URL is unset and local storage
when Cloudinary is off. Ctrl-C or SIGTERM stops everything it started.

The web server is the Procfile's (gunicorn with config/gunicorn.py) with production's settings and
DEBUG off (config/settings/local.py: plain HTTP on this machine), so that what runs here is what
deploys. Without SECRET_KEY a random one is created once and kept under the storage root.
``make dev`` (``--dev``, or DJANGO_DEBUG=true) runs Django's development server with DEBUG on instead.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from embedded_redis import ensure_redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_KEY_FILE = ".secret_key"
TRUE = {"1", "true", "yes", "on"}


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


def storage_root() -> Path:
    return Path(os.environ.get("STORAGE_ROOT") or ROOT / "storage").resolve()


def local_secret_key(root: Path) -> str:
    """The key kept in ``root/.secret_key``, created (readable by its owner only) when missing."""
    path = root / SECRET_KEY_FILE
    if path.is_file() and len(key := path.read_text().strip()) >= 50:
        return key
    root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


def development_mode(argv: list[str]) -> bool:
    return "--dev" in argv or os.environ.get("DJANGO_DEBUG", "").strip().lower() in TRUE


def web_command(host: str, port: str, *, dev: bool) -> list[str]:
    """Django's development server with --dev; else the Procfile's gunicorn (uvicorn alone where
    there is no fork, i.e. Windows, which gunicorn does not run on)."""
    if dev:
        return manage("runserver", f"{host}:{port}", "--noreload")
    if can_fork():
        return [str(Path(PYTHON).with_name("gunicorn")), "--config", str(ROOT / "config" / "gunicorn.py")]
    return [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", port]


def main(argv: list[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env", override=False)
    dev = development_mode(sys.argv[1:] if argv is None else argv)
    if dev:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
        if not os.environ.get("SECRET_KEY"):
            os.environ["SECRET_KEY"] = local_secret_key(storage_root())
    host = os.environ.setdefault("HOST", "127.0.0.1")
    port = os.environ.setdefault("PORT", "8000")
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
        children.append(subprocess.Popen(web_command(host, port, dev=dev), cwd=ROOT))
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
