"""schemathesis: requests generated from the project's own OpenAPI schema (/api/schema/), sent to the
Procfile's web server; every response must match the schema, and none may be a 500.

Bounded: a few examples per operation (SCHEMATHESIS_MAX_EXAMPLES, default 3), a time budget
(SCHEMATHESIS_MAX_TIME, default 20 s) and a fixed seed (SCHEMATHESIS_SEED), so that a failure can be
replayed; raise them locally to search harder. Configuration: tests/serving/schemathesis.toml.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.serving.conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_nothing(web_server: WebServer, tmp_path):
    with urllib.request.urlopen(f"{web_server.base}/api/v1/session/", timeout=10) as response:
        key = response.headers["X-Session-Key"]
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{web_server.base}/api/schema/",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "3"),
        # Stateful sequences (create, then act on the id) take longer than the suite can afford and
        # need real media to get past the create; tests/api covers those sequences with real files.
        "--phases",
        os.environ.get("SCHEMATHESIS_PHASES", "examples,coverage,fuzzing"),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "20261203"),
        "--workers",
        "1",
        "--header",
        f"X-Session-Key: {key}",
        "--request-timeout",
        "30",
        # The fuzzing phase stops at this budget (the coverage phase, which enumerates each
        # parameter's boundary and invalid values, takes about 7 s of it).
        "--max-time",
        os.environ.get("SCHEMATHESIS_MAX_TIME", "20"),
        "--report-dir",
        str(tmp_path),
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)

    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
