"""``mlflow models serve -m models:/<name>@champion`` answers queries with the model's embeddings.

A real scoring server (``--env-manager local``, no internet) on a free loopback port, over the embedded
sqlite store; two queries posted to ``/invocations`` must come back as the embeddings that
``SentenceTransformer.encode`` gives for the same texts.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow_test_helpers import free_port

from pipelines.config import load_config
from tests.integration.conftest import _mlflow_cmd, running_server

SERVE_START_TIMEOUT_S = 240.0
QUERIES = ["quick vegan thai dinner with tofu", "Gluten-free desserts with almonds under 30 minutes?"]


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(
        url + "/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return dict(json.loads(resp.read()))


def test_models_serve_answers_with_encode_embeddings(
    embedded_store: str, saved_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient
    from sentence_transformers import SentenceTransformer

    from pipelines import tracking

    name = f"recipe-embedder-serve-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(tmp_path / "data")},
            "tracking": {"tracking_uri": embedded_store, "experiment": f"serve-{name}"},
            "registry": {"model_name": name},
        },
    )
    tracking.connect(cfg)
    run_id = tracking.start_run(cfg, run_name="serve")
    uri = tracking.log_model(run_id, saved_model_dir, cfg)
    tracking.end_run(run_id)
    c = MlflowClient(embedded_store)
    c.create_registered_model(name)
    mv = c.create_model_version(name, source=uri, run_id=run_id)
    c.set_registered_model_alias(name, "champion", str(mv.version))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=embedded_store, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # the scoring server execs `uvicorn` by name: the venv's bin must be on PATH, as when it is activated
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [*_mlflow_cmd(), "models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running_server(
        cmd,
        ready_url=url + "/ping",
        log_path=tmp_path / "serve.log",
        env=env,
        cwd=tmp_path,
        what="mlflow models serve",
        timeout_s=SERVE_START_TIMEOUT_S,
    ):
        answer = _post(url, {"inputs": QUERIES})

    got = np.asarray(answer["predictions"], dtype=np.float64)
    model = SentenceTransformer(str(saved_model_dir), device="cpu")
    expected = np.asarray(model.encode(QUERIES), dtype=np.float64)
    assert got.shape == (len(QUERIES), model.get_embedding_dimension())
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
