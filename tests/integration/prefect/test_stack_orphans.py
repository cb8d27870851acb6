"""The stack owns process groups, not PIDs: after ``kill -9`` of the PID in ``mlflow.pid`` its uvicorn
child lives on and serves; ``infra/up.sh`` names that orphan and gives the fix, ``infra/down.sh`` stops
it and frees the port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.prefect.test_stack_scripts import _env, _script

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# MLflow started the way infra/up.sh starts it: start_service (setsid, PID file), then its health check
START_MLFLOW = """
source infra/common.sh
start_service mlflow env MLFLOW_BACKEND_STORE_URI="sqlite:///$STATE_DIR/mlflow.db" \\
  "${BIN}mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1
wait_until mlflow 300 http_ok "http://127.0.0.1:$MLFLOW_PORT/health"
"""


def _healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _group(pgid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                rest = (d / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if rest[0] != "Z" and int(rest[2]) == pgid:
                found.append(int(d.name))
    return found


def test_kill_9_of_mlflow_then_down_frees_the_port(tmp_path: Path) -> None:
    env = _env(tmp_path, STOP_GRACE_S="5")
    port = env["MLFLOW_PORT"]
    try:
        start = subprocess.run(
            ["bash", "-c", START_MLFLOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400
        )
        assert start.returncode == 0, start.stderr[-3000:]
        pid = int((tmp_path / "mlflow.pid").read_text().split()[0])
        pgid = os.getpgid(pid)
        assert pgid == pid, "the service leads its own process group"
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        assert _healthy(port), "the scenario needs the orphaned uvicorn child still serving"

        up = _script("up.sh", env)
        assert up.returncode == 1
        errors = [ln for ln in up.stderr.splitlines() if "error" in ln]
        assert len(errors) == 1, up.stderr
        assert "orphaned" in errors[0] and f"port {port}" in errors[0] and "run infra/down.sh" in errors[0], errors[0]
        assert not (tmp_path / "prefect.pid").exists(), "up.sh started something before refusing"

        down = _script("down.sh", env)
        assert down.returncode == 0, down.stderr
        assert "mlflow not running" not in down.stderr, down.stderr
        assert f"group {pgid}" in down.stderr, down.stderr
        deadline = time.monotonic() + 60
        while _healthy(port) or _group(pgid):
            assert time.monotonic() < deadline, f"mlflow still serving after down.sh:\n{down.stderr}"
            time.sleep(0.5)
        assert not (tmp_path / "mlflow.pid").exists()
    finally:
        for p in (
            _group(int((tmp_path / "mlflow.pid").read_text().split()[0])) if (tmp_path / "mlflow.pid").exists() else []
        ):
            os.kill(p, signal.SIGKILL)
