"""End to end under real servers: infra/up.sh, prefect deploy, deployment runs, MLflow registry.

No test relies on another having run first: the tests that need a champion trained on the smoke inputs
take the ``smoke_champion`` fixture, which runs the smoke deployment when the stack has no champion yet.
The smoke run and the full restart also run on a PostgreSQL-backed stack (``backends`` marker).
``infra/down.sh`` runs at the end in any case.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

MODEL = "recipe-embedder"
CPU = {"training": {"device": "cpu"}}


def _client(stack):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def _champion(stack):
    return _client(stack).get_model_version_by_alias(MODEL, "champion")


def _has_champion(stack) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        _champion(stack)
    except MlflowException:
        return False
    return True


@pytest.fixture(autouse=True)
def _worker_alive(stack):
    """Each test starts with a live worker, whatever the tests before it did to it."""
    stack.ensure_worker()


@pytest.fixture
def smoke_champion(stack):
    """A champion trained on the smoke inputs (the smoke deployment is run if the stack has none yet)."""
    if not _has_champion(stack):
        fr = stack.run_deployment("train-and-evaluate/smoke", {"profile": "smoke", "overrides": CPU})
        done = stack.wait_state(fr, ENDED, 900)
        assert done["state"]["type"] == "COMPLETED", done["state"]
    return _champion(stack)


ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _nightly_runs(stack, **state_filter) -> list[dict]:
    dep = stack.get("/deployments/name/train-and-evaluate/nightly")
    body = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}, **state_filter}, "limit": 200}
    return list(stack.post("/flow_runs/filter", body))


def _wait_one_running_rest_refused(stack, runs: list[str], timeout_s: float) -> tuple[str, list[str]]:
    """Of these nightly runs, exactly one runs and every other is cancelled by the concurrency limit."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = {fr: stack.flow_run(fr)["state"] or {} for fr in runs}
        cancelled = [fr for fr, st in states.items() if st.get("type") == "CANCELLED"]
        running = [fr for fr, st in states.items() if st.get("type") == "RUNNING"]
        if len(running) == 1 and len(cancelled) == len(runs) - 1:
            break
        assert not any(st.get("type") in ENDED - {"CANCELLED"} for st in states.values()), states
        assert len(cancelled) < len(runs), f"every nightly run was cancelled: {states}"
        assert time.monotonic() < deadline, f"expected one running and the others refused: {states}"
        time.sleep(2)
    for fr in cancelled:
        assert "concurrency" in (states[fr].get("message") or "").lower(), states[fr]
    return running[0], cancelled


