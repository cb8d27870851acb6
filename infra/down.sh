#!/usr/bin/env bash
# Stop the local stack started by infra/up.sh: the worker first (TERM, then INT), then the servers.
# Safe to run twice, and when nothing runs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stop_service worker TERM INT
stop_service mlflow TERM
stop_service prefect TERM
log "down (state kept in $STATE_DIR)"
