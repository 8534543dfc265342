"""Cases 2, 5, 6, 7 and 8: Konvrt as a service (gunicorn as in the Procfile, a KonvrtWorker) against
the same work with nothing around it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django_rq
from rq import Callback, Retry
from rq.job import Job, JobStatus

from bench.cases.load import run_load
from bench.client import get_json, post_file, session_key
from bench.environment import Bench, WebServer
from bench.harness import BASELINE, KONVRT, Result, Sample, interleave, measure_command, percentile
from bench.inside import by_hand, create_operation
from bench.procfs import rss_mb

TERMINAL = ("completed", "failed", "cancelled")


def _wait(condition: Callable[[], Any], *, timeout: float, interval: float = 0.005) -> Any:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"Gave up waiting after {timeout:.0f} s.")


# --- 2: end to end ---------------------------------------------------------------------------------
def run_end_to_end(bench: Bench, web: WebServer) -> list[Result]:
    """POST → completed through the API and an idle KonvrtWorker, against the raw FFmpeg command
    plus one probe: the fixed overhead per job must stay ≤ 150 ms."""
    clip = bench.media.video(small=True)
    key = session_key(web.base)
    headers = {"X-Session-Key": key}
    with bench.warm() as warm:
        first = warm.call("bench.inside.run_operation", operation="video_compress", input_path=str(clip), parameters={})
        [ran] = first["commands"]
        worker = bench.start_worker("video_queue")
        try:

            def konvrt() -> Sample:
                started = time.perf_counter()
                status, body = post_file(
                    web.base, "/api/v1/operations/", file=clip, fields={"operation": "video_compress"}, headers=headers
                )
                if status != 201:
                    raise RuntimeError(f"POST /operations/ answered {status}: {body}")
                path = f"/api/v1/operations/{body['data']['id']}/status/"
                data = _wait(lambda: _finished(web.base, path, headers), timeout=300, interval=0.01)
                wall = time.perf_counter() - started
                if data["status"] != "completed":
                    raise RuntimeError(f"The end-to-end job ended {data['status']}: {data['error_message']}")
                return Sample(wall=wall)

            def baseline() -> Sample:
                probe = warm.call("bench.inside.probe_seconds", input_path=str(clip), demuxer="mov")
                output = bench.output_dir() / Path(ran[-1]).name
                sample = measure_command(by_hand(ran, input_path=clip, output_path=output))
                return Sample(wall=sample.wall + probe, cpu=sample.cpu, peak_rss_mb=sample.peak_rss_mb)

            ours, theirs = interleave(konvrt, baseline, repeats=max(3, bench.repeats), warmup=bench.warmup)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    result = Result(case="end to end: POST → completed (video_compress)", konvrt=ours, baseline=theirs)
    overhead_ms = (result.median(KONVRT) - result.median(BASELINE)) * 1000
    result.at_most("fixed overhead per job (ms) ≤ 150", overhead_ms, 150.0)
    width, height, seconds = bench.media.sizes.small_video
    result.notes.append(f"input {width}×{height}, {seconds:g} s; baseline = the worker's FFmpeg command + one probe")
    bench.clean_outputs()
    return [result]


def _finished(base: str, path: str, headers: dict[str, str]) -> dict[str, Any] | None:
    status, body = get_json(base, path, headers=headers)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body}")
    return body["data"] if body["data"]["status"] in TERMINAL else None


# --- 5: status polling -----------------------------------------------------------------------------
def run_status(bench: Bench, web: WebServer) -> list[Result]:
    """32 concurrent pollers of /status/ against a bare Django JSON view on the same server."""
    from apps.operations.services.queue_manager import enqueue_operation

    key = session_key(web.base)
    operation = create_operation(operation="video_compress", parameters={})
    operation.session_key = key
    operation.save(update_fields=["session_key"])
    enqueue_operation(operation=operation)
    path = f"/api/v1/operations/{operation.id}/status/"
    status, body = get_json(web.base, path, headers={"X-Session-Key": key})
    if status != 200 or body["data"]["status"] != "queued":
        raise RuntimeError(f"The status endpoint answered {status}: {body}")
    seconds = {"full": 10.0, "quick": 4.0, "smoke": 1.0}[bench.scale]

    def konvrt() -> Sample:
        return run_load(f"{web.base}{path}", headers={"X-Session-Key": key}, seconds=seconds)

    def baseline() -> Sample:
        return run_load(f"{web.base}/bench/status/{operation.id}/", headers={}, seconds=seconds)

    ours, theirs = interleave(konvrt, baseline, repeats=bench.repeats, warmup=bench.warmup)
    result = Result(case="status polling, 32 concurrent pollers", konvrt=ours, baseline=theirs, metric="rps", unit="")
    result.at_least("throughput ratio ≥ 0.50", result.ratio(), 0.50)
    result.at_most("p99 latency (ms) < 50", result.median(KONVRT, "p99_ms"), 50.0)
    result.report("p50 latency (ms)", result.median(KONVRT, "p50_ms"))
    result.report("bare view p99 latency (ms)", result.median(BASELINE, "p99_ms"))
    errors = sum(sample.extra["errors"] for sample in ours + theirs)
    if errors:
        result.at_most("failed or non-2xx requests", errors, 0)
    tool = "wrk" if ours[0].extra["tool"] else "a Python client"
    result.notes.append(
        f"the Procfile's web command (gunicorn, uvicorn workers) with WEB_CONCURRENCY={bench.web_concurrency}; "
        f"a queued operation (queue position and worker presence read from Redis); load by {tool}"
    )
    return [result]


# --- 6: the queue ----------------------------------------------------------------------------------
def run_queue(bench: Bench) -> list[Result]:
    """Enqueue → start on an idle KonvrtWorker for an operation against a plain RQ job on the same
    worker; and the API's enqueue call against a raw ``queue.enqueue`` with the same options."""
    from apps.operations.models import Operation
    from apps.operations.services import lifecycle
    from apps.operations.services.queue_manager import (
        FAILURE_CALLBACK,
        FAILURE_TTL,
        JOB_FUNCTION,
        RESULT_TTL,
        RETRY_INTERVALS,
        enqueue_operation,
    )

    tiny = bench.media.tiny_jpeg()
    queue = django_rq.get_queue("image_queue")
    worker = bench.start_worker("image_queue")
    try:

        def operation_start() -> Sample:
            operation = create_operation(operation="image_resize", parameters={"width": 32}, input_path=str(tiny))
            time.sleep(0.2)  # the worker idle again after the previous job
            enqueued = time.time()
            enqueue_operation(operation=operation)
            done = _wait(lambda: Operation.objects.filter(id=operation.id, status__in=TERMINAL).first(), timeout=60)
            if done.status != "completed":
                raise RuntimeError(f"The queue case's operation ended {done.status}: {done.error_message}")
            return Sample(wall=done.started_at.timestamp() - enqueued)

        def plain_start() -> Sample:
            time.sleep(0.2)
            enqueued = time.time()
            job = queue.enqueue("bench.jobs.started_at")
            _wait(lambda: job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED), timeout=60)
            if job.get_status() != JobStatus.FINISHED:
                raise RuntimeError(f"The plain RQ job ended {job.get_status()}.")
            return Sample(wall=Job.fetch(job.id, connection=queue.connection).return_value() - enqueued)

        samples = {"full": 20, "quick": 8, "smoke": 2}[bench.scale]
        ours, theirs = interleave(operation_start, plain_start, repeats=samples, warmup=bench.warmup)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    start = Result(case="queue: enqueue → job starts (idle worker)", konvrt=ours, baseline=theirs, unit="s")
    k_values, b_values = start.values(KONVRT), start.values(BASELINE)
    start.at_most("p50 ratio ≤ 1.5", percentile(k_values, 0.5) / percentile(b_values, 0.5), 1.5)
    start.at_most("p95 ratio ≤ 2", percentile(k_values, 0.95) / percentile(b_values, 0.95), 2.0)
    start.report("Konvrt p95 (ms)", percentile(k_values, 0.95) * 1000)
    start.report("plain RQ p95 (ms)", percentile(b_values, 0.95) * 1000)

    # The enqueue call alone, on a queue no worker listens to.
    video_queue = django_rq.get_queue("video_queue")
    created: list[Any] = []

    def api_enqueue() -> Sample:
        operation = create_operation(operation="video_compress", parameters={})
        created.append(operation)
        started = time.perf_counter()
        enqueue_operation(operation=operation)
        return Sample(wall=time.perf_counter() - started)

    def raw_enqueue() -> Sample:
        started = time.perf_counter()
        video_queue.enqueue(
            JOB_FUNCTION,
            str(uuid.uuid4()),
            job_id=f"bench-{uuid.uuid4()}",
            job_timeout=1800,
            retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
            on_failure=Callback(FAILURE_CALLBACK),
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description="bench raw enqueue",
        )
        return Sample(wall=time.perf_counter() - started)

    calls = {"full": 200, "quick": 50, "smoke": 3}[bench.scale]
    ours, theirs = interleave(api_enqueue, raw_enqueue, repeats=calls, warmup=bench.warmup)
    video_queue.empty()
    for operation in created:
        lifecycle.operation_cancel(operation=operation)
    enqueue = Result(case="queue: the API's enqueue call vs queue.enqueue", konvrt=ours, baseline=theirs, unit="s")
    enqueue.at_most("ratio ≤ 1.5", enqueue.ratio(), 1.5)
    return [start, enqueue]


