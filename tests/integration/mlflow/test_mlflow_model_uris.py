"""`recipe-embed evaluate` and the evaluation core load models by MLflow URI (models:/NAME@ALIAS)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow_test_helpers import metrics
from typer.testing import CliRunner

from pipelines import registry, tracking
from pipelines.cli import app
from pipelines.config import PipelineConfig
from pipelines.errors import InputError
from pipelines.evaluation import evaluate_pairs
from pipelines.models import load_model

PAIRS = pd.DataFrame(
    {
        "anchor": [f"What recipes can be made using {a} and {b}?" for a, b in [("kale", "feta"), ("rice", "lime")]],
        "positive": [f"No recipes found with these {a} and {b}!" for a, b in [("kale", "feta"), ("rice", "lime")]],
    }
)


def _promote_saved_model(cfg: PipelineConfig, saved_model_dir: Path) -> None:
    tracking.connect(cfg)
    run_id = tracking.start_run(cfg, run_name="candidate")
    with tracking.run_guard(run_id):
        uri = tracking.log_model(run_id, saved_model_dir, cfg)
        assert registry.promote(cfg, run_id, uri, metrics(0.5), lambda u: pytest.fail(f"no champion: {u}")).promote


@pytest.mark.mlflow_backends("embedded", "server")  # models:/ through the artifact proxy
def test_champion_uri_evaluates_like_the_saved_model(mlflow_cfg: PipelineConfig, saved_model_dir: Path) -> None:
    _promote_saved_model(mlflow_cfg, saved_model_dir)
    uri = f"models:/{mlflow_cfg.registry.model_name}@champion"
    via_registry = evaluate_pairs(uri, PAIRS, (384, 64), batch_size=8)
    via_path = evaluate_pairs(str(saved_model_dir), PAIRS, (384, 64), batch_size=8)
    assert via_registry.keys() == via_path.keys()
    for key, value in via_path.items():
        assert via_registry[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.mlflow_backends("embedded", "server")  # the server's HTTP error becomes the input error
def test_unknown_alias_is_one_clear_input_error(mlflow_cfg: PipelineConfig, saved_model_dir: Path) -> None:
    _promote_saved_model(mlflow_cfg, saved_model_dir)
    with pytest.raises(InputError, match="cannot load from MLflow"):
        load_model(f"models:/{mlflow_cfg.registry.model_name}@no-such-alias")


def test_cli_evaluate_accepts_a_registry_uri(
    mlflow_cfg: PipelineConfig, saved_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _promote_saved_model(mlflow_cfg, saved_model_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.resolve_tracking_uri(mlflow_cfg))
    pairs, out = tmp_path / "pairs.csv", tmp_path / "m.json"
    PAIRS.to_csv(pairs, index=False)
    uri = f"models:/{mlflow_cfg.registry.model_name}@champion"
    result = CliRunner().invoke(
        app, ["evaluate", "--model", uri, "--pairs", str(pairs), "--dims", "384,64", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())
    assert set(got) == {f"dim_{d}_cosine_{m}" for d in (384, 64) for m in _metric_names()}


def _metric_names() -> list[str]:
    from pipelines.evaluation import METRIC_NAMES

    return list(METRIC_NAMES)
