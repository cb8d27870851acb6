#!/usr/bin/env bash
# Bring up the local stack: Prefect server, MLflow server (sqlite + local artifacts), a process worker,
# the work pool, the promotion lock (global concurrency limit) and the deployments of prefect.yaml.
# Idempotent: what already runs and answers its health check is left alone.
#   infra/up.sh [--no-deploy]
# Ports: PREFECT_PORT (4200), MLFLOW_PORT (5000); state (PIDs, logs, DBs): RECIPE_EMBED_STATE_DIR (infra/.run).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEPLOY=1
[[ "${1:-}" == "--no-deploy" ]] && DEPLOY=0

PREFECT_HEALTH="http://127.0.0.1:${PREFECT_PORT}/api/health"
MLFLOW_HEALTH="http://127.0.0.1:${MLFLOW_PORT}/health"
mkdir -p "$PREFECT_HOME" "$STATE_DIR/mlflow/artifacts"

ensure_server() {  # NAME PORT HEALTH_URL CMD...
  local name="$1" port="$2" url="$3"; shift 3
  if live_pid "$name" >/dev/null; then
    wait_until "$name" "$HEALTH_DEADLINE_S" http_ok "$url"
    log "$name already running and healthy ($url)"
    return 0
  fi
  port_open "$port" && die "port $port is taken by another process (not ours): set ${name^^}_PORT to a free port"
  start_service "$name" "$@"
  wait_until "$name" "$HEALTH_DEADLINE_S" http_ok "$url"
  log "$name healthy ($url)"
}

ensure_server prefect "$PREFECT_PORT" "$PREFECT_HEALTH" \
  "${BIN}prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"

ensure_server mlflow "$MLFLOW_PORT" "$MLFLOW_HEALTH" \
  "${BIN}mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$STATE_DIR/mlflow/mlflow.db" \
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

worker_ready() { grep -q "started!" "$(logfile worker)" 2>/dev/null && [[ $(grep -c "started!" "$(logfile worker)") -ge ${WORKER_STARTS:-1} ]]; }
if live_pid worker >/dev/null; then
  log "worker already running on $POOL"
else
  WORKER_STARTS=$(( $(grep -c "started!" "$(logfile worker)" 2>/dev/null || true) + 1 ))
  export WORKER_STARTS
  (cd "$ROOT" && start_service worker "${BIN}prefect" worker start --pool "$POOL" --type process \
    --name "recipe-embed-worker-$(hostname -s)-${PREFECT_PORT}")
  wait_until worker "$HEALTH_DEADLINE_S" worker_ready
  log "worker polling $POOL"
fi

if (( DEPLOY )); then
  (cd "$ROOT" && "${BIN}prefect" --no-prompt deploy --all) >>"$(logfile deploy)" 2>&1 \
    || { tail -n 30 "$(logfile deploy)" >&2; die "prefect deploy --all failed (log: $(logfile deploy))"; }
  log "deployed: $(cd "$ROOT" && "${BIN}prefect" deployment ls 2>/dev/null | grep -o 'train-and-evaluate/[a-z-]*' | sort -u | tr '\n' ' ')"
fi

log "up. Prefect UI: http://127.0.0.1:${PREFECT_PORT}   MLflow UI: http://127.0.0.1:${MLFLOW_PORT}"
log "export these to use the stack from your shell:"
print_env
