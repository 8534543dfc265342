"""Closed-loop HTTP load: N connections each sending its next request as soon as the last answers.

``wrk`` when it is installed (Debian's package; it keeps up with any server here on one core),
else a Python generator in several processes (threads on keep-alive-less connections, like
gunicorn's sync workers expect). Both report requests per second and the latency percentiles.
"""

from __future__ import annotations

import http.client
import multiprocessing
import re
import shutil
import subprocess
import threading
import time
from urllib.parse import urlsplit

from bench.harness import Sample, percentile

CONNECTIONS = 32
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_load(url: str, *, headers: dict[str, str], seconds: float, connections: int = CONNECTIONS) -> Sample:
    if shutil.which("wrk"):
        return _wrk(url, headers=headers, seconds=seconds, connections=connections)
    return _python(url, headers=headers, seconds=seconds, connections=connections)


def _wrk(url: str, *, headers: dict[str, str], seconds: float, connections: int) -> Sample:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latency = {
        int(match.group(1)): float(match.group(2)) * _UNITS[match.group(3)]
        for match in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    errors = 0
    if non_2xx := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(non_2xx.group(1))
    if socket_errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(value) for value in socket_errors.groups())
    return Sample(
        wall=seconds,
        extra={"rps": rps, "p50_ms": latency[50], "p99_ms": latency[99], "errors": float(errors), "tool": 1.0},
    )


def _client(url: str, headers: dict[str, str], seconds: float, threads: int, results) -> None:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                response.read()
                connection.close()
                ok = 200 <= response.status < 400
            except OSError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            if not ok:
                errors[0] += 1

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((latencies, errors[0]))


def _python(url: str, *, headers: dict[str, str], seconds: float, connections: int) -> Sample:
    processes = 4
    results = multiprocessing.get_context("fork").Queue()
    started = time.monotonic()
    clients = [
        multiprocessing.get_context("fork").Process(
            target=_client, args=(url, headers, seconds, connections // processes, results)
        )
        for _ in range(processes)
    ]
    for client in clients:
        client.start()
    latencies: list[float] = []
    errors = 0
    for _ in clients:
        found, failed = results.get(timeout=seconds + 60)
        latencies += found
        errors += failed
    for client in clients:
        client.join()
    elapsed = time.monotonic() - started
    return Sample(
        wall=elapsed,
        extra={
            "rps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "errors": float(errors),
            "tool": 0.0,
        },
    )
