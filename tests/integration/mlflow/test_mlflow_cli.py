"""``recipe-embed promote --run-id`` and ``recipe-embed champion`` end to end, with the real
evaluation re-scoring the champion on the run's eval set."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_test_helpers import dataset_dir
from typer.testing import CliRunner

from pipelines import tracking
from pipelines.cli import app
from pipelines.config import PipelineConfig

pytestmark = pytest.mark.integration


def _sets(cfg: PipelineConfig) -> list[str]:
    out = []
    for key in ("tracking.tracking_uri", "tracking.experiment", "registry.model_name", "paths.data_dir"):
        section, field = key.split(".")
        out += ["--set", f"{key}={getattr(getattr(cfg, section), field)}"]
    return ["--profile", "smoke", *out]


def _logged_candidate(cfg: PipelineConfig, model_dir: Path, data: Path) -> tuple[str, dict[str, float]]:
    import pandas as pd

    from pipelines.evaluation import evaluate_pairs

    tracking.connect(cfg)
    run_id = tracking.start_run(cfg, run_name="cli-candidate")
    with tracking.run_guard(run_id):
        tracking.log_dataset(run_id, data)
        tracking.log_model(run_id, model_dir, cfg)
        m = evaluate_pairs(str(model_dir), pd.read_parquet(data / "eval.parquet"), cfg.evaluation.dims, 16)
        tracking.log_metrics(run_id, m)
    return run_id, m


def test_promote_and_champion_commands(mlflow_cfg: PipelineConfig, saved_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data = dataset_dir(tmp_path / "dataset")
    name = mlflow_cfg.registry.model_name

    res = runner.invoke(app, ["champion", *_sets(mlflow_cfg)])
    assert res.exit_code == 0, res.output
    assert f"no champion yet for {name}" in res.output

    first, m = _logged_candidate(mlflow_cfg, saved_model_dir, data)
    res = runner.invoke(app, ["promote", "--run-id", first, *_sets(mlflow_cfg)])
    assert res.exit_code == 0, res.output
    assert f"{name} version 1: promoted (no champion yet)" in res.output

    # The same model again: re-scored on the same eval set it scores exactly the same per query,
    # a tie (interval [0, 0]) on an unchanged catalog, so it is rejected.
    second, _ = _logged_candidate(mlflow_cfg, saved_model_dir, data)
    res = runner.invoke(app, ["promote", "--run-id", second, *_sets(mlflow_cfg)])
    assert res.exit_code == 0, res.output
    assert f"{name} version 2: rejected (a tie (the interval contains 0)" in res.output
    assert "KEPT champion (version 1): map@100 at 384 +0.0000 [0.0000, 0.0000]" in res.output
    assert "delta vs champion v1: +0.0000" in res.output
    champ_metrics = tracking.read_metrics(second, prefix="champion_")
    assert champ_metrics["dim_384_cosine_map@100"] == pytest.approx(m["dim_384_cosine_map@100"])

    res = runner.invoke(app, ["champion", *_sets(mlflow_cfg)])
    assert res.exit_code == 0, res.output
    assert f"{name} champion: version 1 (run {first})" in res.output
    assert f"dim 384: cosine_map@100={m['dim_384_cosine_map@100']:.4f}" in res.output
    assert f'mlflow.sentence_transformers.load_model("models:/{name}@champion")' in res.output


@pytest.mark.mlflow_backends("embedded", "server")  # the server's HTTP 404 becomes the input error
def test_promote_unknown_run_is_an_input_error(mlflow_cfg: PipelineConfig) -> None:
    res = CliRunner().invoke(app, ["promote", "--run-id", "0" * 32, *_sets(mlflow_cfg)])
    assert res.exit_code == 2
    assert "no MLflow run" in res.output
