"""Konvrt on several hosts, on one machine: `make cluster-test` (needs root and `ip netns`).

Four network namespaces joined by veth pairs on one bridge, each host reaching the others only
over those addresses:

- services 10.77.0.1: its own PostgreSQL cluster (initdb + pg_ctl), its own redis-server and an
  S3 server (moto in server mode): nothing of the machine's own services is used;
- web      10.77.0.2: the Procfile's `web` command (after its `release` command);
- worker1  10.77.0.3 and worker2 10.77.0.4: the Procfile's `worker` command.

Every host has its own storage root, temp directory and worker run directory: files live only in
S3, state only in PostgreSQL and Redis. The driver (this script, on the bridge at 10.77.0.254)
talks to the web host's API like any client and reads each worker host's logs to see who ran what.

Checks, with the figures printed:
1. Jobs of every media type spread over both worker hosts and all complete.
2. A worker host killed mid-job (every process in it SIGKILLed): the job is queued again within the
   recovery bound (RECOVERY_STALE_SECONDS + RECOVERY_INTERVAL_SECONDS) and completes on the other
   host; /queues/ stops counting the lost host's workers within worker_ttl + 60 s; the killed host
   then starts again from its stale pid files and takes work.
3. The same with the host's link cut instead (its processes keep running, unreachable), and the
   cut-off host's FFmpeg stops before the job is queued again (how long it lived is printed).
4. The web host restarted (SIGKILL, then the Procfile's command again) with jobs in flight: every
   job completes, none is lost or duplicated.

Where root or network namespaces are missing, it prints "SKIPPED: <reason>" and exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PREFIX = "kv"
BRIDGE = f"{PREFIX}br0"
DRIVER_ADDRESS = "10.77.0.254"
HOSTS = {"services": "10.77.0.1", "web": "10.77.0.2", "worker1": "10.77.0.3", "worker2": "10.77.0.4"}
WORKERS = ("worker1", "worker2")
# A short recovery bound keeps the run within minutes; the bound checked is computed from the same
# settings the hosts run with (docs/configuration.md: stale + interval, 75 s by default).
JOB_HEARTBEAT_SECONDS = 5
RECOVERY_STALE_SECONDS = 15
RECOVERY_INTERVAL_SECONDS = 10
RECOVERY_BOUND = RECOVERY_STALE_SECONDS + RECOVERY_INTERVAL_SECONDS
# Slack on top of the bound for the run itself (2 shared cores, a sweep pass, process start-up).
BOUND_SLACK = 10
# A lost host's workers stop counting in /queues/ once RQ lets their registrations expire:
# worker_ttl (30 s, config/settings/rq_settings.py) + 60 s after their last heartbeat.
LOST_WORKERS_BOUND = 30 + 60
# A cut-off host's job notices within DATABASE_LINK_TIMEOUT that it cannot reach the database and
# stops its FFmpeg (docs/guarantees.md): before the recovery sweep can queue it again.
DATABASE_LINK_TIMEOUT = 5
BUCKET = "konvrt-cluster"


class Skip(Exception):
    pass


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*command: str, check: bool = True, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), check=check, text=True, capture_output=True, **options)


def namespace(host: str) -> str:
    return f"{PREFIX}-{host}"


def veth(host: str) -> str:
    return f"{PREFIX}{host[0]}{host[-1]}h"  # kvsh, kvwb, kvw1, kvw2: the bridge side


# --- topology -------------------------------------------------------------------------------------
def preflight() -> None:
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces, veth pairs)")
    if shutil.which("ip") is None:
        raise Skip("needs iproute2's `ip`")
    probe = f"{PREFIX}-probe-{os.getpid()}"
    if run("ip", "netns", "add", probe, check=False).returncode != 0:
        raise Skip("cannot create network namespaces here (ip netns add failed)")
    run("ip", "netns", "del", probe, check=False)
    if not (PG_BIN / "initdb").exists():
        raise Skip(f"needs PostgreSQL's initdb and pg_ctl in {PG_BIN}")
    if shutil.which("redis-server") is None:
        raise Skip("needs redis-server on PATH")


def build_network() -> None:
    teardown_network()
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{DRIVER_ADDRESS}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    for host, address in HOSTS.items():
        ns, outside, inside = namespace(host), veth(host), f"{veth(host)[:-1]}n"
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", ns)
        run("ip", "link", "set", outside, "master", BRIDGE)
        run("ip", "link", "set", outside, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", inside)
        run("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")


def teardown_network() -> None:
    for host in HOSTS:
        kill_host(host)
        run("ip", "netns", "del", namespace(host), check=False)
        run("ip", "link", "del", veth(host), check=False)
    run("ip", "link", "del", BRIDGE, check=False)


def cut_link(host: str) -> None:
    run("ip", "link", "set", veth(host), "down")


def restore_link(host: str) -> None:
    run("ip", "link", "set", veth(host), "up")


def host_pids(host: str) -> list[int]:
    result = run("ip", "netns", "pids", namespace(host), check=False)
    return [int(pid) for pid in result.stdout.split()]


def ffmpeg_running(host: str) -> bool:
    """Whether any FFmpeg process runs in the host's namespace (the bundled binary's name starts so)."""
    for pid in host_pids(host):
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("ffmpeg"):
                return True
        except OSError:
            pass
    return False


def kill_host(host: str) -> int:
    """SIGKILL every process in the host's namespace (a power cut); returns how many."""
    killed = 0
    for _ in range(5):
        pids = host_pids(host)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    return killed


