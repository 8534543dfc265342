"""ASGI entry point of the web tier: gunicorn runs it with uvicorn workers (config/gunicorn.py).

Two things differ from Django's own ASGIHandler:

- The request body is spooled into FILE_UPLOAD_TEMP_DIR (the storage disk, not /tmp, which may be
  memory) as an unnamed temporary file: an upload cut off midway leaves nothing behind.
- A body larger than the largest upload limit is refused: by its Content-Length before any of it is
  read (413 in the error envelope), or, when it arrives without one, by closing the connection as it
  passes the limit, so that no client can spool more than an upload may hold.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from dotenv import load_dotenv

# A local .env fills in what the real environment does not set (a PaaS sets real variables).
load_dotenv(Path(__file__).resolve().parent.parent / ".env", override=False)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
# Each request's synchronous part runs in a thread of its own: Django's persistent per-thread
# connections would be opened per request and leak, so the web tier borrows from a pool.
os.environ.setdefault("DATABASE_POOL", "true")

import django  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

django.setup(set_prefix=False)

from apps.api.exceptions import error_body  # noqa: E402
from apps.api.parsers import MULTIPART_ALLOWANCE  # noqa: E402
from apps.api.validators import file_too_large, largest_upload_limit  # noqa: E402

Scope = dict[str, Any]


def body_limit() -> int:
    return largest_upload_limit() + MULTIPART_ALLOWANCE


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class KonvrtASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        """Django's synchronous chain, entered once per request in the request's own thread.

        Built for an async server, Django's chain would run the synchronous middlewares in the
        request's thread, come back to the event loop to resolve the URL, go over to the thread
        and back for CSRF's process_view and again for the view, then return to the thread for
        the responses: four round trips between the loop and the thread per request where one
        will do, since every view of Konvrt is synchronous and every middleware can be (the
        live-progress stream is a synchronous view returning an asynchronous body, which the
        server sends from the loop).
        """
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)  # type: ignore[has-type]

    async def handle(self, scope: Scope, receive: Any, send: Any) -> None:
        length = declared_length(scope)
        if length is not None and length > body_limit():
            await self._refuse_too_large(send)
            return
        await super().handle(scope, receive, send)

    async def read_body(self, receive: Any) -> IO[bytes]:
        """Django's read_body, spooled on the upload disk and bounded by the largest upload."""
        directory = Path(settings.FILE_UPLOAD_TEMP_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        limit, received = body_limit(), 0
        body_file = tempfile.SpooledTemporaryFile(
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b", dir=str(directory)
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                body_file.close()
                raise RequestAborted()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    @staticmethod
    async def _refuse_too_large(send: Any) -> None:
        error = file_too_large(largest_upload_limit())
        body = json.dumps(error_body(error.default_code, error.message, error.details)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


application = KonvrtASGIHandler()
