# shellcheck shell=bash
# Shared settings and helpers for infra/up.sh and infra/down.sh (sourced, not run).
#
# Environment (all optional):
#   PREFECT_PORT (4200)  MLFLOW_PORT (5000)  RECIPE_EMBED_STATE_DIR (infra/.run)
#   RECIPE_EMBED_POOL (recipe-embed-pool)  HEALTH_DEADLINE_S (90)  STOP_GRACE_S (20)
#   WORKER_STOP_GRACE_S (5)  LOCK_WAIT_S (900)  HEARTBEAT_S (30)
#   RECIPE_EMBED_HOME (data dir the worker's flow runs use; default <repo>/data)
#   STACK_DB (sqlite | postgres)  PG_PORT (5433)  PG_DIR (<state>/pg)  PG_BIN (/usr/lib/postgresql/15/bin)

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${RECIPE_EMBED_STATE_DIR:-$ROOT/infra/.run}"
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
POOL="${RECIPE_EMBED_POOL:-recipe-embed-pool}"
PROMOTION_LIMIT="recipe-embedder-promotion"
HEALTH_DEADLINE_S="${HEALTH_DEADLINE_S:-90}"
STOP_GRACE_S="${STOP_GRACE_S:-20}"
WORKER_STOP_GRACE_S="${WORKER_STOP_GRACE_S:-5}"
LOCK_WAIT_S="${LOCK_WAIT_S:-900}"
STACK_DB="${STACK_DB:-sqlite}"
PG_PORT="${PG_PORT:-5433}"
PG_DIR="${PG_DIR:-$STATE_DIR/pg}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_USER="recipe_embed"

if [[ -x "$ROOT/.venv/bin/python" ]]; then BIN="$ROOT/.venv/bin/"; else BIN=""; fi

export PREFECT_API_URL="http://127.0.0.1:${PREFECT_PORT}/api"
export MLFLOW_TRACKING_URI="http://127.0.0.1:${MLFLOW_PORT}"
export PREFECT_HOME="$STATE_DIR/prefect"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# mlflow server otherwise starts a job runner and several huey workers that we never use
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export PREFECT_CLI_PROMPT=false
export RECIPE_EMBED_ROOT="$ROOT"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

case "$STACK_DB" in sqlite | postgres) ;; *) die "STACK_DB must be sqlite or postgres, not '$STACK_DB'" ;; esac

# One up.sh / down.sh at a time per state dir: a second one waits (LOCK_WAIT_S) and then finds the
# stack already up (or down). fd 9 is closed in every service we start, so no server inherits the lock.
take_lock() {
  command -v flock >/dev/null || die "flock not found (package util-linux)"
  exec 9>>"$STATE_DIR/stack.lock"
  if ! flock -n 9; then
    log "another infra/up.sh or down.sh is running on $STATE_DIR: waiting for it (up to ${LOCK_WAIT_S}s)"
    flock -w "$LOCK_WAIT_S" 9 || die "$STATE_DIR/stack.lock still held after ${LOCK_WAIT_S}s by another infra/up.sh or down.sh"
  fi
}

pidfile() { echo "$STATE_DIR/$1.pid"; }
logfile() { echo "$STATE_DIR/$1.log"; }

# proc_field PID N: field N of /proc/PID/stat; fails if there is no such process. The command name
# (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
proc_field() {
  local stat rest i=$(($2 - 2))
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  rest="${stat##*) }"
  # shellcheck disable=SC2086
  set -- $rest
  [[ -n "${!i:-}" ]] || return 1
  echo "${!i}"
}

# start time of a process (field 22: clock ticks since boot) and its process group (field 5)
proc_start() { proc_field "$1" 22; }
proc_pgrp() { proc_field "$1" 5; }
# a process that exited and is not reaped yet (state Z; a container's PID 1 may reap late) is gone
proc_zombie() { [[ "$(proc_field "$1" 3)" == Z ]]; }