# --- hosts ----------------------------------------------------------------------------------------
@dataclass
class Cluster:
    work: Path
    python: str
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def host_dir(self, host: str) -> Path:
        path = self.work / host
        path.mkdir(parents=True, exist_ok=True)
        return path

    def environment(self, host: str) -> dict[str, str]:
        services = HOSTS["services"]
        root = self.host_dir(host)
        env = {
            "PATH": f"{Path(self.python).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "PYTHON": self.python,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "SECRET_KEY": "cluster-test-" + "k" * 50,
            "ALLOWED_HOSTS": "*",
            # Plain HTTP between the hosts: no TLS-terminating router in front here.
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"postgres://postgres@{services}:5432/konvrt",
            "REDIS_URL": f"redis://{services}:6379/0",
            "STORAGE_BACKEND": "s3",
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": f"http://{services}:5000",
            "AWS_ACCESS_KEY_ID": "cluster",
            "AWS_SECRET_ACCESS_KEY": "cluster-secret",
            "AWS_S3_REGION_NAME": "us-east-1",
            "S3_TIMEOUT": "10",
            "STORAGE_ROOT": str(root / "storage"),
            "WORKER_RUN_DIR": str(root / "workers"),
            "WORKER_STOP_GRACE": "5",
            "PORT": "8000",
            "THROTTLE_ANON_BURST": "10000/minute",
            "THROTTLE_ANON_SUSTAINED": "100000/day",
            "THROTTLE_UPLOADS": "10000/hour",
            "THROTTLE_STATUS_CHECKS": "100000/minute",
            "JOB_HEARTBEAT_SECONDS": str(JOB_HEARTBEAT_SECONDS),
            "RECOVERY_STALE_SECONDS": str(RECOVERY_STALE_SECONDS),
            "RECOVERY_INTERVAL_SECONDS": str(RECOVERY_INTERVAL_SECONDS),
            "DATABASE_LINK_TIMEOUT": str(DATABASE_LINK_TIMEOUT),
        }
        return env

    def spawn(self, host: str, command: str, *, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log_path = self.host_dir(host) / f"{name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace(host), "bash", "-c", command],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.setdefault(host, []).append(process)
        return process

    def exec(self, host: str, command: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", namespace(host), "bash", "-c", command],
            cwd=ROOT,
            env=env or self.environment(host),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{host}: {command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result.stdout

    # services: PostgreSQL, Redis, S3, each bound to the services host's veth address only.
    def start_services(self) -> None:
        address = HOSTS["services"]
        data = self.host_dir("services") / "pgdata"
        shutil.chown(self.host_dir("services"), "postgres")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        as_postgres = f"runuser -u postgres -- {PG_BIN}"
        self.exec("services", f"{as_postgres}/initdb -D {data} -A trust -U postgres >/dev/null", env=env)
        (data / "pg_hba.conf").write_text("host all all 10.77.0.0/24 trust\nlocal all all trust\n")
        self.exec(
            "services",
            f"{as_postgres}/pg_ctl -D {data} -l {data}/server.log -w -o "
            f'"-c listen_addresses={address} -c unix_socket_directories={data} -c fsync=off" start >/dev/null',
            env=env,
        )
        self.exec("services", f"{as_postgres}/createdb -h {address} -U postgres konvrt", env=env)
        self.spawn(
            "services",
            f"exec redis-server --bind {address} --port 6379 --protected-mode no --save '' --appendonly no",
            env=env,
            name="redis",
        )
        self.spawn(
            "services",
            f"exec {self.python} -m moto.server -H {address} -p 5000",
            env={**env, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            name="moto",
        )
        wait_for(lambda: port_open(address, 6379) and port_open(address, 5000), 30, "Redis and S3 on the services host")
        self.exec(
            "web",
            f"{self.python} -c \"import boto3; boto3.client('s3', endpoint_url='http://{address}:5000', "
            f"aws_access_key_id='cluster', aws_secret_access_key='cluster-secret', region_name='us-east-1')"
            f".create_bucket(Bucket='{BUCKET}')\"",
        )

    def procfile(self, name: str) -> str:
        for line in (ROOT / "Procfile").read_text().splitlines():
            if line.startswith(f"{name}:"):
                command = line.split(":", 1)[1].strip()
                # The Procfile names `python`: the one of this checkout's environment.
                return command.replace("python ", f"{self.python} ", 1) if command.startswith("python ") else command
        raise RuntimeError(f"The Procfile has no {name} command")

    def start_web(self) -> None:
        env = self.environment("web")
        env["PATH"] = f"{Path(self.python).parent}:{env['PATH']}"
        self.spawn("web", f"exec {self.procfile('web')}", env=env, name="web")
        wait_for(lambda: http_ok(f"http://{HOSTS['web']}:8000/api/v1/health/"), 60, "the web host's health check")

    def start_worker(self, host: str) -> None:
        self.spawn(host, f"exec {self.procfile('worker')}", env=self.environment(host), name="worker")

    def release(self) -> None:
        self.exec("web", self.procfile("release"), timeout=300)

    def processed_on(self, host: str) -> dict[str, int]:
        """Operation id → attempts this host started, from its workers' logs."""
        seen: dict[str, int] = {}
        for path in (self.host_dir(host) / "workers").glob("*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if " Processing " in line and "(attempt" in line:
                    operation_id = line.split(" Processing ", 1)[1].split()[1]
                    seen[operation_id] = seen.get(operation_id, 0) + 1
        return seen

    def completed_on(self, host: str) -> set[str]:
        done: set[str] = set()
        for path in (self.host_dir(host) / "workers").glob("*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if " Completed " in line:
                    done.add(line.split(" Completed ", 1)[1].split()[1])
        return done

    def stop_all(self) -> None:
        for host in HOSTS:
            kill_host(host)
        data = self.host_dir("services") / "pgdata"
        if data.exists():
            run("runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop",
                check=False)  # fmt: skip
        for processes in self.processes.values():
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)


# --- the API, as a client uses it -----------------------------------------------------------------
API = f"http://{HOSTS['web']}:8000/api/v1"


def port_open(address: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")


def request(method: str, path: str, *, session: str, body: bytes | None = None, content_type: str = "") -> Any:
    headers = {"X-Session-Key": session}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(f"{API}{path}", data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())["data"]


def new_session() -> str:
    with urllib.request.urlopen(f"{API}/session/", timeout=10) as response:
        return str(json.loads(response.read())["data"]["session_key"])


def create(operation: str, source: Path, parameters: dict[str, Any]) -> tuple[str, str]:
    session = new_session()
    boundary = uuid.uuid4().hex
    parts = [
        ("operation", operation.encode()),
        ("parameters", json.dumps(parameters).encode()),
    ]
    body = b""
    for name, value in parts:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    body += (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{source.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + source.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    data = request(
        "POST", "/operations/", session=session, body=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    return session, str(data["id"])


def status(session: str, operation_id: str) -> dict[str, Any]:
    return dict(request("GET", f"/operations/{operation_id}/status/", session=session))


# --- media ----------------------------------------------------------------------------------------
def make_media(directory: Path, python: str) -> dict[str, Path]:
    ffmpeg = run(python, "-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())").stdout.strip()
    directory.mkdir(parents=True, exist_ok=True)
    media = {
        "video": directory / "clip.mp4",
        "long_video": directory / "long.mp4",
        "audio": directory / "tone.wav",
        "image": directory / "pattern.png",
    }
    base = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    run(*base, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i",
        "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "2",
        str(media["video"]))  # fmt: skip
    run(*base, "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=45", "-f", "lavfi", "-i",
        "sine=frequency=440:duration=45", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-t", "45", str(media["long_video"]))  # fmt: skip
    run(*base, "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-ac", "2", str(media["audio"]))
    run(*base, "-f", "lavfi", "-i", "testsrc2=size=64x64:duration=1", "-frames:v", "1", str(media["image"]))
    return media


# --- the checks -----------------------------------------------------------------------------------
@dataclass
class Figures:
    jobs_per_host: dict[str, int] = field(default_factory=dict)
    recoveries: list[tuple[str, float, float]] = field(default_factory=list)  # fault, requeued after, completed after
    workers_gone: list[tuple[str, float]] = field(default_factory=list)  # fault, /queues/ stopped counting after
    cut_ffmpeg_lived: float | None = None
    web_restart: str = ""


class Watch:
    """Polls ``condition`` every half second in a thread, from now on; ``wait`` answers how many
    seconds after the start it first held (while the driver waits on other things)."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self.condition = condition
        self.started = time.monotonic()
        self.held_after: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.condition():
                    self.held_after = time.monotonic() - self.started
                    return
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            self._stop.wait(0.5)

    def wait(self, timeout: float, what: str) -> float:
        self._thread.join(max(0.0, self.started + timeout - time.monotonic()))
        self._stop.set()
        if self.held_after is None:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")
        return self.held_after


def listening_workers(session: str) -> int:
    """Workers /queues/ counts as listening, over every queue."""
    return sum(int(queue["workers"]) for queue in request("GET", "/queues/", session=session).values())


def wait_terminal(session: str, operation_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(session, operation_id)
        if current["status"] in ("completed", "failed", "cancelled"):
            return current
        time.sleep(1)
    raise AssertionError(
        f"Operation {operation_id} did not finish within {timeout:.0f} s: {status(session, operation_id)}"
    )


def check_spread(cluster: Cluster, media: dict[str, Path], figures: Figures) -> None:
    log("1. jobs of every media type over both worker hosts")
    cases = [
        ("video_compress", media["video"], {"quality": 28, "preset": "ultrafast"}),
        ("video_convert", media["video"], {"output_format": "webm"}),
        ("image_resize", media["image"], {"width": 32}),
        ("image_convert", media["image"], {"output_format": "jpg"}),
        ("audio_convert", media["audio"], {"output_format": "mp3"}),
        ("audio_extract", media["video"], {}),
    ]
    jobs = [create(operation, source, parameters) for operation, source, parameters in cases * 2]
    for session, operation_id in jobs:
        final = wait_terminal(session, operation_id, 300)
        assert final["status"] == "completed", final
    ids = {operation_id for _, operation_id in jobs}
    # Each "Completed" log line follows the commit the API already answered with.
    wait_for(lambda: sum(len(cluster.completed_on(host) & ids) for host in WORKERS) == len(jobs), 10, "the logs")
    per_host = {host: len(cluster.completed_on(host) & ids) for host in WORKERS}
    figures.jobs_per_host = per_host
    log(f"   {len(jobs)} jobs completed; per host: {per_host}")
    assert sum(per_host.values()) == len(jobs), per_host
    assert all(count > 0 for count in per_host.values()), f"the jobs did not spread: {per_host}"


def running_host(cluster: Cluster, operation_id: str) -> str | None:
    for host in WORKERS:
        if operation_id in cluster.processed_on(host):
            return host
    return None


def check_lost_host(cluster: Cluster, media: dict[str, Path], figures: Figures, *, fault: str) -> None:
    log(f"{'2' if fault == 'kill' else '3'}. a worker host lost mid-job ({fault})")
    session, operation_id = create("video_compress", media["long_video"], {"quality": 18, "preset": "slow"})
    wait_for(lambda: status(session, operation_id)["status"] == "processing"
             and running_host(cluster, operation_id) is not None, 120, "the long job to start")  # fmt: skip
    time.sleep(2)  # into the encode
    victim = running_host(cluster, operation_id)
    assert victim is not None, "no worker host logged the job"
    survivor = next(host for host in WORKERS if host != victim)
    # Both hosts run the same worker groups: once the victim's are no longer counted, half remain.
    listening_before = listening_workers(session)
    faulted = time.monotonic()
    if fault == "kill":
        killed = kill_host(victim)
        log(f"   {victim} ran it: SIGKILLed its {killed} processes")
    else:
        assert ffmpeg_running(victim), f"{victim} runs no FFmpeg to cut off"
        cut_link(victim)
        log(f"   {victim} ran it: its link is cut")
    workers_gone = Watch(lambda: listening_workers(session) <= listening_before // 2)
    ffmpeg_stopped = Watch(lambda: not ffmpeg_running(victim)) if fault == "cut" else None
    # Queued again: it leaves `processing`, or the other host has already started it.
    requeued_after = wait_for(
        lambda: (
            status(session, operation_id)["status"] != "processing" or operation_id in cluster.processed_on(survivor)
        ),
        RECOVERY_BOUND + BOUND_SLACK + 60,
        "the job to be queued again",
    )
    final = wait_terminal(session, operation_id, 600)
    completed_after = time.monotonic() - faulted
    assert final["status"] == "completed", final
    # The worker logs "Completed" just after it commits the status the API answered with.
    wait_for(lambda: operation_id in cluster.completed_on(survivor), 10, f"{survivor} to log its completion")
    figures.recoveries.append((fault, requeued_after, completed_after))
    log(f"   queued again after {requeued_after:.1f} s (bound {RECOVERY_BOUND} s + {BOUND_SLACK} s slack); "
        f"completed on {survivor} after {completed_after:.1f} s")  # fmt: skip
    assert requeued_after <= RECOVERY_BOUND + BOUND_SLACK, f"recovery took {requeued_after:.1f} s"
    if ffmpeg_stopped is not None:
        # Only the current attempt may encode: the cut-off one stops before it can be replaced.
        lived = ffmpeg_stopped.wait(RECOVERY_BOUND + 60, f"{victim}'s cut-off FFmpeg to stop")
        figures.cut_ffmpeg_lived = lived
        log(f"   {victim}'s cut-off FFmpeg stopped {lived:.1f} s after the cut")
        assert lived < requeued_after, f"the cut-off FFmpeg still ran when the job was queued again ({lived:.1f} s)"
    gone_after = workers_gone.wait(LOST_WORKERS_BOUND + BOUND_SLACK + 30, f"/queues/ to forget {victim}'s workers")
    figures.workers_gone.append((fault, gone_after))
    log(f"   /queues/ counted {listening_before} workers before, stopped counting {victim}'s after {gone_after:.1f} s "
        f"(bound {LOST_WORKERS_BOUND} s)")  # fmt: skip
    assert gone_after <= LOST_WORKERS_BOUND + BOUND_SLACK, f"/queues/ counted them for {gone_after:.1f} s"
    # The host comes back: its processes are gone (or killed now), its pid files are stale.
    if fault == "cut":
        kill_host(victim)
        restore_link(victim)
    cluster.start_worker(victim)
    wait_for(lambda: "sweeper: running" in worker_status(cluster, victim), 90, f"{victim}'s workers to start again")


def worker_status(cluster: Cluster, host: str) -> str:
    try:
        return cluster.exec(host, f"{cluster.python} -c 'print()' && bash scripts/start_workers.sh status || true")
    except RuntimeError as e:
        return str(e)


def check_web_restart(cluster: Cluster, media: dict[str, Path], figures: Figures) -> None:
    log("4. the web host restarted with jobs in flight")
    jobs = [create("video_compress", media["video"], {"quality": 28, "preset": "ultrafast"}) for _ in range(3)]
    jobs += [create("image_convert", media["image"], {"output_format": "webp"}) for _ in range(3)]
    killed = kill_host("web")
    cluster.start_web()
    for session, operation_id in jobs:
        final = wait_terminal(session, operation_id, 300)
        assert final["status"] == "completed", final
    attempts = {operation_id: 0 for _, operation_id in jobs}
    for host in WORKERS:
        for operation_id, count in cluster.processed_on(host).items():
            if operation_id in attempts:
                attempts[operation_id] += count
    assert all(count == 1 for count in attempts.values()), f"some jobs ran more than once: {attempts}"
    figures.web_restart = (
        f"{len(jobs)} jobs in flight, web SIGKILLed ({killed} processes) and restarted: all completed once"
    )
    log(f"   {figures.web_restart}")


def main() -> int:
    try:
        preflight()
    except Skip as e:
        print(f"SKIPPED: {e}")
        return 0
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    work = Path(tempfile.mkdtemp(prefix="konvrt-cluster-"))
    os.chmod(work, 0o755)
    cluster = Cluster(work=work, python=python)
    figures = Figures()
    started = time.monotonic()
    try:
        build_network()
        media = make_media(work / "media", python)
        cluster.start_services()
        cluster.release()
        cluster.start_web()
        for host in WORKERS:
            cluster.start_worker(host)
        for host in WORKERS:
            wait_for(lambda host=host: "sweeper: running" in worker_status(cluster, host), 90, f"{host}'s workers")
        check_spread(cluster, media, figures)
        check_lost_host(cluster, media, figures, fault="kill")
        check_lost_host(cluster, media, figures, fault="cut")
        check_web_restart(cluster, media, figures)
    except (AssertionError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"FAILED: {e}")
        log(f"host logs kept in {work}")
        return 1
    finally:
        cluster.stop_all()
        teardown_network()
    print()
    print(f"Cluster test passed in {time.monotonic() - started:.0f} s")
    print(f"  jobs per worker host: {figures.jobs_per_host}")
    for fault, requeued, completed in figures.recoveries:
        print(
            f"  {fault:4}: queued again after {requeued:5.1f} s (bound {RECOVERY_BOUND} s), "
            f"completed after {completed:5.1f} s"
        )
    for fault, gone in figures.workers_gone:
        print(f"  {fault:4}: /queues/ stopped counting the lost host's workers after {gone:5.1f} s "
              f"(bound {LOST_WORKERS_BOUND} s)")  # fmt: skip
    if figures.cut_ffmpeg_lived is not None:
        print(f"  cut : the cut-off FFmpeg stopped {figures.cut_ffmpeg_lived:.1f} s after the cut")
    print(f"  web restart: {figures.web_restart}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