def _cancel(stack, flow_run_id: str) -> None:
    out = stack.prefect("flow-run", "cancel", flow_run_id, timeout=120)
    assert out.returncode == 0, out.stderr
    stack.wait_state(flow_run_id, ENDED, 300)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone), False if it is still there at the deadline."""
    from pipelines.lifeline import is_alive

    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _flow_run_pids(flow_run_id: str) -> list[int]:
    """Processes of a flow run: the flow-run process and its children carry PREFECT__FLOW_RUN_ID."""
    pids = []
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes().split(b"\0"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def kill_host(stack, flow_run_id: str) -> None:
    """A host crash: SIGKILL the worker and every process of the flow run (and its training child)."""
    pids = _flow_run_pids(flow_run_id)
    assert pids, "no process of the flow run found"
    os.kill(stack.pid("worker"), signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_deployments_show_schedule_and_concurrency(stack) -> None:
    out = stack.prefect("deployment", "inspect", "train-and-evaluate/nightly", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "0 2 * * *" in out.stdout and "'timezone': 'UTC'" in out.stdout
    assert "CANCEL_NEW" in out.stdout and "'limit': 1" in out.stdout
    names = {d["name"] for d in stack.post("/deployments/filter", {})}
    assert {"nightly", "manual", "smoke"} <= names


@pytest.mark.backends("sqlite", "postgres")
def test_smoke_run_completes_and_sets_champion(stack) -> None:
    out = stack.prefect("deployment", "run", "train-and-evaluate/smoke", "--watch", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    champ = _champion(stack)
    run = _client(stack).get_run(champ.run_id)
    assert run.info.status == "FINISHED"
    assert "dim_384_cosine_map_at_100" in run.data.metrics
    assert "base_dim_384_cosine_map_at_100" in run.data.metrics


def test_worse_config_leaves_champion_unchanged(stack, smoke_champion) -> None:
    before = smoke_champion.version
    fr = stack.run_deployment("train-and-evaluate/manual", {"profile": "smoke-worse", "overrides": CPU})
    done = stack.wait_state(fr, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, 900)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert _champion(stack).version == before
    report = stack.report(fr)
    # rejected because it is worse, not because of a tie: a negative delta with the whole interval below 0
    import re

    m = re.search(
        r"KEPT champion \(version \d+\): map@100 at 384 ([-+]\d\.\d{4}) \[(-?\d\.\d{4}), (-?\d\.\d{4})\]", report
    )
    assert m, report
    delta, low, high = (float(g) for g in m.groups())
    assert delta < 0 and low <= delta <= high < 0, m.group(0)
    assert "tie" not in report.split("**Decision:**", 1)[1].splitlines()[0]


def test_rerun_with_unchanged_inputs_is_cached_and_skips_training(stack, smoke_champion) -> None:
    fr = stack.run_deployment("train-and-evaluate/smoke", {"profile": "smoke", "overrides": CPU})
    done = stack.wait_state(fr, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, 600)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    report = stack.report(fr)
    assert "**Synthesis:** cached" in report
    assert "SKIPPED training" in report


def test_two_nightly_runs_at_once_run_one_and_cancel_the_other(stack) -> None:
    # A new training seed and a few epochs: not skipped, and still training when cancelled below.
    # The worker may pick both runs up in one poll and submit them in either order, so the test asserts
    # the property (exactly one is refused by the deployment's concurrency limit, the other runs), not
    # which of the two is refused.
    params = {"profile": "smoke", "overrides": {"training": {"device": "cpu", "seed": 7, "epochs": 6}}}
    runs = [stack.run_deployment("train-and-evaluate/nightly", params) for _ in range(2)]
    ended = {"CANCELLED", "COMPLETED", "FAILED", "CRASHED"}
    deadline = time.monotonic() + 300
    while True:
        states = {fr: stack.flow_run(fr)["state"] or {} for fr in runs}
        cancelled = [fr for fr, st in states.items() if st.get("type") == "CANCELLED"]
        running = [fr for fr, st in states.items() if st.get("type") == "RUNNING"]
        if len(cancelled) == 1 and len(running) == 1:
            break
        assert len(cancelled) < 2, f"both nightly runs were cancelled: {states}"
        assert not any(st.get("type") in ended - {"CANCELLED"} for st in states.values()), states
        assert time.monotonic() < deadline, f"expected one run cancelled and one running after 300s: {states}"
        time.sleep(2)
    refused, first = cancelled[0], running[0]
    assert "concurrency" in (states[refused].get("message") or "").lower(), states[refused]

    # cancel the one that runs once its MLflow run exists: that run must end KILLED (on_cancellation hook)
    run_id = stack.wait_label(first, "mlflow.run_id", 300)
    out = stack.prefect("flow-run", "cancel", first, timeout=120)
    assert out.returncode == 0, out.stderr
    final = stack.wait_state(first, ended, 300)
    assert final["state"]["type"] == "CANCELLED", final["state"]
    client = _client(stack)
    deadline = time.monotonic() + 120  # the hook runs after the flow process is stopped
    while client.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(2)
    assert client.get_run(run_id).info.status == "KILLED"


# A host crash (worker and flow-run process killed mid-training: Crashed by the heartbeat automation, the
# nightly slot freed, the next nightly runs) is checked once, with its alert, in test_outcomes_and_alerts.py.


def test_retrying_nightly_run_keeps_its_slot_then_frees_it(stack) -> None:
    # A nightly run with one retry fails (bad overrides), waits 20 s for its retry, fails again. While it
    # waits it keeps the deployment's concurrency slot (a second nightly is refused); once it has ended
    # FAILED the slot is free (the next nightly runs): no lost slot, no deadlock. The second nightly is
    # refused when the worker picks it up (it asks every 2 s on the test stack); the slot stays taken for
    # the 20 s and while the retry runs, time enough on a busy machine.
    bad = {"profile": "smoke", "overrides": {"training": {"epochz": 1}}}
    dep = stack.get("/deployments/name/train-and-evaluate/nightly")
    body = {"parameters": bad, "empirical_policy": {"retries": 1, "retry_delay": 20}}
    fr = str(stack.post(f"/deployments/{dep['id']}/create_flow_run", body)["id"])
    deadline = time.monotonic() + 300
    while (st := stack.flow_run(fr)["state"] or {}).get("name") != "AwaitingRetry":
        assert st.get("type") not in ENDED, st
        assert time.monotonic() < deadline, f"no retry scheduled: {st}"
        time.sleep(1)
    second = stack.run_deployment("train-and-evaluate/nightly", {"profile": "smoke", "overrides": CPU})
    refused = stack.wait_state(second, {"RUNNING", *ENDED}, 120)
    assert refused["state"]["type"] == "CANCELLED", refused["state"]
    assert "concurrency" in (refused["state"].get("message") or "").lower(), refused["state"]
    final = stack.wait_state(fr, ENDED, 300)
    assert final["state"]["type"] == "FAILED", final["state"]
    assert final["run_count"] == 2, final["run_count"]
    params = {"profile": "smoke", "overrides": {"training": {"device": "cpu", "seed": 12, "epochs": 20}}}
    nxt = stack.run_deployment("train-and-evaluate/nightly", params)
    state = stack.wait_state(nxt, {"RUNNING", *ENDED}, 300)["state"]
    assert state["type"] == "RUNNING", state
    _cancel(stack, nxt)


def test_worker_offline_three_nights_gives_one_catch_up_run(stack) -> None:
    # The worker is away (pool paused) while three nightly runs fall due; they turn Late. When it is back
    # it submits all three: the deployment's limit (1, CANCEL_NEW) lets one run and refuses the others.
    params = {"profile": "smoke", "overrides": {"training": {"device": "cpu", "seed": 13, "epochs": 20}}}
    out = stack.prefect("work-pool", "pause", "recipe-embed-pool", timeout=120)
    assert out.returncode == 0, out.stderr
    try:
        dep = stack.get("/deployments/name/train-and-evaluate/nightly")
        runs = []
        for nights_ago in (3, 2, 1):
            due = (datetime.now(UTC) - timedelta(days=nights_ago)).isoformat()
            state = {"type": "SCHEDULED", "state_details": {"scheduled_time": due}}
            runs.append(
                str(
                    stack.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": params, "state": state})[
                        "id"
                    ]
                )
            )
        deadline = time.monotonic() + 120
        while any((stack.flow_run(fr)["state"] or {}).get("name") != "Late" for fr in runs):
            assert time.monotonic() < deadline, [stack.flow_run(fr)["state"] for fr in runs]
            time.sleep(2)
    finally:
        out = stack.prefect("work-pool", "resume", "recipe-embed-pool", timeout=120)
        assert out.returncode == 0, out.stderr
    running, _ = _wait_one_running_rest_refused(stack, runs, 300)
    _cancel(stack, running)


def _settled_scheduled_nightly_runs(stack, timeout_s: float) -> list[dict]:
    """The auto-scheduled nightly runs once there are at least 3 and the set has not changed for two
    scheduler ticks (PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS on the test stack)."""
    tick_s = float(stack.env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"])
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    stable_since = time.monotonic()
    while True:
        runs = _nightly_runs(stack, state={"type": {"any_": ["SCHEDULED"]}})
        scheduled = [fr for fr in runs if fr["auto_scheduled"]]
        ids = sorted(fr["id"] for fr in scheduled)
        if ids != seen:
            seen, stable_since = ids, time.monotonic()
        elif len(ids) >= 3 and time.monotonic() - stable_since > 2 * tick_s:
            return scheduled
        if time.monotonic() > deadline:
            return scheduled
        time.sleep(1)


def test_redeploy_during_scheduler_ticks_makes_no_duplicate_nightly(stack) -> None:
    # The scheduler ticks every 5 s on the test stack; three redeploys race it. Each night has at most one
    # scheduled nightly run.
    for _ in range(3):
        out = stack.prefect("--no-prompt", "deploy", "--all", timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # wait for the scheduler to fill the schedule, then for the list to stay the same over two of its
    # ticks (any duplicate a late tick makes is then in it)
    scheduled = _settled_scheduled_nightly_runs(stack, timeout_s=300)
    assert len(scheduled) >= 3, f"the scheduler made only {len(scheduled)} nightly runs"
    nights = [fr["expected_start_time"] for fr in scheduled]
    dupes = {n for n in nights if nights.count(n) > 1}
    assert not dupes, f"several nightly runs for {sorted(dupes)}"


@pytest.mark.backends("sqlite", "postgres")
def test_restart_keeps_everything_and_two_racing_up_sh_give_one_stack(stack) -> None:
    # something in the registry and the tracking store that does not depend on another test
    client = _client(stack)
    exp = client.get_experiment_by_name("restart-probe") or client.get_experiment(
        client.create_experiment("restart-probe")
    )
    run = client.create_run(exp.experiment_id)
    client.log_metric(run.info.run_id, "probe", 0.5)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models("name = 'restart-probe'"):
        client.create_registered_model("restart-probe")
    mv = client.create_model_version("restart-probe", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("restart-probe", "champion", mv.version)
    deployments = {
        d["name"]: (d["id"], [s["schedule"] for s in d["schedules"]]) for d in stack.post("/deployments/filter", {})
    }
    n_runs = len(stack.post("/flow_runs/filter", {"limit": 200}))
    automations = [a["name"] for a in stack.post("/automations/filter", {})]

    # down: the worker goes first, signalled by down.sh (TERM, then INT after its grace, KILL if still
    # there), and is gone before down.sh turns to the servers
    worker = stack.pid("worker")
    down = stack.script("down.sh", timeout=300)
    assert down.returncode == 0, down.stderr
    lines = down.stderr.splitlines()
    step = [i for i, line in enumerate(lines) if "worker: SIG" in line or "worker stopped" in line]
    assert step and f"worker: SIGTERM to pid {worker}" in lines[step[0]], down.stderr
    assert "worker stopped" in lines[step[-1]], down.stderr
    mlflow_first = next(i for i, line in enumerate(lines) if "mlflow: SIG" in line)
    assert step[-1] < mlflow_first, down.stderr
    assert _wait_gone(worker, 120), f"worker {worker} still alive after down.sh:\n{down.stderr}"
    assert not any(stack.state_dir.glob("*.pid")), down.stderr

    # two up.sh at once: both succeed, one stack, PID files naming the live services
    root = Path(__file__).resolve().parents[3]
    ups = [
        subprocess.Popen(
            ["bash", str(root / "infra/up.sh"), "--no-deploy"],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=900)[1] for p in ups]
    results = [(p.returncode, e) for p, e in zip(ups, errs, strict=True)]
    for rc, err in results:
        assert rc == 0, err[-3000:]
    assert any("waiting for it" in err for _, err in results), [e[-500:] for _, e in results]
    port = stack.env["PREFECT_PORT"]
    for name, needle in (("prefect", f"server start --host 127.0.0.1 --port {port}"),
                         ("mlflow", f"--port {stack.env['MLFLOW_PORT']}"),
                         ("worker", f"worker-{os.uname().nodename.split('.')[0]}-{port}")):  # fmt: skip
        pid = stack.pid(name)
        assert Path(f"/proc/{pid}").exists(), f"{name}.pid names a dead process"
        matches = []
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and needle in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    matches.append(int(d.name))
            except OSError:
                continue
        assert pid in matches, (name, pid, matches)
        assert len([m for m in matches if Path(f"/proc/{m}/stat").read_text().split()[3] != str(pid)]) == 1, (
            name,
            matches,
        )

    # everything is still there
    after = {
        d["name"]: (d["id"], [s["schedule"] for s in d["schedules"]]) for d in stack.post("/deployments/filter", {})
    }
    assert after == deployments
    assert len(stack.post("/flow_runs/filter", {"limit": 200})) >= n_runs
    assert sorted(a["name"] for a in stack.post("/automations/filter", {})) == sorted(automations)
    client = _client(stack)
    assert client.get_model_version_by_alias("restart-probe", "champion").version == mv.version
    assert client.get_run(run.info.run_id).data.metrics["probe"] == 0.5