# pids of the processes in process group $1 (none: prints nothing)
group_pids() {
  local d pg
  for d in /proc/[0-9]*; do
    pg="$(proc_pgrp "${d#/proc/}")" || continue
    [[ "$pg" == "$1" ]] && ! proc_zombie "${d#/proc/}" && echo "${d#/proc/}"
  done
  return 0
}

# "pid 123 (uvicorn), pid 124 (python3)": the members of a group, named
name_pids() {
  local pid out=""
  for pid in "$@"; do
    out+="${out:+, }pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | awk '{n = split($1, a, "/"); print a[n], $2, $3}' | sed 's/ *$//'))"
  done
  echo "$out"
}

# PID file: "PID START_TIME PGID". A PID is only ever signalled while its start time still matches, so a
# PID reused by an unrelated process is never signalled. The service owns its process group (setsid:
# PGID = PID): its children (server workers, uvicorn) stay in it when the service itself dies, and the
# kernel never hands that number to a new process while any of them lives.
write_pidfile() {
  local f start i
  f="$(pidfile "$1")"
  start="$(proc_start "$2")" || die "$1 (pid $2) exited at once (log: $(logfile "$1"))"
  for ((i = 0; i < 40; i++)); do  # setsid runs in the child just after the fork: wait for its new group
    [[ "$(proc_pgrp "$2" 2>/dev/null)" == "$2" ]] && break
    sleep 0.05
  done
  printf '%s %s %s\n' "$2" "$start" "$2" >"$f.tmp"
  mv -f "$f.tmp" "$f"
}

# the pids still in a service's recorded process group after the service process itself died (its
# orphans, e.g. MLflow's uvicorn after a kill -9 of `mlflow server`); nothing if the group is gone or
# its leader is alive (a live leader is the service, or, with another start time, not ours)
orphan_pids() {
  local f pid start pgid
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 0
  read -r pid start pgid <"$f" || true
  pgid="${pgid:-$pid}"
  [[ "$pgid" =~ ^[0-9]+$ ]] || return 0
  [[ -e "/proc/$pgid" ]] && ! proc_zombie "$pgid" && return 0
  group_pids "$pgid"
}

# pid of a service if its PID file names a live process with the recorded start time, else nothing
# (a stale file, or one naming a reused PID, is removed; a file whose group still has orphans is kept
# for down.sh)
live_pid() {
  local f pid start now
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  read -r pid start _ <"$f" || true
  if [[ "$pid" =~ ^[0-9]+$ && "$start" =~ ^[0-9]+$ ]] && now="$(proc_start "$pid")" && [[ "$now" == "$start" ]] \
    && ! proc_zombie "$pid"; then
    echo "$pid"
    return 0
  fi
  if [[ "$pid" =~ ^[0-9]+$ ]] && now="$(proc_start "$pid")" && [[ "$now" != "$start" ]]; then
    log "$1: PID file names pid $pid, now another process (start time ${now:-?} != ${start:-none}): not ours, ignored"
  fi
  [[ -n "$(orphan_pids "$1")" ]] || rm -f "$f"
  return 1
}

# the pid, if it is still the process recorded for the service (same start time) and has not exited
same_process() { local now; now="$(proc_start "$1")" && [[ "$now" == "$2" ]] && ! proc_zombie "$1"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_free NAME PORT VAR: die with a clear message if something else listens on the port; when it is
# this service's own orphaned server, name it and give the fix
port_free() {
  local orphans held=""
  orphans="$(orphan_pids "$1" | tr '\n' ' ')"
  if [[ -n "${orphans// /}" ]]; then
    port_open "$2" && held=", holding port $2"
    # shellcheck disable=SC2086
    die "$1 pid $(awk '{print $1}' "$(pidfile "$1")") died but its orphaned server still runs ($(name_pids $orphans)$held): run infra/down.sh to stop it"
  fi
  if port_open "$2"; then
    local who=""
    command -v ss >/dev/null && who="$(ss -ltnpH "sport = :$2" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 | sed 's/users:(("//; s/",pid=/ pid /')"
    die "port $2 for $1 is taken by another process${who:+ ($who)}: stop it or set $3 to a free port"
  fi
}

http_ok() { "${BIN}python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# start NAME CMD...: run detached in its own session, PID file (pid + start time) and log in the state dir.
# `setsid` execs the command in the forked child (which is never a process group leader here), so $!
# is the service itself; the lock's fd 9 is not passed on.
start_service() {
  local name="$1"; shift
  local log_path; log_path="$(logfile "$name")"
  printf '\n=== %s start %s ===\n' "$name" "$(date -u +%FT%TZ)" >>"$log_path"
  setsid "$@" >>"$log_path" 2>&1 </dev/null 9>&- &
  local pid=$!
  write_pidfile "$name" "$pid"
  log "$name started (pid $pid, log $log_path)"
}

# wait_until NAME DEADLINE_S CHECK...: poll CHECK until it succeeds, the service dies, or the deadline
wait_until() {
  local name="$1" deadline_s="$2"; shift 2
  local end=$((SECONDS + deadline_s))
  until "$@"; do
    if ! live_pid "$name" >/dev/null; then
      tail -n 20 "$(logfile "$name")" >&2 || true
      die "$name exited during start-up (log: $(logfile "$name"))"
    fi
    if ((SECONDS >= end)); then
      tail -n 20 "$(logfile "$name")" >&2 || true
      die "$name not healthy after ${deadline_s}s (log: $(logfile "$name"))"
    fi
    sleep 1
  done
}

# stop NAME GRACE_S SIGNAL...: send each signal in turn to the service, waiting up to GRACE_S after
# each; SIGKILL to its process group last. Every signal is sent only while the PID still has the
# recorded start time. Removes the PID file.
stop_service() {
  local name="$1" grace="$2"; shift 2
  local pid start sig i orphans
  if ! pid="$(live_pid "$name")"; then
    orphans="$(orphan_pids "$name" | tr '\n' ' ')"
    if [[ -n "${orphans// /}" ]]; then
      stop_orphans "$name" "$grace" "$orphans"
    else
      log "$name not running"
    fi
    rm -f "$(pidfile "$name")"
    return 0
  fi
  read -r _ start _ <"$(pidfile "$name")"
  for sig in "$@"; do
    same_process "$pid" "$start" || break
    log "$name: SIG$sig to pid $pid"
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 4; i++)); do
      same_process "$pid" "$start" || break
      sleep 0.25
    done
  done
  if same_process "$pid" "$start"; then
    log "$name still alive: SIGKILL to its process group"
    kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
  fi
  # children left in the service's session (server workers, uvicorn) go with it: the group is named
  # by the service's pid (setsid), and is only signalled while that pid is still ours or gone
  if ! [[ -e "/proc/$pid" ]] || [[ "$(proc_start "$pid")" == "$start" ]]; then  # gone, or ours (a zombie too)
    kill -s TERM -- "-$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < 40; i++)); do
    same_process "$pid" "$start" || break
    sleep 0.25
  done
  rm -f "$(pidfile "$name")"
  log "$name stopped"
}

# stop_orphans NAME GRACE_S "PIDS": the service process died but its group lives on (e.g. MLflow's
# uvicorn): SIGTERM the group, SIGKILL after GRACE_S. The group is the one recorded in the PID file;
# its number cannot belong to anyone else while these processes live.
stop_orphans() {
  local name="$1" grace="$2" pgid i
  read -r _ _ pgid <"$(pidfile "$name")" || true
  [[ -n "$pgid" ]] || read -r pgid _ <"$(pidfile "$name")"
  # shellcheck disable=SC2086
  log "$name: its process died but its group $pgid still runs ($(name_pids $3)): SIGTERM to the group"
  kill -s TERM -- "-$pgid" 2>/dev/null || true
  for ((i = 0; i < grace * 4; i++)); do
    [[ -n "$(group_pids "$pgid")" ]] || break
    sleep 0.25
  done
  if [[ -n "$(group_pids "$pgid")" ]]; then
    log "$name: group $pgid still alive: SIGKILL"
    kill -s KILL -- "-$pgid" 2>/dev/null || true
  fi
  log "$name stopped (orphaned group $pgid)"
}

# --- PostgreSQL (STACK_DB=postgres): a local cluster in PG_DIR, owned by the postgres user when run as root
pg_as() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_password() { cat "$PG_DIR/password"; }
pg_url() {  # DRIVER DB
  printf 'postgresql+%s://%s:%s@127.0.0.1:%s/%s' "$1" "$PG_USER" "$(pg_password)" "$PG_PORT" "$2"
}
pg_running() { [[ -f "$PG_DIR/data/PG_VERSION" ]] && pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }

print_env() {
  cat <<ENV
export PREFECT_API_URL=$PREFECT_API_URL
export MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI
ENV
}
