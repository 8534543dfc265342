"""Helpers for API tests: uploading real media, operations in the state a test needs, a Redis of
the test's own that it can stop, and validation of responses against the published OpenAPI schema."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.processors.formats import mime_type_for_extension
from apps.processors.registry import get_operation
from apps.storage.backend import get_storage
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


@pytest.fixture
def make_operation(media, storage_root, tmp_path) -> Callable[..., Operation]:
    """An operation of a session in a given state, with its input (and for a completed one its
    output) really stored."""

    def make(
        session_key: str,
        *,
        operation: str = "video_compress",
        status: OperationStatus = OperationStatus.QUEUED,
        original_name: str = "holiday.mov",
        source: Path | None = None,
        **fields: Any,
    ) -> Operation:
        definition = get_operation(operation)
        source = source or media.video(extension="mov", duration=0.5)
        now = timezone.now()
        if status in OperationStatus.terminal():
            fields.setdefault("completed_at", now)
            fields.setdefault("expires_at", now + timedelta(days=7))
        if status == OperationStatus.PROCESSING:
            fields.setdefault("started_at", now)
        instance = Operation.objects.create(
            session_key=session_key, operation=operation, status=status, parameters={}, **fields
        )
        storage = get_storage()
        extension = source.suffix.lstrip(".")
        stored = storage.save_upload(
            operation_id=instance.id, source=source, extension=extension, media_type=definition.media_type
        )
        File.objects.create(
            operation=instance,
            file_type=FileType.INPUT,
            file_path=stored.key,
            file_name=original_name,
            file_size=stored.size,
            mime_type=mime_type_for_extension(extension),
            metadata={"duration": 0.5},
        )
        if status == OperationStatus.COMPLETED:
            output_extension = definition.output_formats[0]
            result = tmp_path / f"result-{instance.id}.{output_extension}"
            shutil.copyfile(source, result)
            stored_output = storage.save_output(
                operation_id=instance.id,
                local_path=result,
                extension=output_extension,
                media_type=definition.media_type,
            )
            File.objects.create(
                operation=instance,
                file_type=FileType.OUTPUT,
                file_path=stored_output.key,
                # Named the way the worker names a result.
                file_name=definition.output_file_name(original_name=original_name, extension=output_extension),
                file_size=stored_output.size,
                mime_type=mime_type_for_extension(output_extension),
            )
        return Operation.objects.prefetch_related("files").get(id=instance.id)

    return make


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
        body = b"".join(response.streaming_content) if response.streaming else response.content
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
