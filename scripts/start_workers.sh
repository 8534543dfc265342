#!/usr/bin/env bash
# Konvrt's workers on this machine: one RQ worker pool per queue, sized by WORKER_CONFIG
# (config/settings/rq_settings.py: video 1, image 2, audio 1, webhook 2), RQ's cron scheduler for
# the periodic jobs in config/cron.py, and the sweeper (recovery sweeps, RQ scheduler takeover and this
# machine's temp cleanup: apps/operations/services/sweeper.py), one of each per machine.
#
#   scripts/start_workers.sh all                  start every pool, the cron scheduler and the sweeper
#   scripts/start_workers.sh video|image|audio|webhook|cron|sweeper  start one of them
#   scripts/start_workers.sh status               what runs here, and RQ's view of every worker
#   scripts/start_workers.sh stop [group]         warm shutdown: running jobs may finish first
#   scripts/start_workers.sh restart [group]
#   scripts/start_workers.sh run                  all, in the foreground until SIGTERM (Procfile)
#
# Each pool is `manage.py rqworker-pool <queue> --num-workers N` with Konvrt's forking worker class
# (apps.operations.worker.KonvrtWorker): RQ's WorkerPool replaces a worker that dies and runs
# RQ's scheduler (retry delays) in its workers; the worker class takes its worker_ttl from
# WORKER_CONFIG, since rqworker-pool has no --worker-ttl. Each job's timeout is its queue's, set
# when it is enqueued.
#
# Environment:
#   PYTHON             the interpreter (default: .venv/bin/python, else python3)
#   WORKER_RUN_DIR     pid files and logs (default: storage/workers)
#   WORKER_STOP_GRACE  seconds running jobs get to finish on stop before a cold shutdown (default 60)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
RUN_DIR="${WORKER_RUN_DIR:-$ROOT/storage/workers}"
GRACE="${WORKER_STOP_GRACE:-60}"
WORKER_GROUPS=(video image audio webhook)
FORKING_WORKER=apps.operations.worker.KonvrtWorker

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$RUN_DIR/$1.log"; }

# A pid file holds "<pid> <start time>": a pid file can outlive its process, and its pid be handed
# to another process (on a restarted host, a fresh pid namespace hands out the same small pids
# again, often to another group's worker). A pid counts as the group's only when the process is
# alive, runs the group's own command and started when the pid file says. A zombie (exited, not yet
# reaped by whoever adopted it) has stopped.
alive() {
  local state
  state="$(ps -p "$1" -o stat= 2>/dev/null)" || return 1
  [[ $state != Z* ]]
}

# When the process started: clock ticks since boot from /proc (field 22 of /proc/<pid>/stat,
# counted after the command name, which may hold spaces), else the start time ps prints.
start_time() {
  local stat
  if [[ -r /proc/$1/stat ]]; then
    stat="$(<"/proc/$1/stat")" || return 1
    stat="${stat##*) }"
    read -r -a fields <<<"$stat"
    echo "${fields[19]}"
  else
    ps -p "$1" -o lstart= 2>/dev/null | tr -s ' ' '_'
  fi
}

# What the group's process runs: its queue's pool, or the cron scheduler.
group_marker() {
  case "$1" in
    cron) echo "manage.py rqcron" ;;
    sweeper) echo "manage.py konvrt_sweeper" ;;
    *) echo "manage.py rqworker-pool ${1}_queue" ;;
  esac
}
ours() { ps -p "$1" -o args= 2>/dev/null | grep -qF -- "$(group_marker "$2")"; }

running_pid() {
  local file pid started
  file="$(pid_file "$1")"
  [[ -f $file ]] || return 1
  read -r pid started <"$file" || true
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && ours "$pid" "$1" && [[ -n ${started:-} && $(start_time "$pid") == "$started" ]]; then
    echo "$pid"
    return 0
  fi
  rm -f "$file"
  return 1
}

descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    descendants "$child"
    echo "$child"
  done
}

wait_gone() { # pid seconds
  local polls=$(($2 * 5))
  while alive "$1"; do
    ((polls-- > 0)) || return 1
    sleep 0.2
  done
}

group_command() {
  if [[ $1 == cron ]]; then
    COMMAND=("$PYTHON" manage.py rqcron config/cron.py)
    return
  fi
  if [[ $1 == sweeper ]]; then
    COMMAND=("$PYTHON" manage.py konvrt_sweeper)
    return
  fi
  local queue count
  read -r queue count < <("$PYTHON" -c "from config.settings.rq_settings import WORKER_CONFIG as c; w = c['$1']; print(w['queue'], w['count'])")
  [[ -n ${count:-} ]] || { echo "$1: cannot read WORKER_CONFIG" >&2; return 1; }
  COMMAND=("$PYTHON" manage.py rqworker-pool "$queue" --num-workers "$count" --worker-class "$FORKING_WORKER")
}

