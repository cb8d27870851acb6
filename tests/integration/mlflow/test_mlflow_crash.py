"""Crash recovery end to end: ``recipe-embed run`` killed with -9 mid-training, reconciled by the next run;
a model trained but never logged is logged and promoted from its directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )


def test_run_killed_during_training_is_reconciled_by_the_next_run_which_promotes_then_skips(tmp_path: Path) -> None:
    """``recipe-embed run`` runs the flow's stage sequence: the next run starts by reconciling the run a
    ``kill -9`` left open, promotes its candidate, and a run on unchanged inputs skips training."""
    from mlflow import MlflowClient

    data = tmp_path / "data"
    store = ["-p", "smoke", "--set", f"paths.data_dir={data}"]
    sets = [*store, "--set", "training.max_steps=100000"]
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", *sets], stdout=out, stderr=subprocess.STDOUT, env=_env()
        )
    try:
        deadline = time.monotonic() + 300
        while "[4/7] train" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        time.sleep(3)  # inside the training loop
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = next(ln.split()[2] for ln in log.read_text().splitlines() if ln.startswith("MLflow run "))
    uri = f"sqlite:///{(data / 'mlflow.db').resolve()}"
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"  # the crash left it open

    first = _cli("run", *store)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"reconcile: run {run_id} ended (its process {proc.pid} on " in first.stdout
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FAILED" and "is gone" in run.data.tags["recipe_embed.end_reason"]
    assert "PROMOTED (version 1)" in first.stdout, first.stdout[-3000:]
    again = _cli("reconcile", *sets)
    assert again.returncode == 0 and run_id not in again.stdout  # nothing left to do

    second = _cli("run", *store)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "SKIPPED" in second.stdout and "[4/7] train" not in second.stdout, second.stdout[-3000:]


def test_a_model_trained_but_never_logged_is_logged_and_promoted_from_its_directory(
    tmp_path: Path, saved_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from mlflow import MlflowClient

    for var in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "models" / "m1"
    shutil.copytree(saved_model_dir, root / "model")
    (root / "train_result.json").write_text(
        json.dumps({"loss_history": [{"step": 1, "loss": 1.0}], "train_pairs": 8, "seconds": 1.0, "device": "cpu"})
    )
    dataset = tmp_path / "dataset"
    made = CliRunner().invoke(app, ["synthesize", "--out", str(dataset), "-p", "smoke"])
    assert made.exit_code == 0, made.output
    name = f"recipe-embedder-{uuid.uuid4().hex[:8]}"
    sets = ["-p", "smoke", "--set", f"paths.data_dir={tmp_path / 'data'}", "--set", f"registry.model_name={name}"]
    r = CliRunner().invoke(app, ["log", "--model-dir", str(root), "--data", str(dataset), "--promote", *sets])
    assert r.exit_code == 0, r.output
    run_id = next(ln.split()[2] for ln in r.output.splitlines() if ln.startswith("MLflow run "))
    assert "version 1: promoted (no champion yet)" in r.output
    c = MlflowClient(f"sqlite:///{(tmp_path / 'data' / 'mlflow.db').resolve()}")
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["recipe_embed.model_uri"].startswith("models:/")
    assert any(k.startswith("dim_384_") for k in run.data.metrics)  # evaluated, since eval_metrics.json was missing
    assert str(c.get_model_version_by_alias(name, "champion").version) == "1"
