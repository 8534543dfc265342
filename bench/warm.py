"""A warm Django process that runs bench functions on request, the way a worker runs jobs: one
process set up once, timed from inside.

Protocol: one JSON object per line on stdin (``{"call": "module.function", "kwargs": {...}}``), one
per line back (``{"ok": result}`` or ``{"error": traceback}``) on a private copy of stdout; anything
else the process prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class WarmProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
        )

    def call(self, call: str, **kwargs: Any) -> Any:
        self.process.stdin.write(json.dumps({"call": call, "kwargs": kwargs}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"The warm bench process died (exit {self.process.wait()}) running {call}.")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{call} failed in the warm bench process:\n{answer['error']}")
        return answer["ok"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def __enter__(self) -> WarmProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import django
    from django.utils.module_loading import import_string

    django.setup()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": import_string(request["call"])(**request["kwargs"])}
        except Exception:
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
