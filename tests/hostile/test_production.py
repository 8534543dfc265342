"""Production settings leak nothing: no stack trace in a response, no credential in a response or
a log line, cookies only over HTTPS, and browsers told not to guess content types.

The production settings module is loaded in a fresh interpreter whose DATABASE_URL, REDIS_URL and
CLOUDINARY_URL all carry a password: the database accepts it (the test server trusts local
connections, the password is only along for the ride), Redis and Cloudinary are unreachable, so
the health check has failures to describe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.config.test_env import PRODUCTION_ENV

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"database": "Db-S3cret-pw", "redis": "R3dis-S3cret-pw", "cloudinary": "Cl0ud-S3cret-key"}


_RUNS: dict[str, dict] = {}


@pytest.fixture
def production(db) -> dict:
    """What the production client saw and logged; run once for the module (on the test database,
    whose name is only known once a test holds it)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs the PostgreSQL test database (DATABASE_URL)")
    database = connection.settings_dict
    if database["NAME"] not in _RUNS:
        _RUNS[database["NAME"]] = _run_production_client(
            f"postgres://{database['USER'] or 'postgres'}:{SECRETS['database']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        )
    return _RUNS[database["NAME"]]


def _run_production_client(database_url: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in {"SECRET_KEY", "DEBUG"}}
    env.update(
        PRODUCTION_ENV,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DATABASE_URL=database_url,
        REDIS_URL=f"redis://:{SECRETS['redis']}@127.0.0.1:1/0",
        USE_CLOUDINARY="true",
        CLOUDINARY_URL=f"cloudinary://123456789:{SECRETS['cloudinary']}@konvrt-test?upload_prefix=http://127.0.0.1:1",
        LOG_LEVEL="DEBUG",
    )
    run = subprocess.run(
        [sys.executable, "-m", "tests.hostile.production_client"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return {**json.loads(run.stdout), "logs": run.stderr}


def test_no_credential_reaches_a_response_or_a_log_line(production):
    everything = json.dumps(production)
    for name, secret in SECRETS.items():
        assert secret not in everything, f"the {name} password leaked"
    assert production["logs"], "the run logged nothing: the check above would prove nothing"


def test_the_health_check_says_what_failed_without_credentials(production):
    health = production["health"]
    body = json.loads(health["body"])

    assert health["status"] == 503
    checks = body["data"]["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False and "ConnectionError" in checks["redis"]["error"]
    assert checks["cloudinary"]["ok"] is False and checks["cloudinary"]["error"].startswith("StorageError")


def test_an_unhandled_error_answers_the_envelope_without_a_traceback(production):
    unhandled = production["unhandled"]
    body = json.loads(unhandled["body"])

    assert unhandled["status"] == 500
    assert body == {
        "success": False,
        "error": {
            "code": "internal_error",
            "message": "Something went wrong on our side. Please try again later.",
            "details": {},
        },
    }
    assert "Traceback" in production["logs"]  # operators still get it, in the logs


def test_cookies_are_secure_and_responses_are_not_sniffed(production):
    session = production["session"]

    assert session["status"] == 200
    (cookie,) = [cookie for cookie in session["cookies"] if cookie.startswith("sessionid=")]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert session["headers"]["X-Content-Type-Options"] == "nosniff"
    assert session["headers"]["Strict-Transport-Security"].startswith("max-age=")