start_group() {
  local group=$1 pid log
  if pid="$(running_pid "$group")"; then
    echo "$group: already running (pid $pid)"
    return 0
  fi
  mkdir -p "$RUN_DIR"
  group_command "$group"
  log="$(log_file "$group")"
  # A session of its own, so that Ctrl-C in this terminal or closing it does not reach the workers.
  if command -v setsid >/dev/null; then
    setsid "${COMMAND[@]}" >>"$log" 2>&1 </dev/null &
  else
    nohup "${COMMAND[@]}" >>"$log" 2>&1 </dev/null &
  fi
  pid=$!
  echo "$pid $(start_time "$pid")" >"$(pid_file "$group")"
  sleep 1
  if ! alive "$pid"; then
    echo "$group: exited at start; the end of $log:" >&2
    tail -n 20 "$log" >&2
    rm -f "$(pid_file "$group")"
    return 1
  fi
  echo "$group: started (pid $pid), log $log"
}

stop_group() {
  local group=$1 pid workers
  if ! pid="$(running_pid "$group")"; then
    echo "$group: not running"
    return 0
  fi
  echo "$group: stopping (pid $pid); running jobs get up to ${GRACE}s to finish"
  # Warm shutdown: the pool asks each worker to stop after its current job.
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$GRACE"; then
    # Cold shutdown: a second signal makes each RQ worker kill its work-horse (FFmpeg dies with it)
    # and exit; the interrupted operations are retried through RQ's abandoned-job handling.
    echo "$group: jobs still running after ${GRACE}s; stopping them"
    workers="$(pgrep -P "$pid" || true)"
    [[ -z $workers ]] || kill -TERM $workers 2>/dev/null || true
    # RQ ignores a second signal that comes within a second of the first: ask again if needed.
    if ! wait_gone "$pid" 3; then
      [[ -z $workers ]] || kill -TERM $workers 2>/dev/null || true
    fi
    if ! wait_gone "$pid" 10; then
      kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || true
    fi
  fi
  rm -f "$(pid_file "$group")"
  echo "$group: stopped"
}

status() {
  local group pid workers all_running=0
  for group in "${WORKER_GROUPS[@]}" cron sweeper; do
    if pid="$(running_pid "$group")"; then
      workers="$(pgrep -P "$pid" | tr '\n' ' ' || true)"
      echo "$group: running (pid $pid${workers:+; workers ${workers% }})"
    else
      echo "$group: not running"
      all_running=3
    fi
  done
  echo
  "$PYTHON" manage.py shell --no-imports -c "from apps.operations.worker import fleet_status; print(fleet_status())" ||
    echo "(RQ's view is unavailable: is Redis reachable at REDIS_URL?)"
  return "$all_running"
}

check_group() { [[ $1 =~ ^(video|image|audio|webhook|cron|sweeper)$ ]] || usage; }

start_all() { # one group, or every pool, then the cron scheduler and the sweeper
  local group
  if [[ -n ${1:-} ]]; then
    check_group "$1"
    start_group "$1"
    return
  fi
  for group in "${WORKER_GROUPS[@]}" cron sweeper; do start_group "$group"; done
}

stop_all() { # one group, or the sweeper and the cron scheduler first (they enqueue), then every pool
  local group
  if [[ -n ${1:-} ]]; then
    check_group "$1"
    stop_group "$1"
    return
  fi
  for group in sweeper cron "${WORKER_GROUPS[@]}"; do stop_group "$group"; done
}

run_foreground() {
  # For a platform that runs one foreground process per dyno: start everything, stop everything
  # (warm) on SIGTERM or when any part exits, so the platform restarts the whole set.
  trap 'stop_all; exit 0' TERM INT
  start_all
  wait -n || true
  echo "A worker process exited; stopping the others." >&2
  stop_all
  exit 1
}

case "${1:-}" in
  all) start_all ;;
  video | image | audio | cron | sweeper) start_group "$1" ;;
  status) status ;;
  stop) stop_all "${2:-}" ;;
  restart)
    stop_all "${2:-}"
    start_all "${2:-}"
    ;;
  run) run_foreground ;;
  *) usage ;;
esac
