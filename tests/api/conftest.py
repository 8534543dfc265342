"""Helpers for API tests: uploading real media, a Redis of the test's own that it can stop, and
validation of responses against the published OpenAPI schema. Every API test runs on a clean Redis
(rate limits are counted there). Operations in a given state come from ``make_operation``
(``tests/factories.py``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from scripts.embedded_redis import free_port, start_redis_server

API = "/api/v1"


def session_key_of(client: Client) -> str:
    """The client's session key (creating the session on first use)."""
    return client.get(f"{API}/session/")["X-Session-Key"]


def upload(
    client: Client,
    path: Path,
    *,
    operation: str,
    parameters: Any = None,
    name: str | None = None,
    headers: dict[str, str] | None = None,
):
    data: dict[str, Any] = {
        "operation": operation,
        "file": SimpleUploadedFile(name or path.name, path.read_bytes()),
    }
    if parameters is not None:
        data["parameters"] = parameters if isinstance(parameters, str) else json.dumps(parameters)
    return client.post(f"{API}/operations/", data, headers=headers or {})


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.fixture(autouse=True)
def _clean_redis(redis_connection) -> None:
    """Every API request reaches Redis (rate limits), also through a ``Client()`` of the test's own."""


# --- a Redis the test can stop --------------------------------------------------------------------
@dataclass
class OwnRedis:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(settings) -> Iterator[OwnRedis]:
    """A redis-server of this test's own, serving the queues and the cache (throttle counters)."""
    port = free_port()
    server = OwnRedis(url=f"redis://127.0.0.1:{port}/0", process=start_redis_server(port))
    settings.RQ_QUEUES = {name: {**config, "URL": server.url} for name, config in settings.RQ_QUEUES.items()}
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": server.url}}
    yield server
    server.stop()


# --- the published OpenAPI schema -----------------------------------------------------------------
@pytest.fixture(scope="session")
def openapi_spec() -> dict[str, Any]:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture(scope="session")
def openapi(openapi_spec) -> OpenAPI:
    return OpenAPI.from_dict(openapi_spec)


@pytest.fixture
def assert_matches_schema(openapi) -> Callable[[Any], bytes]:
    """Validate a real response (status, headers, body) against the operation the schema
    publishes for its method and path; returns the body (a streamed one is consumed)."""

    def check(response) -> bytes:
        request = response.wsgi_request
        # Iterating the response (not its streaming_content) also reads an async stream (SSE).
        body = b"".join(response) if response.streaming else response.content
        openapi.validate_response(
            MockRequest("http://testserver", request.method, request.path),
            MockResponse(
                body,
                status_code=response.status_code,
                headers=dict(response.headers),
                content_type=response.get("Content-Type", ""),
            ),
        )
        return body

    return check
