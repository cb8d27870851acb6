"""Tracking: a complete run (params, inputs, metrics, loss history, report, model), run states
on failure and SIGTERM, and a fast, clear failure when the tracking server is unreachable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow_test_helpers import dataset_dir, free_port, metrics

from pipelines import tracking
from pipelines.config import PipelineConfig, load_config
from pipelines.errors import TrackingError
from pipelines.io import write_json

pytestmark = pytest.mark.integration

FULL_METRICS = [f"cosine_{m}@{k}" for m in ("accuracy", "precision", "recall") for k in (1, 3, 5, 10)] + [
    "cosine_ndcg@10",
    "cosine_mrr@10",
    "cosine_map@100",
]


def _full(value: float) -> dict[str, float]:
    return {f"dim_{d}_{m}": value for d in (384, 256, 128, 64) for m in FULL_METRICS}


def _train_result(root: Path) -> dict[str, object]:
    result = {
        "loss_history": [{"step": s, "epoch": s / 10, "loss": 3.0 / s} for s in range(1, 11)],
        "pairs_per_second": 123.4,
        "seconds": 5.5,
        "device": "cpu",
        "train_pairs": 8,
        "best_checkpoint": "checkpoints/checkpoint-10",
        "validation_metrics": {"dim_384_cosine_map@100": 0.42},
        "settings": {"loop_pairs_per_second": 150.2, "checkpoint_seconds": 0.5},
    }
    write_json(result, root / "train_result.json")
    return result


def test_sanitize_is_stable_and_reversible() -> None:
    assert tracking.sanitize("dim_384_cosine_map@100") == "dim_384_cosine_map_at_100"
    assert tracking.unsanitize(tracking.sanitize("dim_64_cosine_ndcg@10")) == "dim_64_cosine_ndcg@10"


def test_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config("smoke", overrides={"paths": {"data_dir": str(tmp_path / "d")}})
    assert tracking.resolve_tracking_uri(cfg) == f"sqlite:///{(tmp_path / 'd' / 'mlflow.db').resolve()}"
    assert (tmp_path / "d").is_dir()
    cfg2 = load_config("smoke", overrides={"tracking": {"tracking_uri": "http://127.0.0.1:1"}})
    assert tracking.resolve_tracking_uri(cfg2) == "http://127.0.0.1:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert tracking.resolve_tracking_uri(cfg2) == "http://example.invalid:5000"


@pytest.mark.parametrize("host", ["127.0.0.1", "10.255.255.1"], ids=["refused", "blackhole"])
def test_unreachable_server_fails_fast_with_a_clear_error(
    host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast by construction: one health request, under the configured timeout, and no retry."""
    import urllib.request

    from pipelines.tracking import connection

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"http://{host}:{free_port()}"
    cfg = load_config("smoke", overrides={"tracking": {"tracking_uri": uri, "http_request_timeout": 2}})
    calls: list[tuple[str, float]] = []
    real_urlopen = urllib.request.urlopen

    def urlopen(url: str, timeout: float) -> object:
        calls.append((url, timeout))
        return real_urlopen(url, timeout=timeout)

    monkeypatch.setattr(connection.urllib.request, "urlopen", urlopen)
    with pytest.raises(TrackingError, match=f"MLflow tracking server at {uri} is unreachable"):
        tracking.connect(cfg)
    assert calls == [(f"{uri}/health", 2.0)]
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == str(cfg.tracking.http_request_max_retries)


