"""Big files: a resumable (tus) upload in 5 MB chunks and an import from a URL, each against a
direct multipart upload of the same file through the same API (docs/uploads.md)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.cases.service import _delete, _RssWatch
from bench.client import post_file, session_key
from bench.environment import Bench, WebServer
from bench.harness import BASELINE, KONVRT, Result, Sample, interleave
from bench.warm import WarmProcess

TUS_CHUNK = 5 * 1024 * 1024
SEND_CHUNK = 1024 * 1024


def _request(
    base: str, method: str, path: str, *, headers: dict[str, str], body: bytes = b"", timeout: float = 600
) -> http.client.HTTPResponse:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


class _NoDelayConnection(http.client.HTTPConnection):
    """As browsers do: without TCP_NODELAY the last short segment of each body waits for the
    server's delayed ACK (Nagle's algorithm), tens of ms per PATCH. Set on every (re)connection:
    gunicorn's sync workers close the connection after each response."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tus_upload(base: str, file: Path, *, headers: dict[str, str], chunk: int = TUS_CHUNK) -> str:
    """A plain tus 1.0.0 client: create, then one PATCH per chunk read from disk. Returns the URL."""
    tus = {**headers, "Tus-Resumable": "1.0.0"}
    size = file.stat().st_size
    created = _request(
        base,
        "POST",
        "/api/v1/uploads/",
        headers={
            **tus,
            "Upload-Length": str(size),
            "Upload-Metadata": f"filename {base64.b64encode(file.name.encode()).decode()}",
        },
    )
    if created.status != 201:
        raise RuntimeError(f"tus creation answered {created.status}.")
    location = created.headers["Location"]
    path = urlsplit(location).path
    parts = urlsplit(base)
    # Each body streamed from disk, over one connection while the server keeps it alive.
    connection = _NoDelayConnection(parts.hostname, parts.port, timeout=600)
    offset = 0
    try:
        with file.open("rb") as source:
            while offset < size:
                length = min(chunk, size - offset)
                connection.putrequest("PATCH", path)
                for name, value in {
                    **tus,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                }.items():
                    connection.putheader(name, value)
                connection.endheaders()
                source.seek(offset)
                left = length
                while left:
                    data = source.read(min(SEND_CHUNK, left))
                    connection.send(data)
                    left -= len(data)
                answer = connection.getresponse()
                answer.read()
                if answer.status != 204:
                    raise RuntimeError(f"tus PATCH at {offset} answered {answer.status}.")
                offset = int(answer.headers["Upload-Offset"])
    finally:
        connection.close()
    return location


def _post_json(base: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    try:
        connection.request(
            "POST", path, body=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def _direct(web: WebServer, big: Path, headers: dict[str, str], size_mb: float) -> Sample:
    with _RssWatch(web.worker_pids()) as watch:
        started = time.perf_counter()
        status, body = post_file(
            web.base, "/api/v1/operations/", file=big, fields={"operation": "video_compress"}, headers=headers
        )
        wall = time.perf_counter() - started
    if status != 201:
        raise RuntimeError(f"The direct upload answered {status}: {body}")
    _delete(web.base, f"/api/v1/operations/{body['data']['id']}/", headers)
    return Sample(
        wall=wall, peak_rss_mb=watch.growth, extra={"mb_per_s": size_mb / wall, "rss_growth_mb": watch.growth}
    )


def run_tus(bench: Bench) -> list[Result]:
    """The same large video through tus (5 MB chunks, then POST /operations/ with the upload)
    against one multipart POST: wall time and the web worker's memory growth."""
    big = bench.media.large_video()
    size_mb = big.stat().st_size / 1_000_000
    web = bench.start_web(concurrency=1)
    try:
        headers = {"X-Session-Key": session_key(web.base)}

        def konvrt() -> Sample:
            with _RssWatch(web.worker_pids()) as watch:
                started = time.perf_counter()
                location = tus_upload(web.base, big, headers=headers)
                status, body = _post_json(
                    web.base, "/api/v1/operations/", {"operation": "video_compress", "upload": location}, headers
                )
                wall = time.perf_counter() - started
            if status != 201:
                raise RuntimeError(f"Creating from the tus upload answered {status}: {body}")
            _delete(web.base, f"/api/v1/operations/{body['data']['id']}/", headers)
            return Sample(
                wall=wall, peak_rss_mb=watch.growth, extra={"mb_per_s": size_mb / wall, "rss_growth_mb": watch.growth}
            )

        repeats = {"full": 3, "quick": 2, "smoke": 1}[bench.scale]
        ours, theirs = interleave(
            konvrt, partial(_direct, web, big, headers, size_mb), repeats=repeats, warmup=bench.warmup
        )
    finally:
        web.stop()
    result = Result(case=f"tus upload {size_mb:.0f} MB in 5 MB chunks vs direct", konvrt=ours, baseline=theirs)
    result.at_most("time ratio ≤ 1.2", result.ratio(), 1.2)
    result.at_most("web worker RSS growth (MB) < 64", max(result.values(KONVRT, "rss_growth_mb")), 64.0)
    result.report("direct upload RSS growth (MB)", max(result.values(BASELINE, "rss_growth_mb")))
    result.notes.append("both sides include checking the content (probe) and storing the upload")
    return [result]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def run_url_import(bench: Bench) -> list[Result]:
    """The same large video fetched by a worker from a local web server (through the outbound
    guard, allowed by OUTBOUND_ALLOWED_NETWORKS) against a direct upload through the API. Konvrt's
    side is the fetching phase as the worker runs it: download, content check, store."""
    big = bench.media.large_video()
    size_mb = big.stat().st_size / 1_000_000
    source = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(big.parent)))
    threading.Thread(target=source.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{source.server_address[1]}/{big.name}"
    warm = WarmProcess(bench.env(OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32"))
    web = bench.start_web(concurrency=1)
    try:
        headers = {"X-Session-Key": session_key(web.base)}

        def konvrt() -> Sample:
            fetched = warm.call("bench.inside.fetch_from_url", operation="video_compress", url=url)
            return Sample(wall=fetched["wall"], extra={"mb_per_s": size_mb / fetched["wall"]})

        repeats = {"full": 3, "quick": 2, "smoke": 1}[bench.scale]
        ours, theirs = interleave(
            konvrt, partial(_direct, web, big, headers, size_mb), repeats=repeats, warmup=bench.warmup
        )
    finally:
        web.stop()
        warm.close()
        source.shutdown()
        source.server_close()
    result = Result(case=f"url import {size_mb:.0f} MB vs direct upload", konvrt=ours, baseline=theirs)
    result.report("URL import throughput (MB/s)", result.median(KONVRT, "mb_per_s"))
    result.report("direct upload throughput (MB/s)", result.median(BASELINE, "mb_per_s"))
    return [result]
