"""Settings read from the environment: strict parsing, clear errors naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env_bool, env_int, env_list, env_networks, env_rate, env_size, env_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("1", True), ("Yes", True), ("off", False), ("0", False)]
)
def test_env_bool_accepts_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("KONVRT_FLAG", raw)
    assert env_bool("KONVRT_FLAG", not expected) is expected


def test_env_bool_rejects_a_typo_naming_the_variable(monkeypatch):
    monkeypatch.setenv("KONVRT_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="KONVRT_FLAG"):
        env_bool("KONVRT_FLAG", False)


def test_env_bool_uses_default_when_unset(monkeypatch):
    monkeypatch.delenv("KONVRT_FLAG", raising=False)
    assert env_bool("KONVRT_FLAG", True) is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1048576", 1048576), ("500MB", 500 * 1024**2), ("25m", 25 * 1024**2), ("1G", 1024**3), ("64k", 65536)],
)
def test_env_size_understands_units(monkeypatch, raw, expected):
    monkeypatch.setenv("KONVRT_SIZE", raw)
    assert env_size("KONVRT_SIZE", 1) == expected


@pytest.mark.parametrize("raw", ["lots", "-5", "10 parsecs", "0"])
def test_env_size_rejects_nonsense(monkeypatch, raw):
    monkeypatch.setenv("KONVRT_SIZE", raw)
    with pytest.raises(ImproperlyConfigured, match="KONVRT_SIZE"):
        env_size("KONVRT_SIZE", 1)


def test_env_int_enforces_minimum(monkeypatch):
    monkeypatch.setenv("KONVRT_DAYS", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("KONVRT_DAYS", 7, minimum=1)
    monkeypatch.setenv("KONVRT_DAYS", "seven")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        env_int("KONVRT_DAYS", 7)


def test_env_list_splits_and_trims(monkeypatch):
    monkeypatch.setenv("KONVRT_HOSTS", " a.example , b.example,, ")
    assert env_list("KONVRT_HOSTS", []) == ["a.example", "b.example"]


def test_env_networks_takes_cidrs_and_bare_addresses(monkeypatch):
    monkeypatch.setenv("OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/8, 192.168.1.5 ,fd00::/8")
    assert env_networks("OUTBOUND_ALLOWED_NETWORKS", []) == ["10.0.0.0/8", "192.168.1.5", "fd00::/8"]


def test_env_networks_rejects_a_typo_naming_the_variable(monkeypatch):
    monkeypatch.setenv("OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ImproperlyConfigured, match="OUTBOUND_ALLOWED_NETWORKS"):
        env_networks("OUTBOUND_ALLOWED_NETWORKS", [])


def test_env_url_rejects_wrong_scheme(monkeypatch):
    monkeypatch.setenv("KONVRT_REDIS", "http://localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        env_url("KONVRT_REDIS", None, schemes=("redis",))


def test_env_rate_accepts_drf_rates_only(monkeypatch):
    monkeypatch.setenv("KONVRT_RATE", "100/minute")
    assert env_rate("KONVRT_RATE", "1/day") == "100/minute"
    monkeypatch.setenv("KONVRT_RATE", "lots")
    with pytest.raises(ImproperlyConfigured, match="KONVRT_RATE"):
        env_rate("KONVRT_RATE", "1/day")


# --- whole settings modules, loaded in a fresh interpreter -----------------------------------------
PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "a-real-production-secret-key-of-enough-length-0123456789",
    "ALLOWED_HOSTS": "konvrt.example.com",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
}


def run_django(args: list[str], env: dict[str, str], settings_module: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    clean.update(env, DJANGO_SETTINGS_MODULE=settings_module)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_to_start_without_secret_key():
    result = run_django(["check"], {}, "config.settings.production")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_the_development_key():
    result = run_django(
        ["check"], {"SECRET_KEY": "django-insecure-konvrt-development-key-do-not-use"}, "config.settings.production"
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_check_deploy_gives_no_warnings():
    result = run_django(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV, "config.settings.production")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_a_bad_boolean_stops_startup_with_the_variable_name():
    result = run_django(["check"], {"USE_CLOUDINARY": "maybe"}, "config.settings.development")
    assert result.returncode != 0
    assert "USE_CLOUDINARY must be a boolean" in result.stderr


def test_cloudinary_enabled_without_credentials_is_a_clear_error():
    env = {"USE_CLOUDINARY": "true", "CLOUDINARY_URL": "", "CLOUDINARY_CLOUD_NAME": "demo"}
    result = run_django(["check"], env, "config.settings.development")
    assert result.returncode != 0
    assert "CLOUDINARY_API_KEY" in result.stderr


def test_size_limits_come_from_the_environment():
    code = "from django.conf import settings; print(settings.MAX_FILE_SIZE['image'])"
    result = run_django(["shell", "-c", code], {"MAX_FILE_SIZE_IMAGE": "5MB"}, "config.settings.development")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(5 * 1024 * 1024)


def test_worker_config_matches_the_original():
    from django.conf import settings

    # The original's queues, timeouts and counts; its worker_ttl (600/180/360 s) is 30 s for every
    # group, so that a lost machine's workers stop counting within 90 s (rq_settings.WORKER_TTL).
    assert settings.WORKER_CONFIG == {
        "video": {"queue": "video_queue", "timeout": 1800, "count": 1, "worker_ttl": 30},
        "image": {"queue": "image_queue", "timeout": 60, "count": 2, "worker_ttl": 30},
        "audio": {"queue": "audio_queue", "timeout": 300, "count": 1, "worker_ttl": 30},
        "webhook": {"queue": "webhook_queue", "timeout": 60, "count": 2, "worker_ttl": 30},
    }
    assert set(settings.RQ_QUEUES) == {"video_queue", "image_queue", "audio_queue", "webhook_queue"}
    assert settings.RQ_QUEUES["video_queue"]["DEFAULT_TIMEOUT"] == 1800


def test_env_int_list_reads_comma_separated_numbers_and_names_the_variable_when_wrong(monkeypatch):
    from config.settings.env import env_int_list

    monkeypatch.setenv("KONVRT_DELAYS", " 10, 60 ,300")
    assert env_int_list("KONVRT_DELAYS", [1]) == [10, 60, 300]
    monkeypatch.setenv("KONVRT_DELAYS", "10,soon")
    with pytest.raises(ImproperlyConfigured, match="KONVRT_DELAYS must be whole numbers"):
        env_int_list("KONVRT_DELAYS", [1])
    monkeypatch.setenv("KONVRT_DELAYS", "10,0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int_list("KONVRT_DELAYS", [1], minimum=1)
    monkeypatch.delenv("KONVRT_DELAYS")
    assert env_int_list("KONVRT_DELAYS", [1, 2]) == [1, 2]


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ=", "whsec_not base64!"])
def test_a_webhook_secret_that_is_not_whsec_and_24_to_64_bytes_stops_the_process(secret):
    result = run_django(["check"], {"WEBHOOK_SECRET": secret}, "config.settings.development")

    assert result.returncode != 0
    assert "WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 to 64 random bytes" in result.stderr
