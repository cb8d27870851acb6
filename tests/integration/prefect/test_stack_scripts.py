"""infra/up.sh and infra/down.sh without a running stack: PID files are checked before any signal, and a
taken port is one clear error. (The start-up race and the worker's stop time are tested against a real
stack in test_deployments.py::test_restart_keeps_everything_and_two_racing_up_sh_give_one_stack.)"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[3]


pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PG_", "STACK_DB"))}
    pp, mp = free_ports(2)
    env.update(RECIPE_EMBED_STATE_DIR=str(state), PREFECT_PORT=str(pp), MLFLOW_PORT=str(mp), **extra)
    return env


def _script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "infra" / name)], env=env, capture_output=True, text=True, timeout=100)


def _start_time(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(") ", 1)[1].split()[19]


@pytest.fixture
def sleeper():
    """An unrelated process that holds a PID a stale PID file could name."""
    p = subprocess.Popen(["sleep", "300"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("content", ["{pid} 1", "{pid}"], ids=["other-start-time", "no-start-time"])
def test_down_never_signals_a_reused_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes], content: str) -> None:
    # the PID file names a live process that is not the one it recorded (a reused PID), or records no start time
    assert _start_time(sleeper.pid) != "1"
    for name in ("worker", "mlflow", "prefect"):
        (tmp_path / f"{name}.pid").write_text(content.format(pid=sleeper.pid) + "\n")
    out = _script("down.sh", _env(tmp_path, STOP_GRACE_S="1", WORKER_STOP_GRACE_S="1"))
    assert out.returncode == 0, out.stderr
    time.sleep(0.5)
    assert sleeper.poll() is None, f"down.sh signalled an unrelated process:\n{out.stderr}"
    assert "not ours" in out.stderr, out.stderr
    assert not any((tmp_path / f"{n}.pid").exists() for n in ("worker", "mlflow", "prefect")), "stale PID file kept"


def test_down_signals_the_recorded_process(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    # the counterpart: a PID file with the right start time is ours, and down.sh stops it
    (tmp_path / "mlflow.pid").write_text(f"{sleeper.pid} {_start_time(sleeper.pid)}\n")
    out = _script("down.sh", _env(tmp_path, STOP_GRACE_S="2"))
    assert out.returncode == 0, out.stderr
    assert sleeper.wait(timeout=10) is not None
    assert not (tmp_path / "mlflow.pid").exists()


@pytest.mark.parametrize("which", ["PREFECT_PORT", "MLFLOW_PORT"])
def test_up_refuses_a_taken_port_with_one_clear_line(tmp_path: Path, which: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = _env(tmp_path)
        env[which] = str(port)
        out = _script("up.sh", env)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, out.stderr
    assert f"port {port}" in errors[0] and "taken" in errors[0] and which in errors[0], errors[0]
    # refused before anything started: no service was started (nor its PID file written)
    assert " started (pid " not in out.stderr, out.stderr
    assert not any(tmp_path.glob("*.pid")), list(tmp_path.iterdir())


def test_up_waits_for_the_lock_of_another_up_or_down(tmp_path: Path) -> None:
    # a held lock makes up.sh wait (and then give up with a clear message after LOCK_WAIT_S)
    lock = tmp_path / "stack.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "300"])
    try:
        deadline = time.monotonic() + 60  # until the holder has the lock (a loaded machine may take a while)
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.1)
        out = _script("up.sh", _env(tmp_path, LOCK_WAIT_S="2"))
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 1
    assert "stack.lock still held" in out.stderr, out.stderr
    assert not any(tmp_path.glob("*.pid"))


def test_crash_automation_is_valid_and_scoped_to_heartbeating_runs() -> None:
    # the automation up.sh applies must parse as Prefect's own schema, and only watch the runs of this
    # project's deployments, whose heartbeat (prefect.yaml) is well inside its window
    import yaml
    from prefect.server.events.schemas.automations import AutomationCreate

    spec = yaml.safe_load((ROOT / "infra/automations/crash-zombie-flow-runs.yaml").read_text())
    auto = AutomationCreate.model_validate(spec)
    trig = auto.trigger
    assert trig.posture == "Proactive" and trig.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled"} <= trig.expect
    assert trig.match_related.get("prefect.resource.id") in ("prefect.tag.recipe-embed", ["prefect.tag.recipe-embed"])
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    for d in deployments:
        assert "recipe-embed" in d["tags"], d["name"]
        heartbeat = int(d["work_pool"]["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
        assert 3 * heartbeat <= trig.within.total_seconds(), (d["name"], heartbeat)
