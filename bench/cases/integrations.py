"""Cases 9 and 10: webhooks and live progress.

- webhooks: the latency from an operation's completion to its signed event arriving at a receiver
  (outbox row, RQ job on webhook_queue, the outbound guard) against a plain RQ job that POSTs the
  same body; and how many fast deliveries go through while a slow receiver (5 s) holds a worker.
- sse: N open event streams on the ASGI server (uvicorn) against N clients polling ``/status/``
  once a second: the web process's memory growth, ``/health/`` latency, and its CPU per update.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import django_rq

from bench.environment import REPO, Bench, free_port, stop, wait_for_port
from bench.harness import BASELINE, KONVRT, Result, Sample, interleave, percentile
from bench.procfs import rss_mb

BENCH_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# How long the slow receiver takes to answer; the smoke run only checks that the case runs.
SLOW_SECONDS = {"full": 5.0, "quick": 5.0, "smoke": 1.0}
# How long the live progress clients may take to connect and be answered once (a bound, not a wait).
CONNECT_SECONDS = 30.0


# --- a receiver ------------------------------------------------------------------------------------
class _Receiver:
    """Records when each body (by its ``data.id``) arrived; ``/slow`` answers after ``slow_seconds``."""

    def __init__(self, *, slow_seconds: float) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/slow":
                    time.sleep(slow_seconds)
                key = json.loads(body)["data"]["id"]
                with receiver.lock:
                    receiver.arrived.setdefault(key, time.time())
                    receiver.lock.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, keys: list[str], timeout: float = 60) -> dict[str, float]:
        with self.lock:
            if not self.lock.wait_for(lambda: all(key in self.arrived for key in keys), timeout=timeout):
                raise TimeoutError(f"{sum(key in self.arrived for key in keys)} of {len(keys)} deliveries arrived.")
            return {key: self.arrived[key] for key in keys}


def _complete_with_webhook(url: str) -> tuple[str, float]:
    """An operation completed through the lifecycle with ``url`` as its webhook: (id, when)."""
    from apps.operations.models import Operation
    from apps.operations.services import lifecycle

    operation = Operation.objects.create(
        session_key="b" * 32, operation="image_convert", parameters={"output_format": "jpg"}, webhook_url=url
    )
    lifecycle.operation_mark_queued(operation_id=operation.id, job_id=f"bench-{operation.id}")
    claimed = lifecycle.operation_claim(operation_id=operation.id)
    assert claimed is not None
    completed_at = time.time()
    lifecycle.operation_mark_completed(
        operation_id=operation.id,
        attempt=claimed.attempt,
        output={"file_path": f"outputs/{operation.id}/out.jpg", "file_name": "out.jpg", "file_size": 1},
    )
    return str(operation.id), completed_at


def run_webhooks(bench: Bench) -> list[Result]:
    from django.conf import settings

    # The workers sign with this secret and may reach the receiver on loopback.
    environment = {"WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET, "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}
    kept = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    slow_seconds = SLOW_SECONDS[bench.scale]
    receiver = _Receiver(slow_seconds=slow_seconds)
    queue = django_rq.get_queue("webhook_queue")
    count = {"full": 50, "quick": 20, "smoke": 3}[bench.scale]
    workers = bench.start_workers(settings.WORKER_CONFIG["webhook"]["count"], "webhook_queue")
    try:

        def konvrt() -> Sample:
            latencies = []
            for _ in range(count):
                key, completed = _complete_with_webhook(f"{receiver.base}/fast")
                latencies.append((receiver.wait([key])[key] - completed) * 1000)
            return _latency_sample(latencies)

        def baseline() -> Sample:
            latencies = []
            for _ in range(count):
                key = str(uuid.uuid4())
                started = time.time()
                queue.enqueue("bench.jobs.post_json", f"{receiver.base}/fast", json.dumps({"data": {"id": key}}))
                latencies.append((receiver.wait([key])[key] - started) * 1000)
            return _latency_sample(latencies)

        ours, theirs = interleave(konvrt, baseline, repeats=bench.repeats, warmup=bench.warmup)
        latency = Result(
            case="webhook: completion → event received", konvrt=ours, baseline=theirs, metric="p50_ms", unit="ms"
        )
        latency.report("p50 latency (ms)", latency.median(KONVRT, "p50_ms"))
        latency.report("p99 latency (ms)", latency.median(KONVRT, "p99_ms"))
        latency.at_most("p99 latency (ms) < 1000", latency.median(KONVRT, "p99_ms"), 1000.0)
        latency.notes.append(
            f"{count} sequential events per sample, {len(workers)} webhook workers; baseline: a plain RQ job POSTing "
            "the same kind of body (no outbox row, no signature, no guard)"
        )

        def fast_burst(*, with_slow: bool) -> Sample:
            if with_slow:
                slow_key, _ = _complete_with_webhook(f"{receiver.base}/slow")
                time.sleep(0.3)  # the slow delivery holds a worker
            started = time.time()
            keys = [_complete_with_webhook(f"{receiver.base}/fast")[0] for _ in range(count)]
            arrived = receiver.wait(keys)
            wall = max(arrived.values()) - started
            if with_slow:
                receiver.wait([slow_key], timeout=slow_seconds * 4)
            return Sample(wall=wall, extra={"per_second": count / wall})

        ours, theirs = interleave(
            lambda: fast_burst(with_slow=True),
            lambda: fast_burst(with_slow=False),
            repeats=bench.repeats,
            warmup=bench.warmup,
        )
        slow = Result(
            case=f"webhook: {count} deliveries beside a {slow_seconds:g} s receiver",
            konvrt=ours,
            baseline=theirs,
            metric="per_second",
            unit="/s",
        )
        slow.at_most(f"time for the fast deliveries (s) < {slow_seconds:g}", slow.median(KONVRT, "wall"), slow_seconds)
        slow.report("time without the slow receiver (s)", slow.median(BASELINE, "wall"))
        slow.notes.append("baseline: the same deliveries with no slow receiver holding a worker")
    finally:
        for worker in workers:
            stop(worker)
        receiver.server.shutdown()
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return [latency, slow]


def _latency_sample(latencies: list[float]) -> Sample:
    return Sample(
        wall=sum(latencies) / 1000,
        extra={"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)},
    )


# --- live progress ---------------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _request_head(reader: asyncio.StreamReader) -> int:
    """Read a response's status line and headers; returns its Content-Length (0 when none)."""
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return length