@pytest.mark.mlflow_backends("embedded", "server")  # uploads through the artifact proxy
def test_a_run_is_complete(mlflow_cfg: PipelineConfig, saved_model_dir: Path, tmp_path: Path) -> None:
    import mlflow.sentence_transformers

    data_dir = dataset_dir(tmp_path / "dataset")
    model_root = tmp_path / "model-root"
    model_root.mkdir()
    (model_root / "model").symlink_to(saved_model_dir, target_is_directory=True)
    result = _train_result(model_root)
    cand, base, champ = _full(0.8), _full(0.6), _full(0.7)

    tracking.connect(mlflow_cfg)
    run_id = tracking.start_run(mlflow_cfg, run_name="complete", tags={"purpose": "test"})
    with tracking.run_guard(run_id):
        tracking.log_dataset(run_id, data_dir)
        tracking.log_training(run_id, model_root)
        tracking.log_metrics(run_id, cand)
        tracking.log_metrics(run_id, base, prefix="base_")
        tracking.log_metrics(run_id, champ, prefix="champion_")
        model_uri = tracking.log_model(run_id, model_root, mlflow_cfg)
        manifest = json.loads((data_dir / "manifest.json").read_text())
        tracking.log_report(run_id, mlflow_cfg, cand, base, champ, manifest, result)

    c = tracking.client(mlflow_cfg)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == c.get_experiment_by_name(mlflow_cfg.tracking.experiment).experiment_id
    # params: the flattened config
    assert run.data.params["training.learning_rate"] == mlflow_cfg.flat()["training.learning_rate"]
    assert len(run.data.params) == len(mlflow_cfg.flat())
    # metrics: 60 candidate, 60 base, 60 champion, sanitized the same way
    m = run.data.metrics
    for prefix in ("", "base_", "champion_"):
        keys = [k for k in m if k.startswith(prefix + "dim_")]
        assert len(keys) == 60, prefix
    assert m["dim_384_cosine_map_at_100"] == pytest.approx(0.8)
    assert m["base_dim_64_cosine_ndcg_at_10"] == pytest.approx(0.6)
    assert not any("@" in k for k in m)
    assert m["train_pairs_per_second"] == pytest.approx(123.4)
    assert m["train_loop_pairs_per_second"] == pytest.approx(150.2)
    assert m["train_checkpoint_seconds"] == pytest.approx(0.5)
    assert m["validation_dim_384_cosine_map_at_100"] == pytest.approx(0.42)
    # step metrics: the loss history
    history = c.get_metric_history(run_id, "train_loss")
    assert sorted(h.step for h in history) == list(range(1, 11))
    assert {h.step: h.value for h in history}[4] == pytest.approx(0.75)
    # dataset inputs with digests and contexts
    contexts = {}
    for ds_input in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in ds_input.tags}
        contexts[tags["mlflow.data.context"]] = (ds_input.dataset.digest, tags["sha256"])
    assert set(contexts) == {"training", "evaluation"}
    assert contexts["training"][1] == manifest["digests"]["train.parquet"]
    assert contexts["evaluation"][0] == manifest["digests"]["eval.parquet"][:32]
    assert run.data.tags[tracking.DATASET_DIR_TAG] == str(data_dir.resolve())
    # artifacts: the plot and the full table at the root (where Compare lists them), metrics JSON, card
    listed = {f.path for f in c.list_artifacts(run_id, "report")}
    assert listed == {"report/metrics.json", "report/model-card.md"}
    at_root = {f.path for f in c.list_artifacts(run_id)}
    assert {"metrics.png", "metrics_table.json"} <= at_root
    png = Path(c.download_artifacts(run_id, "metrics.png", str(tmp_path / "png")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = mlflow.load_table("metrics_table.json", run_ids=[run_id])
    for model, values in (("candidate", cand), ("base", base), ("champion", champ)):
        rows = table[(table["model"] == model) & (table["split"] == "eval")]
        assert dict(zip(rows["key"], rows["value"], strict=True)) == pytest.approx(values), model
    assert m["0_map_at_100"] == pytest.approx(0.8) and m["0_map_at_100_delta_vs_base"] == pytest.approx(0.2)
    local = Path(c.download_artifacts(run_id, "report", str(tmp_path / "dl")))
    card = (local / "model-card.md").read_text()
    assert "dim_384" in card and "**cosine_map@100**" in card and "learning_rate" in card
    assert json.loads((local / "metrics.json").read_text())["base"]["dim_384_cosine_map@100"] == 0.6
    # the model, logged with the sentence-transformers flavor, loads back and encodes
    assert run.data.tags[tracking.MODEL_URI_TAG] == model_uri
    model = mlflow.sentence_transformers.load_model(model_uri)
    assert model.encode(["chickpea curry"]).shape == (1, 384)


def test_exception_inside_guard_ends_run_failed(mlflow_cfg: PipelineConfig) -> None:
    tracking.connect(mlflow_cfg)
    run_id = tracking.start_run(mlflow_cfg)
    with pytest.raises(RuntimeError, match="boom"), tracking.run_guard(run_id):
        tracking.log_metrics(run_id, metrics(0.5))
        raise RuntimeError("boom")
    assert tracking.run_status(run_id) == "FAILED"


def test_guard_can_leave_a_successful_stage_open(mlflow_cfg: PipelineConfig) -> None:
    tracking.connect(mlflow_cfg)
    run_id = tracking.start_run(mlflow_cfg)
    with tracking.run_guard(run_id, end_on_success=False):
        pass
    assert tracking.run_status(run_id) == "RUNNING"
    with tracking.run_guard(run_id):
        pass
    assert tracking.run_status(run_id) == "FINISHED"


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipelines import tracking
    from pipelines.config import PipelineConfig

    cfg = PipelineConfig.model_validate_json(Path(sys.argv[1]).read_text())
    tracking.connect(cfg)
    run_id = tracking.start_run(cfg, run_name="sigterm")
    with tracking.run_guard(run_id):
        Path(sys.argv[2]).write_text(run_id)
        while True:  # "training"
            time.sleep(0.1)
    """
)


def test_sigterm_inside_guard_ends_run_killed(mlflow_cfg: PipelineConfig, tmp_path: Path) -> None:
    cfg_file, id_file = tmp_path / "cfg.json", tmp_path / "run_id"
    cfg_file.write_text(mlflow_cfg.model_dump_json())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cfg_file), str(id_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while not id_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"child never entered the guard (rc={proc.returncode}):\n{out[-3000:]}")
            time.sleep(0.1)
        run_id = id_file.read_text()
        tracking.connect(mlflow_cfg)
        assert tracking.run_status(run_id) == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 128 + signal.SIGTERM
    assert tracking.run_status(run_id) == "KILLED"
