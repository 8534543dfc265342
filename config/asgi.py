"""ASGI entry point of the web tier: gunicorn runs it with uvicorn workers (config/gunicorn.py).

What differs from Django's own ASGIHandler:

- The request body is spooled into FILE_UPLOAD_TEMP_DIR (the storage disk, not /tmp, which may be
  memory) as an unnamed temporary file: an upload cut off midway leaves nothing behind.
- A body larger than the largest upload limit is refused: by its Content-Length before any of it is
  read (413 in the error envelope), or, when it arrives without one, by closing the connection as it
  passes the limit, so that no client can spool more than an upload may hold.
- tus upload data (``Content-Type: application/offset+octet-stream``, which only the tus views
  accept) is not spooled: the view reads it from the connection as it arrives and writes it
  straight into the upload's part file. Spooling 5 MB only to copy it into the part again was half
  of a PATCH's cost, and a PATCH cut off midway keeps what arrived, which is what tus clients resume
  from. The view's thread waits while the body trickles in (the database connection it used is
  back in the pool by then, see apps/operations/services/uploads.py); the event loop does not.
- Django's synchronous chain is entered once per request, in the request's thread
  (``load_middleware``), and a plain status poll runs it in the event loop with no thread at all,
  its reads made first on asynchronous clients (``serve_in_loop``; apps/api/status_poll.py), or,
  for a 200, skips it and adds the middlewares' headers itself (apps/api/status_answer.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import threading
from collections import deque
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
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.http import HttpRequest, HttpResponseBase  # noqa: E402
from django.urls import set_script_prefix, set_urlconf  # noqa: E402
from django.utils.log import log_response  # noqa: E402

django.setup(set_prefix=False)

from apps.api.exceptions import error_body  # noqa: E402
from apps.api.parsers import MULTIPART_ALLOWANCE  # noqa: E402
from apps.api.status_answer import StatusAnswerer  # noqa: E402
from apps.api.status_poll import read_ahead, served_in_loop  # noqa: E402
from apps.api.validators import file_too_large, largest_upload_limit  # noqa: E402
from config.settings.web_settings import WEB_TIMEOUT  # noqa: E402

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


STREAMED_CONTENT_TYPE = b"application/offset+octet-stream"


def streams_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == STREAMED_CONTENT_TYPE
    return False


class StreamedBody(io.RawIOBase):
    """A request body handed to the view as it arrives: a pipe between the event loop, which
    receives the body into a buffer of at most FILE_UPLOAD_MAX_MEMORY_SIZE (what a spooled body
    kept in memory too), and the view's thread, which reads from it (so receiving the next piece
    overlaps with writing the last one).

    A client that goes away, sends nothing for ``WEB_TIMEOUT`` seconds, or sends more than an upload
    may hold ends the body with an ``OSError`` (Django turns it into ``UnreadablePostError``) once
    the bytes that did arrive have been read.
    """

    def __init__(self, receive: Any) -> None:
        super().__init__()
        self._receive = receive
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._capacity = max(settings.FILE_UPLOAD_MAX_MEMORY_SIZE, 64 * 1024)
        self._wanted = 0  # what the reader waits for: woken per read, not per piece received
        self._more = True
        self._failure: str | None = None
        self._readable = threading.Condition()  # guards the five above
        self._room = asyncio.Event()
        self._room.set()
        self.finished = asyncio.Event()
        self._pump = self._loop.create_task(self._receive_all())

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._capacity), b""))
        if size == 0:
            return b""
        wanted = min(size, self._capacity)
        with self._readable:
            self._wanted = wanted
            self._readable.wait_for(lambda: self._buffered >= wanted or not self._more)
            if not self._chunks:
                if self._failure is not None:
                    raise OSError(self._failure)
                return b""
            pieces, taken = [], 0
            while self._chunks and taken < size:
                chunk = self._chunks.popleft()
                if taken + len(chunk) > size:
                    self._chunks.appendleft(chunk[size - taken :])
                    chunk = chunk[: size - taken]
                pieces.append(chunk)
                taken += len(chunk)
            self._buffered -= taken
            has_room = self._buffered < self._capacity
        if has_room:
            self._loop.call_soon_threadsafe(self._room.set)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        # Called from the view's thread too (the request's closers): Task.cancel is the loop's.
        if not self._pump.done() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._pump.cancel)
        super().close()

    async def _receive_all(self) -> None:
        received = 0
        try:
            while True:
                await self._room.wait()
                try:
                    message = await asyncio.wait_for(self._receive(), timeout=WEB_TIMEOUT)
                except TimeoutError:
                    self._end(f"No data arrived for {WEB_TIMEOUT} s.")
                    return
                if message["type"] == "http.disconnect":
                    self._end("The client disconnected before the end of the body.")
                    return
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > body_limit():
                    self._end("The body is larger than any upload may be.")
                    return
                more = message.get("more_body", False)
                with self._readable:
                    if chunk:
                        self._chunks.append(chunk)
                        self._buffered += len(chunk)
                    if self._buffered >= self._capacity:
                        self._room.clear()
                    self._more = more
                    if self._buffered >= self._wanted or not more:
                        self._readable.notify()
                if not more:
                    self.finished.set()
                    return
        finally:
            if self._more:  # cancelled: the request is over
                self._end("The request ended before its body did.")

    def _end(self, failure: str) -> None:
        with self._readable:
            self._more = False
            self._failure = failure
            self._readable.notify()
        self.finished.set()


class _AfterStreamedBody:
    """The receive channel Django's handler gets along a streamed body: its body is the
    ``StreamedBody`` (see read_body), and its wait for a disconnect starts once that body is over,
    so that it never takes a piece of the body meant for the view."""

    def __init__(self, receive: Any, body: StreamedBody) -> None:
        self.receive = receive
        self.body = body

    async def __call__(self) -> dict[str, Any]:
        await self.body.finished.wait()
        return await self.receive()


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
        # As it is, for the status poll, which runs it in the event loop (see serve_in_loop).
        self._chain_in_loop = self._middleware_chain  # type: ignore[has-type]
        self._status_answerer = StatusAnswerer()
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)  # type: ignore[has-type]

    async def handle(self, scope: Scope, receive: Any, send: Any) -> None:
        length = declared_length(scope)
        if length is not None and length > body_limit():
            await self._refuse_too_large(send)
            return
        if served_in_loop(scope):
            await self.serve_in_loop(scope, receive, send)
            return
        if streams_body(scope):
            receive = _AfterStreamedBody(receive, StreamedBody(receive))
        await super().handle(scope, receive, send)

    async def serve_in_loop(self, scope: Scope, receive: Any, send: Any) -> None:
        """A status poll (apps/api/status_poll.py): its reads done in the event loop, then its 200
        made there without the chain (apps/api/status_answer.py), or, for any other answer,
        Django's chain for it run there too, with no thread.

        What Django's handle() does around the chain, less what only a thread needs: the
        request_started signal (its receivers reset the database connections of the thread that
        serves a request; this path uses none of them) and the watch for a disconnect that cancels
        a slow view (nothing here waits once the reads are done).
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        answered = None
        if request is None:
            response: HttpResponseBase = error_response  # type: ignore[assignment]  # one of the two is set
        else:
            ahead = await read_ahead(request)
            answered = self._status_answerer.answer(request, ahead)
            response = answered if answered is not None else self._run_chain_in_loop(request)
            if response.status_code >= 400:
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)  # type: ignore[arg-type]
        try:
            await self.send_response(response, send)
        finally:
            body_file.close()
            # A direct answer opened nothing to close, and not closing it skips request_finished,
            # whose receivers clean up after the chain (no request_started was sent either).
            if answered is None:
                if request is not None:
                    request.close()
                response.close()

    def _run_chain_in_loop(self, request: HttpRequest) -> HttpResponseBase:
        set_urlconf(settings.ROOT_URLCONF)
        return self._chain_in_loop(request)

    async def read_body(self, receive: Any) -> IO[bytes]:
        """Django's read_body, spooled on the upload disk and bounded by the largest upload (a body
        that came whole in one message no larger than the spool's memory part is kept in memory,
        as the spool would keep it; tus upload data is the body to be read as it arrives)."""
        if isinstance(receive, _AfterStreamedBody):
            return receive.body  # type: ignore[return-value]
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body = message.get("body", b"")
            if len(body) <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
                # Most requests (every poll): what the spool would have kept in memory, unmade.
                return io.BytesIO(body)
        directory = Path(settings.FILE_UPLOAD_TEMP_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        limit, received = body_limit(), 0
        body_file = tempfile.SpooledTemporaryFile(
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b", dir=str(directory)
        )
        while True:
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
            message = await receive()
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
