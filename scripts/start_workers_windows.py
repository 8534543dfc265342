"""Konvrt's workers where ``fork`` is unavailable (Windows), run in the foreground.

    python scripts/start_workers_windows.py all|video|image|audio   run until Ctrl-C or `stop`
    python scripts/start_workers_windows.py status                   this launcher, and RQ's view
    python scripts/start_workers_windows.py stop                     ask the running launcher to stop

Each WORKER_CONFIG group runs ``count`` ``manage.py rqworker`` processes with RQ's SimpleWorker (a
job runs inside its worker process: nothing is forked), each with the group's worker_ttl and RQ's
scheduler enabled for retry delays (RQ's lock lets one act at a time); ``all`` adds the cron
scheduler (``rqcron config/cron.py``) and the sweeper (``konvrt_sweeper``: recovery sweeps, RQ
scheduler takeover, this machine's temp cleanup), one of each per machine as ``start_workers.sh``
runs them. The commands come from ``run_local.group_commands``, the
same place ``make run`` takes them from. A worker that exits unexpectedly is started again.

Limits compared with the forking pools of ``start_workers.sh``:

- Timeouts: without SIGALRM, RQ enforces a job's timeout with a timer thread that raises into the
  job; it interrupts Python code but not a blocking system call. FFmpeg runs carry their own
  timeout, so a stuck encode is still stopped.
- Stopping: Windows has no SIGTERM. The launcher stops its workers with a console Ctrl-C (RQ's warm
  shutdown: the current job finishes; FFmpeg runs in a process group of its own and does not get
  it) and terminates whatever is left after WORKER_STOP_GRACE seconds. ``stop`` from another console
  reaches the launcher through a file in WORKER_RUN_DIR.
- A worker terminated hard leaves its FFmpeg to run until that run's own timeout: Linux's
  parent-death signal has no equivalent here.

Environment: WORKER_RUN_DIR (state and logs; default storage/workers), WORKER_STOP_GRACE (default 60).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_local import ROOT, cron_command, group_commands, manage, worker_config

RUN_DIR = Path(os.environ.get("WORKER_RUN_DIR") or ROOT / "storage" / "workers")
GRACE = float(os.environ.get("WORKER_STOP_GRACE") or 60)
STATE_FILE = RUN_DIR / "windows-launcher.json"
STOP_FILE = RUN_DIR / "windows-launcher.stop"
# The launcher rewrites its state file this often; older than STALE_AFTER means it is gone
# (checking a pid would need os.kill, which on Windows terminates the process).
HEARTBEAT_SECONDS = 1.0
STALE_AFTER = 10.0
RESTART_DELAY = 5.0


def planned(target: str) -> dict[str, list[str]]:
    groups = list(worker_config()) if target == "all" else [target]
    commands = {
        f"{group}-{number}": command
        for group in groups
        for number, command in enumerate(group_commands(group, forking=False), start=1)
    }
    if target == "all":
        commands["cron"] = cron_command()
        commands["sweeper"] = manage("konvrt_sweeper")
    return commands


def read_state() -> dict | None:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state if time.time() - state.get("updated", 0) < STALE_AFTER else None


def write_state(children: dict[str, subprocess.Popen], target: str) -> None:
    state = {
        "pid": os.getpid(),
        "target": target,
        "updated": time.time(),
        "workers": {name: child.pid for name, child in children.items() if child.poll() is None},
    }
    partial = STATE_FILE.with_suffix(".partial")
    partial.write_text(json.dumps(state))
    partial.replace(STATE_FILE)


def start(name: str, command: list[str]) -> subprocess.Popen:
    log = (RUN_DIR / f"{name}.log").open("ab")
    # On Windows the workers share the launcher's console, the one way to send them a warm Ctrl-C.
    # Elsewhere they get a session of their own, and the launcher alone decides what they receive
    # (a terminal's Ctrl-C followed by the launcher's own would be RQ's cold shutdown).
    options = {} if os.name == "nt" else {"start_new_session": True}
    try:
        return subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **options
        )
    finally:
        log.close()  # the child has its own handle


def run(target: str) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if (state := read_state()) is not None:
        print(f"Workers are already running (launcher pid {state['pid']}).", file=sys.stderr)
        return 1
    STOP_FILE.unlink(missing_ok=True)
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    commands = planned(target)
    children = {name: start(name, command) for name, command in commands.items()}
    print(f"Started {', '.join(children)}; logs in {RUN_DIR}. Ctrl-C or `stop` to stop.", flush=True)
    exited_at: dict[str, float] = {}
    try:
        while not stopping and not STOP_FILE.exists():
            for name, child in children.items():
                if child.poll() is None:
                    continue
                # Like RQ's WorkerPool: a worker that died is replaced, not too eagerly.
                exited_at.setdefault(name, time.monotonic())
                if time.monotonic() - exited_at[name] >= RESTART_DELAY:
                    print(f"{name} exited with {child.returncode}; starting it again.", file=sys.stderr, flush=True)
                    children[name] = start(name, commands[name])
                    del exited_at[name]
            write_state(children, target)
            time.sleep(HEARTBEAT_SECONDS)
    finally:
        stop_children(children, console_ctrl_c_reached_them=stopping and os.name == "nt")
        STATE_FILE.unlink(missing_ok=True)
        STOP_FILE.unlink(missing_ok=True)
    print("Workers stopped.", flush=True)
    return 0


def stop_children(children: dict[str, subprocess.Popen], *, console_ctrl_c_reached_them: bool) -> None:
    """Warm shutdown (RQ lets each worker finish its job), then terminate what is left."""
    running = [child for child in children.values() if child.poll() is None]
    if not console_ctrl_c_reached_them:
        if os.name == "nt":
            # A console Ctrl-C to every process on this console (the launcher ignores it now that it
            # is stopping): the only warm signal a Windows console process can receive.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            os.kill(0, signal.CTRL_C_EVENT)
        else:
            for child in running:
                child.send_signal(signal.SIGINT)
    give_up = time.monotonic() + GRACE
    for child in running:
        try:
            child.wait(timeout=max(0.1, give_up - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.terminate()
    for child in running:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def status() -> int:
    state = read_state()
    if state is None:
        print("Workers: not running (no live launcher).")
    else:
        print(f"Workers: running {state['target']} (launcher pid {state['pid']})")
        for name, pid in state["workers"].items():
            print(f"  {name}: pid {pid}")
    print()
    command = manage(
        "shell", "--no-imports", "-c", "from apps.operations.worker import fleet_status; print(fleet_status())"
    )
    if subprocess.call(command, cwd=ROOT) != 0:
        print("(RQ's view is unavailable: is Redis reachable at REDIS_URL?)")
    return 0 if state is not None else 3


def stop() -> int:
    state = read_state()
    if state is None:
        print("Workers: not running.")
        return 0
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    STOP_FILE.touch()
    print(f"Asked launcher {state['pid']} to stop; running jobs get up to {GRACE:.0f} s to finish.", flush=True)
    give_up = time.monotonic() + GRACE + 30
    while STATE_FILE.exists() and time.monotonic() < give_up:
        time.sleep(0.5)
    if STATE_FILE.exists():
        print("The launcher did not stop in time.", file=sys.stderr)
        return 1
    print("Workers stopped.")
    return 0


def main(argv: list[str]) -> int:
    action = argv[1] if len(argv) > 1 else ""
    if action == "status":
        return status()
    if action == "stop":
        return stop()
    if action == "all" or action in worker_config():
        return run(action)
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
