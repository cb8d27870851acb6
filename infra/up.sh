#!/usr/bin/env bash
# Bring up the local stack: Prefect server, MLflow server (sqlite or PostgreSQL + local artifacts), a
# process worker (flow runs send heartbeats), the work pool, the promotion lock (global concurrency
# limit), the automations of infra/automations/ (crashed-run detection; alerts to $RECIPE_EMBED_WEBHOOK_URL,
# see infra/automations/alerts.yaml) and the deployments of prefect.yaml.
# Idempotent and safe to race: one up.sh/down.sh at a time per state dir (flock); what already runs and
# answers its health check is left alone; a port held by another process is an error.
#   infra/up.sh [--no-deploy]
# Ports: PREFECT_PORT (4200), MLFLOW_PORT (5000); state (PIDs, logs, DBs): RECIPE_EMBED_STATE_DIR (infra/.run).
# STACK_DB=postgres: a local PostgreSQL 15 cluster in PG_DIR (<state>/pg) on 127.0.0.1:PG_PORT (5433) holds
# the `prefect` and `mlflow` databases.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEPLOY=1
[[ "${1:-}" == "--no-deploy" ]] && DEPLOY=0

PREFECT_HEALTH="http://127.0.0.1:${PREFECT_PORT}/api/health"
MLFLOW_HEALTH="http://127.0.0.1:${MLFLOW_PORT}/health"
# flow runs started by this worker emit prefect.flow-run.heartbeat (the crashed-run automation needs them)
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${HEARTBEAT_S:-30}"

take_lock
mkdir -p "$PREFECT_HOME" "$STATE_DIR/mlflow/artifacts"

# the backend of a running stack cannot change under it
if [[ -f "$STATE_DIR/stack.db" ]] && [[ "$(cat "$STATE_DIR/stack.db")" != "$STACK_DB" ]] \
  && { live_pid prefect >/dev/null || live_pid mlflow >/dev/null; }; then
  die "the stack in $STATE_DIR runs on $(cat "$STATE_DIR/stack.db"), not $STACK_DB: run infra/down.sh first"
fi

# every port we will need is checked before anything starts
live_pid prefect >/dev/null || port_free prefect "$PREFECT_PORT" PREFECT_PORT
live_pid mlflow >/dev/null || port_free mlflow "$MLFLOW_PORT" MLFLOW_PORT

