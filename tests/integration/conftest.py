"""Real servers for the integration tests, each started once per pytest session and shared.

``stack``: the local stack (infra/up.sh: Prefect server, MLflow server, worker, deployments) on free
ports with a temporary state and data dir, torn down (infra/down.sh) at the end of the session. It is
parametrized by database backend: a test runs on ``sqlite``; a test marked
``@pytest.mark.backends("sqlite", "postgres")`` runs on a PostgreSQL-backed stack too (``STACK_DB=postgres``;
skipped, with the reason, where the PostgreSQL binaries or the ``postgres`` user are missing, and an
error under ``REQUIRE_POSTGRES=1``). Tests are grouped by backend, so at most one stack runs at a time.

``mlflow_server``: a bare ``mlflow server`` (sqlite store, artifacts served through the proxy), for tests
of the server alone (tests/integration/mlflow).

Every test that takes one of them shares it with the rest of the session, so a test isolates itself:
its own MLflow experiment and registered-model name, its own deployment parameters (a seed of its own
makes a new training run rather than a cached one), its own data dir under ``tmp_path``; it leaves the
worker alive (or calls ``stack.ensure_worker()`` first) and cancels the flow runs it leaves running.
See tests/integration/README.md.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[2]
RETRY_STATUS = {429, 502, 503}
# the prefect CLI of the interpreter running the tests (whatever venv that is)
PREFECT = str(Path(sys.executable).with_name("prefect"))
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def postgres_missing() -> str | None:
    """Why a PostgreSQL-backed stack cannot start here, or None."""
    missing = [b for b in ("initdb", "pg_ctl", "psql") if not (PG_BIN / b).exists()]
    if missing:
        return f"PostgreSQL binaries not found in {PG_BIN}: {', '.join(missing)} (set PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' user to run the cluster"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run the test on each stack backend (sqlite, postgres)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "stack" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        backends = marker.args if marker else ("sqlite",)
        metafunc.parametrize("stack", backends, indirect=True, scope="session")


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    mlflow_uri: str
    data_dir: Path
    state_dir: Path
    backend: str = "sqlite"

    def script(self, name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run infra/<name> (up.sh, down.sh) against this stack's ports and state dir."""
        return subprocess.run(
            ["bash", str(ROOT / "infra" / name), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def ensure_worker(self) -> None:
        """Restart the worker (up.sh --no-deploy) if an earlier test left it dead, e.g. a failed crash test."""
        f = self.state_dir / "worker.pid"
        if f.exists() and Path(f"/proc/{f.read_text().split()[0]}").exists():
            return
        up = self.script("up.sh", "--no-deploy")
        assert up.returncode == 0, f"infra/up.sh failed:\n{up.stderr[-4000:]}"

    def pid(self, name: str) -> int:
        """The pid recorded in a service's PID file ("PID START_TIME")."""
        return int((self.state_dir / f"{name}.pid").read_text().split()[0])

    def prefect(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PREFECT, *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; like Prefect's own client, retry 429/502/503 (a busy sqlite server) a few times."""
        for attempt in range(6):
            r = httpx.request(method, f"{self.api}{path}", json=body, timeout=30)
            if r.status_code not in RETRY_STATUS or attempt == 5:
                break
            time.sleep(0.5 * 2**attempt)
        r.raise_for_status()
        return r.json() if r.content else None  # PUT / PATCH answer 204, no body

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("PUT", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("PATCH", path, body)

    def run_deployment(self, name: str, parameters: dict[str, Any], job_variables: dict[str, Any] | None = None) -> str:
        dep = self.get(f"/deployments/name/{name}")
        # the idempotency key makes a retried POST return the same flow run instead of a second one
        body: dict[str, Any] = {"parameters": parameters, "idempotency_key": uuid.uuid4().hex}
        if job_variables:
            body["job_variables"] = job_variables
        return str(self.post(f"/deployments/{dep['id']}/create_flow_run", body)["id"])

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/flow_runs/{flow_run_id}"))

    def wait_state(self, flow_run_id: str, types: set[str], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            fr = self.flow_run(flow_run_id)
            if fr["state"] and fr["state"]["type"] in types:
                return fr
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id} still {fr['state']} after {timeout_s}s")
            time.sleep(1)

    def wait_label(self, flow_run_id: str, label: str, timeout_s: float) -> str:
        """The value of a flow-run label once it is set (fails if the run ends first or time runs out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            fr = self.flow_run(flow_run_id)
            value = (fr.get("labels") or {}).get(label)
            if value:
                return str(value)
            if fr["state"] and fr["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                raise AssertionError(f"flow run {flow_run_id} ended {fr['state']['type']} without label {label}")
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id} has no label {label} after {timeout_s}s")
            time.sleep(1)

    def report(self, flow_run_id: str) -> str:
        arts = self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        return "\n".join(a["data"] for a in arts if str(a.get("key")).endswith("-report"))  # one key per deployment


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres" and (why := postgres_missing()):
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1: {why}")
        pytest.skip(why)
    state = tmp_path_factory.mktemp(f"infra-state-{backend}")
    data = tmp_path_factory.mktemp(f"recipe-embed-home-{backend}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PG_", "STACK_DB"))}
    pp, mp, pgp = free_ports(3)
    env.update(
        PREFECT_PORT=str(pp),
        MLFLOW_PORT=str(mp),
        RECIPE_EMBED_STATE_DIR=str(state),
        RECIPE_EMBED_HOME=str(data),
        PREFECT_API_URL=f"http://127.0.0.1:{pp}/api",
        PREFECT_HOME=str(state / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # the scheduler ticks every 5 s instead of 60 s, so a redeploy can race it within a test
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        # the worker asks for new flow runs every 2 s instead of 10 s: each deployment run of a test starts
        # up to 8 s sooner (about 20 runs in a session)
        PREFECT_WORKER_QUERY_SECONDS="2",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mp}",
        HF_HUB_OFFLINE="1",
        HEALTH_DEADLINE_S="240",
        STACK_DB=backend,
    )
    pg_dir = None
    if backend == "postgres":
        # pytest's tmp dirs (/tmp/pytest-of-root, mode 0700) are not searchable by the postgres user: the
        # cluster lives in its own dir under /tmp, which up.sh hands to that user when run as root
        pg_dir = Path(tempfile.mkdtemp(prefix="recipe-embed-pg-"))
        env.update(PG_PORT=str(pgp), PG_DIR=str(pg_dir), PG_BIN=str(PG_BIN))
    s = Stack(env, f"http://127.0.0.1:{pp}/api", f"http://127.0.0.1:{mp}", data, state, backend)
    try:
        up = s.script("up.sh")
        assert up.returncode == 0, f"infra/up.sh failed:\n{up.stderr[-4000:]}"
        yield s
    finally:
        down = s.script("down.sh", timeout=300)
        for name in ("worker", "mlflow", "prefect"):
            assert not (state / f"{name}.pid").exists(), f"{name} PID file left behind:\n{down.stderr}"
        if pg_dir is not None:
            assert not (pg_dir / "data" / "postmaster.pid").exists(), f"postgres left running:\n{down.stderr}"
            shutil.rmtree(pg_dir, ignore_errors=True)


SERVER_START_TIMEOUT_S = 180.0


def _answers(url: str) -> bool:
    """``url`` answers 200 (a server's /health or /ping)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_server(
    cmd: list[str], *, ready_url: str, log_path: Path, env: dict[str, str], cwd: Path, what: str,
    timeout_s: float = SERVER_START_TIMEOUT_S,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Start ``cmd`` in a session of its own (output to ``log_path``), wait until ``ready_url`` answers 200,
    yield it, then stop its process group. The test fails, with the log's tail, when the server exits first
    or does not answer within ``timeout_s``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(ready_url):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"{what} exited with {proc.returncode} before {ready_url} answered:\n{tail}")
            if time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"{what} did not answer {ready_url} within {timeout_s:.0f} s:\n{tail}")
            time.sleep(0.5)
        yield proc
    finally:
        _stop_group(proc)


def _mlflow_cmd() -> list[str]:
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    cmd = [
        *_mlflow_cmd(),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no GenAI job runner/huey workers
    with running_server(
        cmd, ready_url=url + "/health", log_path=root / "server.log", env=env, cwd=root, what="mlflow server"
    ):
        yield url


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the server's own process group (it was started in a new session), then KILL if needed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    else:  # the leader is gone; make sure no worker of its group survives
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
