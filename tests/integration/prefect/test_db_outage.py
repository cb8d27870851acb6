"""A database outage mid-run: PostgreSQL (behind Prefect and MLflow) is killed while the flow runs.

The flow-run process ends on the server's errors without a final state, so its flow run would read
Running for ever and hold the nightly deployment's concurrency slot. Once the database is back,
``recipe-embed reconcile`` (which the flow also runs first) finds that the flow run's process, recorded
on its MLflow run, is gone and sets the flow run Crashed through the Prefect API, with a message saying
why; the next nightly run then runs. The heartbeat automation is paused meanwhile: whether it fires after
an outage depends on which events the outage lost, and here only reconcile's part is under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.prefect.test_deployments import ENDED, _cancel, _client, _flow_run_pids

ROOT = Path(__file__).resolve().parents[3]
RECIPE_EMBED = [sys.executable, "-m", "pipelines.cli"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            if (Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]) != "Z":
                alive.append(pid)
    return alive


CRASH_AUTOMATION = "recipe-embed-crash-zombie-flow-runs"


@contextlib.contextmanager
def _without_crash_automation(stack) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The heartbeat automation paused, as in an outage that lost its events (it then never fires), so
    only reconcile can end the flow run; enabled again afterwards."""
    autos = [a for a in stack.post("/automations/filter", {}) if a["name"] == CRASH_AUTOMATION]
    assert autos, f"automation {CRASH_AUTOMATION} not applied by up.sh"

    def enable(on: bool) -> None:
        for a in autos:
            stack.patch(f"/automations/{a['id']}", {"enabled": on})

    enable(False)
    try:
        yield
    finally:
        enable(True)


@pytest.mark.backends("postgres")
def test_postgres_killed_mid_run_then_reconcile_crashes_the_flow_run_and_the_next_nightly_runs(stack) -> None:
    stack.ensure_worker()
    with _without_crash_automation(stack):
        _outage_then_reconcile(stack)


def _outage_then_reconcile(stack) -> None:  # type: ignore[no-untyped-def]
    params = {"profile": "smoke", "overrides": {"training": {"device": "cpu", "seed": 31, "epochs": 1}}}
    # The flow-run process meets the outage at its next MLflow call (the skip check), which fails through the
    # task's retries (2, 10 and 30 s apart by default) and ends the process. One retry 1 s later takes it
    # down the same path 40 s sooner.
    quick_to_give_up = {"env": {"RECIPE_EMBED_MLFLOW_RETRY_DELAYS": "1"}}
    fr = stack.run_deployment("train-and-evaluate/nightly", params, quick_to_give_up)
    t0 = time.monotonic()
    run_id = stack.wait_label(fr, "mlflow.run_id", 600)
    assert stack.flow_run(fr)["state"]["type"] == "RUNNING"
    pids = _flow_run_pids(fr)
    assert pids, "no process of the flow run found"

    # the outage: the postmaster dies with SIGKILL while the flow runs
    postmaster = int((Path(stack.env["PG_DIR"]) / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    killed = time.monotonic()
    print(f"database killed {killed - t0:.0f}s after the run was created")
    deadline = time.monotonic() + 900
    while _alive(pids):  # the flow-run process ends on the errors (a set_state answered 500)
        assert time.monotonic() < deadline, f"flow-run processes {_alive(pids)} still alive 900 s into the outage"
        time.sleep(1)

    # the database comes back (up.sh starts PostgreSQL again, and the worker if it died)
    print(f"flow-run processes gone {time.monotonic() - killed:.0f}s after the database was killed")
    up = stack.script("up.sh", "--no-deploy")
    assert up.returncode == 0, up.stderr[-3000:]
    back = time.monotonic()
    print(f"database back {back - killed:.0f}s after it was killed")
    assert stack.flow_run(fr)["state"]["type"] == "RUNNING", "the outage left no stuck run: nothing to test"

    findings = ""
    while (state := stack.flow_run(fr)["state"])["type"] not in ENDED:
        assert time.monotonic() - back < 180, (
            f"flow run still {state['type']} 3 min after the database came back:\n{findings}"
        )
        r = subprocess.run(
            [*RECIPE_EMBED, "reconcile"], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120
        )
        findings = r.stdout + r.stderr
        time.sleep(1)
    assert state["type"] == "CRASHED", state
    message = state.get("message") or ""
    print(f"flow run {fr} {state['type']} {time.monotonic() - back:.0f}s after the database came back: {message}")
    assert "recipe-embed reconcile" in message and "is gone" in message and run_id in message, message
    assert _client(stack).get_run(run_id).info.status != "RUNNING"

    # the nightly slot is free: the next nightly run runs (it is not refused by the concurrency limit)
    nxt = stack.run_deployment("train-and-evaluate/nightly", params)
    st = stack.wait_state(nxt, {"RUNNING", *ENDED}, 300)["state"]
    assert st["type"] == "RUNNING", st
    _cancel(stack, nxt)