ensure_postgres() {
  [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/psql" ]] \
    || die "PostgreSQL binaries (initdb, pg_ctl, psql) not found in $PG_BIN: install PostgreSQL 15 or set PG_BIN"
  mkdir -p "$PG_DIR"
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "PostgreSQL refuses to run as root and there is no 'postgres' user to run it"
    chown postgres: "$PG_DIR"
    chmod 700 "$PG_DIR"
    runuser -u postgres -- test -w "$PG_DIR" \
      || die "the postgres user cannot reach $PG_DIR (a parent directory is not searchable): set PG_DIR to a directory it can reach, e.g. /var/tmp/recipe-embed-pg"
  fi
  if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
    rm -rf "$PG_DIR/data"
    [[ -s "$PG_DIR/password" ]] || (umask 077 && "${BIN}python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$PG_DIR/password")
    ((EUID == 0)) && chown postgres: "$PG_DIR/password"
    (cd "$PG_DIR" && pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$PG_DIR/password" \
      --auth=scram-sha-256 -E UTF8 --locale=C) >>"$(logfile postgres)" 2>&1 \
      || { tail -n 20 "$(logfile postgres)" >&2; die "initdb failed (log: $(logfile postgres))"; }
    log "postgres cluster created in $PG_DIR/data"
  fi
  if pg_running; then
    log "postgres already running ($PG_DIR/data)"
  else
    port_free postgres "$PG_PORT" PG_PORT
    (cd "$PG_DIR" && pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t "$HEALTH_DEADLINE_S" \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" start 9>&-) >>"$(logfile postgres)" 2>&1 \
      || { tail -n 20 "$PG_DIR/postgres.log" >&2 || true; die "postgres did not start (log: $PG_DIR/postgres.log)"; }
    log "postgres started on 127.0.0.1:$PG_PORT ($PG_DIR/data)"
  fi
  local db
  for db in prefect mlflow; do
    if [[ "$(PGPASSWORD="$(pg_password)" "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
      PGPASSWORD="$(pg_password)" "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -c "CREATE DATABASE $db" || die "cannot create database $db on 127.0.0.1:$PG_PORT"
      log "postgres database $db created"
    fi
  done
}

if [[ "$STACK_DB" == postgres ]]; then
  ensure_postgres
  PREFECT_DB_URL="$(pg_url asyncpg prefect)"
  MLFLOW_DB_URL="$(pg_url psycopg mlflow)"
else
  PREFECT_DB_URL="sqlite+aiosqlite:///$PREFECT_HOME/prefect.db"
  MLFLOW_DB_URL="sqlite:///$STATE_DIR/mlflow/mlflow.db"
fi
echo "$STACK_DB" >"$STATE_DIR/stack.db"

ensure_server() {  # NAME PORT HEALTH_URL CMD...
  local name="$1" port="$2" url="$3"; shift 3
  if live_pid "$name" >/dev/null; then
    wait_until "$name" "$HEALTH_DEADLINE_S" http_ok "$url"
    log "$name already running and healthy ($url)"
    return 0
  fi
  port_free "$name" "$port" "${name^^}_PORT"
  start_service "$name" "$@"
  wait_until "$name" "$HEALTH_DEADLINE_S" http_ok "$url"
  log "$name healthy ($url)"
}

# database URLs (with the password) go through the environment, not the command line
# the UI's own API URL: without it the Prefect UI on any port but 4200 asks 4200 and shows no run
ensure_server prefect "$PREFECT_PORT" "$PREFECT_HEALTH" \
  env PREFECT_API_DATABASE_CONNECTION_URL="$PREFECT_DB_URL" PREFECT_UI_API_URL="http://127.0.0.1:${PREFECT_PORT}/api" \
  "${BIN}prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"

ensure_server mlflow "$MLFLOW_PORT" "$MLFLOW_HEALTH" \
  env MLFLOW_BACKEND_STORE_URI="$MLFLOW_DB_URL" \
  "${BIN}mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
  --artifacts-destination "$STATE_DIR/mlflow/artifacts" --serve-artifacts

if "${BIN}prefect" work-pool inspect "$POOL" >/dev/null 2>&1; then
  log "work pool $POOL exists"
else
  "${BIN}prefect" work-pool create "$POOL" --type process >/dev/null
  log "work pool $POOL created"
fi

if "${BIN}prefect" gcl inspect "$PROMOTION_LIMIT" >/dev/null 2>&1; then
  log "global concurrency limit $PROMOTION_LIMIT exists"
else
  "${BIN}prefect" gcl create "$PROMOTION_LIMIT" --limit 1 >/dev/null
  log "global concurrency limit $PROMOTION_LIMIT created (limit 1)"
fi

"${BIN}python" "$ROOT/infra/apply_automations.py" | while read -r line; do log "$line"; done
[[ "${PIPESTATUS[0]}" == 0 ]] || die "could not apply the automations of infra/automations/"

worker_ready() { grep -q "started!" "$(logfile worker)" 2>/dev/null && [[ $(grep -c "started!" "$(logfile worker)") -ge ${WORKER_STARTS:-1} ]]; }
if live_pid worker >/dev/null; then
  log "worker already running on $POOL"
else
  WORKER_STARTS=$(($(grep -c "started!" "$(logfile worker)" 2>/dev/null || true) + 1))
  export WORKER_STARTS
  (cd "$ROOT" && start_service worker "${BIN}prefect" worker start --pool "$POOL" --type process \
    --name "recipe-embed-worker-$(hostname -s)-${PREFECT_PORT}")
  wait_until worker "$HEALTH_DEADLINE_S" worker_ready
  log "worker polling $POOL (flow-run heartbeats every ${PREFECT_FLOWS_HEARTBEAT_FREQUENCY}s)"
fi

if ((DEPLOY)); then
  (cd "$ROOT" && "${BIN}prefect" --no-prompt deploy --all) >>"$(logfile deploy)" 2>&1 \
    || { tail -n 30 "$(logfile deploy)" >&2; die "prefect deploy --all failed (log: $(logfile deploy))"; }
  log "deployed: $(cd "$ROOT" && "${BIN}prefect" deployment ls 2>/dev/null | grep -o 'train-and-evaluate/[a-z-]*' | sort -u | tr '\n' ' ')"
  "${BIN}python" "$ROOT/infra/apply_automations.py" --name-deployment-limits | while read -r line; do log "$line"; done
fi

log "up ($STACK_DB). Prefect UI: http://127.0.0.1:${PREFECT_PORT}   MLflow UI: http://127.0.0.1:${MLFLOW_PORT}"
log "export these to use the stack from your shell:"
print_env
