# shellcheck shell=bash
# Shared settings and helpers for infra/up.sh and infra/down.sh (sourced, not run).
#
# Environment (all optional):
#   PREFECT_PORT (4200)  MLFLOW_PORT (5000)  RECIPE_EMBED_STATE_DIR (infra/.run)
#   RECIPE_EMBED_POOL (recipe-embed-pool)  HEALTH_DEADLINE_S (90)  STOP_GRACE_S (20)
#   RECIPE_EMBED_HOME (data dir the worker's flow runs use; default <repo>/data)

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

pidfile() { echo "$STATE_DIR/$1.pid"; }
logfile() { echo "$STATE_DIR/$1.log"; }

# pid of a service if its PID file names a live process, else nothing (a stale file is removed)
live_pid() {
  local f pid
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; return 0; fi
  rm -f "$f"
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_ok() { "${BIN}python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# start NAME CMD...: run detached in its own session, PID file + log in the state dir
start_service() {
  local name="$1"; shift
  local log_path; log_path="$(logfile "$name")"
  printf '\n=== %s start %s ===\n' "$name" "$(date -u +%FT%TZ)" >>"$log_path"
  setsid "$@" >>"$log_path" 2>&1 < /dev/null &
  echo $! >"$(pidfile "$name")"
  log "$name started (pid $!, log $log_path)"
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
    if (( SECONDS >= end )); then
      tail -n 20 "$(logfile "$name")" >&2 || true
      die "$name not healthy after ${deadline_s}s (log: $(logfile "$name"))"
    fi
    sleep 1
  done
}

# stop NAME SIGNAL...: send each signal in turn to the service (then its process group), waiting
# STOP_GRACE_S after each; SIGKILL to the group last. Removes the PID file.
stop_service() {
  local name="$1"; shift
  local pid sig i
  if ! pid="$(live_pid "$name")"; then log "$name not running"; rm -f "$(pidfile "$name")"; return 0; fi
  for sig in "$@"; do
    log "$name: SIG$sig to pid $pid"
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_GRACE_S * 2; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null || break
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name still alive: SIGKILL to its process group"
    kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
  fi
  # children left in the service's session (server workers, uvicorn) go with it
  kill -s TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  rm -f "$(pidfile "$name")"
  log "$name stopped"
}

print_env() {
  cat <<ENV
export PREFECT_API_URL=$PREFECT_API_URL
export MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI
ENV
}
