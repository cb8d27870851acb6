#!/usr/bin/env bash
# Stop the local stack started by infra/up.sh: the worker first, then the servers, then PostgreSQL if
# the stack ran on it. Safe to run twice, when nothing runs, and concurrently with up.sh (same lock).
# The worker: SIGTERM (Prefect's worker turns it into an interrupt and stops polling), then, after
# WORKER_STOP_GRACE_S (5), SIGINT, which its own handler turns into SIGKILL: its graceful shutdown does
# not finish on its own. Flow runs it started run in their own sessions and are left to finish.
# Only processes whose PID *and* start time match their PID file are ever signalled. Each server owns
# its process group (PID file "PID START PGID"): a server whose own process died (kill -9) while its
# children still run (MLflow's uvicorn) is named and its group stopped, so the port is freed.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

take_lock
stop_service worker "$WORKER_STOP_GRACE_S" TERM INT
stop_service mlflow "$STOP_GRACE_S" TERM
stop_service prefect "$STOP_GRACE_S" TERM
if pg_running; then
  (cd "$PG_DIR" && pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t "$STOP_GRACE_S" stop) >/dev/null \
    || die "postgres in $PG_DIR/data did not stop (log: $PG_DIR/postgres.log)"
  log "postgres stopped"
fi
log "down (state kept in $STATE_DIR)"
