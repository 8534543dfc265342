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


def worker_commands() -> list[list[str]]:
    """One worker process serving every queue, with RQ's scheduler for retry delays."""
    return [manage("rqworker", "video_queue", "image_queue", "audio_queue", "--with-scheduler")]


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
