"""MLflow backends for the tracking/registry tests: an embedded sqlite store and a REAL server.

``mlflow_server`` (tests/integration/conftest.py) starts ``mlflow server`` (sqlite backend in a temp
dir, local artifact root served through ``--artifacts-destination/--serve-artifacts``) on a free
127.0.0.1 port once per session, waits for ``/health`` and kills its whole process group at the end,
even when a test fails.

A test that takes ``backend`` (or ``mlflow_cfg``, ``logged_model_uri``) runs on the embedded store.
Where the server's own behaviour is what the test checks (HTTP and its errors, several processes at
once, the artifact proxy), mark it ``@pytest.mark.mlflow_backends("embedded", "server")`` and it runs
on both. Stores are session-scoped (the schema migration costs seconds); tests stay independent
through a unique registered-model name and experiment per test.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.config import PipelineConfig, load_config


@dataclass(frozen=True)
class Backend:
    kind: str
    uri: str


@pytest.fixture(scope="session")
def embedded_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow-embedded")
    return f"sqlite:///{root / 'mlflow.db'}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mlflow_backends(*kinds): run the test on each MLflow backend (embedded, server); default embedded"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("mlflow_backends")
        kinds = marker.args if marker else ("embedded",)
        metafunc.parametrize("backend", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Backend:
    kind = getattr(request, "param", "embedded")
    if kind == "embedded":
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