def _health_latencies(port: int, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        connection.request("GET", "/api/v1/health/")
        connection.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
        connection.close()
        time.sleep(0.05)
    return latencies


def run_sse(bench: Bench) -> list[Result]:
    """N open streams against N clients polling /status/ once a second, on one uvicorn process."""
    from apps.operations.models import Operation
    from apps.operations.services import lifecycle

    clients = {"full": 1000, "quick": 200, "smoke": 20}[bench.scale]
    seconds = {"full": 10, "quick": 5, "smoke": 2}[bench.scale]
    port = free_port()
    log = (bench.logs / "uvicorn.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "django.core.asgi:get_asgi_application"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--lifespan", "off"],
        env=bench.env(),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for_port(port, process=server)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/v1/session/")
        response = connection.getresponse()
        key = response.getheader("X-Session-Key") or ""
        response.read()
        operations = []
        for _ in range(20):
            operation = Operation.objects.create(session_key=key, operation="image_convert", parameters={})
            lifecycle.operation_mark_queued(operation_id=operation.id, job_id=f"bench-{operation.id}")
            claimed = lifecycle.operation_claim(operation_id=operation.id)
            assert claimed is not None
            operations.append(claimed)
        _health_latencies(port, 10)  # warm
        progress = [0]

        def updates() -> int:
            progress[0] += 1
            for operation in operations:
                lifecycle.operation_record_progress(
                    operation_id=operation.id, attempt=operation.attempt, progress=progress[0] % 99
                )
            return len(operations)

        def measure(mode: str) -> Sample:
            return asyncio.run(_measure(mode, port, key, operations, clients, seconds, server.pid, updates))

        ours, theirs = interleave(lambda: measure("stream"), lambda: measure("poll"), repeats=1, warmup=False)
    finally:
        stop(server)
    result = Result(
        case=f"live progress: {clients} SSE streams vs polling /status/ 1/s",
        konvrt=ours,
        baseline=theirs,
        metric="health_p99_ms",
        unit="ms",
    )
    result.at_most("/health/ p99 with the streams open (ms) < 100", result.median(KONVRT), 100.0)
    result.at_most("web memory growth with the streams open (MB) < 100", result.median(KONVRT, "rss_growth_mb"), 100.0)
    result.report("web memory growth while polling (MB)", result.median(BASELINE, "rss_growth_mb"))
    result.report("/health/ p99 while polling (ms)", result.median(BASELINE, "health_p99_ms"))
    result.report("web CPU per update, streams (ms)", result.median(KONVRT, "cpu_ms_per_update"))
    result.report("web CPU per update, polling (ms)", result.median(BASELINE, "cpu_ms_per_update"))
    result.notes.append(
        f"one uvicorn process; {clients} clients over 20 processing operations, progress changed every second for "
        f"{seconds} s; an update is an event delivered (streams) or a status answered (polling)"
    )
    return [result]


async def _measure(
    mode: str, port: int, key: str, operations: list, clients: int, seconds: int, pid: int, updates: Any
) -> Sample:
    before = rss_mb(pid)
    received = [0]
    answered: set[int] = set()  # the clients answered at least once
    all_answered = asyncio.Event()
    stop_polling = asyncio.Event()
    connections: list[asyncio.StreamWriter] = []

    def count(client: int) -> None:
        received[0] += 1
        answered.add(client)
        if len(answered) == clients:
            all_answered.set()

    async def stream(client: int, operation_id: uuid.UUID) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connections.append(writer)
        path = f"/api/v1/operations/{operation_id}/events/"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session-Key: {key}\r\n\r\n".encode())
        await writer.drain()
        while line := await reader.readline():
            if line.startswith(b"event: status"):
                count(client)

    async def poll(client: int, operation_id: uuid.UUID) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connections.append(writer)
        path = f"/api/v1/operations/{operation_id}/status/"
        while not stop_polling.is_set():
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session-Key: {key}\r\n\r\n".encode())
            await writer.drain()
            await reader.readexactly(await _request_head(reader))
            count(client)
            await asyncio.sleep(1)

    run = stream if mode == "stream" else poll
    tasks = [asyncio.create_task(run(index, operations[index % len(operations)].id)) for index in range(clients)]
    # Measured from when every client is connected and answered once.
    try:
        await asyncio.wait_for(all_answered.wait(), timeout=CONNECT_SECONDS)
    except TimeoutError:
        waited = f"{len(answered)} of {clients} {mode} clients answered within {CONNECT_SECONDS:.0f} s"
        raise RuntimeError(f"{waited}.") from None
    received[0] = 0
    cpu_before = _cpu_seconds(pid)
    for _ in range(seconds):
        await asyncio.to_thread(updates)
        await asyncio.sleep(1)
    cpu = _cpu_seconds(pid) - cpu_before
    delivered = received[0]
    health = await asyncio.to_thread(_health_latencies, port, 20)
    growth = max(0.0, rss_mb(pid) - before)
    stop_polling.set()
    for writer in connections:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Sample(
        wall=float(seconds),
        extra={
            "rss_growth_mb": growth,
            "health_p50_ms": percentile(health, 0.5),
            "health_p99_ms": percentile(health, 0.99),
            "cpu_ms_per_update": cpu * 1000 / delivered if delivered else float("nan"),
            "updates": float(delivered),
        },
    )
