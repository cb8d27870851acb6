"""MLflow backends for the tracking/registry tests: an embedded sqlite store and a REAL server.

``mlflow_server`` starts ``mlflow server`` (sqlite backend in a temp dir, local artifact root served
through ``--artifacts-destination/--serve-artifacts``) on a free 127.0.0.1 port, waits for
``/health`` and kills its whole process group at the end, even when a test fails. ``backend`` is
parametrized over both, so every registry test runs against each. Stores are session-scoped (the
schema migration costs seconds); tests stay independent through a unique registered-model name and
experiment per test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_test_helpers import free_port

from pipelines.config import PipelineConfig, load_config

SERVER_START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Backend:
    kind: str
    uri: str


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _mlflow_cmd() -> list[str]:
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
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
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server exited with {proc.returncode} before /health answered:\n{tail}")
            if time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server not healthy within {SERVER_START_TIMEOUT_S:.0f} s:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        _stop_group(proc)


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


@pytest.fixture(scope="session")
def embedded_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow-embedded")
    return f"sqlite:///{root / 'mlflow.db'}"


@pytest.fixture(scope="session", params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "embedded":
        return Backend("embedded", request.getfixturevalue("embedded_store"))
    return Backend("server", request.getfixturevalue("mlflow_server"))


@pytest.fixture
def mlflow_cfg(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    """A smoke config on ``backend`` with a unique model name and experiment; data_dir = tmp_path."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tag = uuid.uuid4().hex[:10]
    return load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(tmp_path / "data")},
            "tracking": {"tracking_uri": backend.uri, "experiment": f"test-{tag}"},
            "registry": {"model_name": f"recipe-embedder-{tag}", "lock_timeout_s": 120},
        },
    )


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MiniLM saved once per session: the stand-in for a trained candidate."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from pipelines.models import resolve_base_model

    out = tmp_path_factory.mktemp("candidate") / "model"
    SentenceTransformer(resolve_base_model("bundled:all-MiniLM-L6-v2"), device="cpu").save(str(out))
    return out


@pytest.fixture(scope="session")
def logged_model_uri(backend: Backend, saved_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The saved model logged once per backend; rule tests register it under many runs (fast)."""
    from pipelines import tracking

    root = tmp_path_factory.mktemp("shared-model")
    cfg = load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(root)},
            "tracking": {"tracking_uri": backend.uri, "experiment": "shared-model"},
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracking.connect(cfg)
        run_id = tracking.start_run(cfg, run_name="shared-model")
        uri = tracking.log_model(run_id, saved_model_dir, cfg)
        tracking.end_run(run_id)
    return uri
