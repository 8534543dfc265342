"""A small HTTP client for the bench (the standard library's, so the smoke test needs nothing more)."""

from __future__ import annotations

import http.client
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SEND_CHUNK = 1024 * 1024


def _connection(base: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(base)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def get_json(base: str, path: str, *, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
    connection = _connection(base, timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def session_key(base: str) -> str:
    status, body = get_json(base, "/api/v1/session/")
    if status != 200:
        raise RuntimeError(f"GET /api/v1/session/ answered {status}: {body}")
    return body["data"]["session_key"]


def post_file(
    base: str,
    path: str,
    *,
    file: Path,
    fields: dict[str, str],
    headers: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, Any]:
    """POST multipart/form-data with ``file`` streamed from disk (never held in memory whole)."""
    boundary = uuid.uuid4().hex
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + file.stat().st_size + len(tail)
    connection = _connection(base, timeout)
    try:
        connection.putrequest("POST", path)
        for name, value in {
            **(headers or {}),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(head)
        with file.open("rb") as source:
            while chunk := source.read(SEND_CHUNK):
                connection.send(chunk)
        connection.send(tail)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()