# --- 7: uploads ------------------------------------------------------------------------------------
class _RssWatch:
    """Samples the resident memory of the web workers every 10 ms while an upload runs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = {pid: rss_mb(pid) for pid in pids}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_mb(pid))

    def __enter__(self) -> _RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return max(self.peak[pid] - self.start[pid] for pid in self.pids)


def run_upload(bench: Bench) -> list[Result]:
    """A ~500 MB video received by one web worker: its memory growth, and the throughput against a
    view that reads the body and throws it away."""
    big = bench.media.large_video()
    size_mb = big.stat().st_size / 1_000_000
    # One worker, so that the warm-up request warms the process that is measured.
    web = bench.start_web(concurrency=1)
    try:
        key = session_key(web.base)
        headers = {"X-Session-Key": key}

        def upload(path: str, fields: dict[str, str]) -> tuple[Sample, Any]:
            with _RssWatch(web.worker_pids()) as watch:
                started = time.perf_counter()
                status, body = post_file(web.base, path, file=big, fields=fields, headers=headers)
                wall = time.perf_counter() - started
            if status not in (200, 201):
                raise RuntimeError(f"POST {path} answered {status}: {body}")
            sample = Sample(
                wall=wall, peak_rss_mb=watch.growth, extra={"mb_per_s": size_mb / wall, "rss_growth_mb": watch.growth}
            )
            return sample, body

        def konvrt() -> Sample:
            sample, body = upload("/api/v1/operations/", {"operation": "video_compress"})
            # Not processed: deleted at once, which removes the stored file.
            connection_status, _ = _delete(web.base, f"/api/v1/operations/{body['data']['id']}/", headers)
            if connection_status != 200:
                raise RuntimeError(f"Deleting the uploaded operation answered {connection_status}.")
            return sample

        def baseline() -> Sample:
            return upload("/bench/upload/", {"operation": "video_compress"})[0]

        repeats = {"full": 3, "quick": 2, "smoke": 1}[bench.scale]
        ours, theirs = interleave(konvrt, baseline, repeats=repeats, warmup=bench.warmup)
    finally:
        web.stop()
    result = Result(case=f"upload {size_mb:.0f} MB video (RSS = growth)", konvrt=ours, baseline=theirs)
    result.at_most("web worker RSS growth (MB) < 64", max(result.values(KONVRT, "rss_growth_mb")), 64.0)
    result.report("Konvrt upload throughput (MB/s)", result.median(KONVRT, "mb_per_s"))
    result.report("bare upload throughput (MB/s)", result.median(BASELINE, "mb_per_s"))
    result.notes.append("Konvrt's time includes checking the content (probe) and storing the upload")
    return [result]


def _delete(base: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("DELETE", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


# --- 8: progress writes ----------------------------------------------------------------------------
def run_progress(bench: Bench) -> list[Result]:
    """The database writes one whole job makes (video_compress of the processing cases' clip)."""
    clip = bench.media.video()
    with bench.warm() as warm:
        counted = warm.call(
            "bench.inside.count_job_writes", operation="video_compress", input_path=str(clip), parameters={}
        )
    seconds = counted["processing_seconds"]
    sample = Sample(
        wall=counted["wall"],
        extra={
            "writes": counted["writes"],
            "progress_writes": counted["progress_writes"],
            "tracker_writes": counted["tracker_writes"],
        },
    )
    result = Result(case="progress: database writes per job", konvrt=[sample], baseline=[], metric="writes", unit="")
    result.at_most(
        f"progress writes per second of processing ({seconds:.1f} s) ≤ 1",
        counted["progress_writes"] / max(seconds, 1.0),
        1.0,
    )
    result.at_most("writes per job ≤ 101", counted["writes"], 101)
    result.report("progress, phase and heartbeat writes", counted["tracker_writes"])
    return [result]
