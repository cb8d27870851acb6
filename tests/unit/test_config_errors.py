"""Config errors are one line and exit 2 before any work: an unreadable or missing config file,
Matryoshka dims above the base model's dimension (read from its config files, no weights loaded), and
numbers that are not finite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import ConfigError, load_config
from pipelines.models import model_dimension

runner = CliRunner()


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Usage:" not in result.output, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("recipe-embed: error: "), lines[0]
    return lines[0]


def _bad_config_files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"training:\n  epochs: \xff\xfe\n")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would block for ever
    return {"missing": tmp_path / "missing.yaml", "directory": folder, "not-utf8": binary, "fifo": fifo}


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8", "fifo"])
@pytest.mark.parametrize("command", [["config"], ["run"], ["train", "--data", ".", "--out", "out"]])
def test_an_unreadable_or_missing_config_file_is_one_line_exit_2(tmp_path: Path, kind: str, command) -> None:  # type: ignore[no-untyped-def]
    path = _bad_config_files(tmp_path)[kind]
    line = _one_error_line(runner.invoke(app, [*command, "--config", str(path)]))
    assert str(path) in line, line


@pytest.mark.parametrize("args", [["config", "--config"], ["config", "--no-such-option"], ["train", "--data", "."]])
def test_usage_errors_are_one_line_exit_2(args: list[str]) -> None:
    line = _one_error_line(runner.invoke(app, args))
    assert "--help" in line, line


def _fake_model(root: Path, pooling_dim: int, dense_out: int | None = None) -> Path:
    """A sentence-transformers layout with config files only: no weights, so nothing could be loaded."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (root / "1_Pooling").mkdir(parents=True)
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": pooling_dim}))
    if dense_out is not None:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        (root / "2_Dense").mkdir()
        (root / "2_Dense" / "config.json").write_text(
            json.dumps({"in_features": pooling_dim, "out_features": dense_out})
        )
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "config.json").write_text(json.dumps({"hidden_size": pooling_dim}))
    return root


def test_model_dimension_is_read_from_config_files(tmp_path: Path) -> None:
    assert model_dimension("bundled:all-MiniLM-L6-v2") == 384
    assert model_dimension(str(_fake_model(tmp_path / "pooled", 256))) == 256
    assert model_dimension(str(_fake_model(tmp_path / "dense", 256, dense_out=96))) == 96
    assert model_dimension("no-such-org/no-such-model-in-the-cache") is None  # unknown: not checked


def test_dims_above_the_models_dimension_fail_config_in_one_line() -> None:
    line = _one_error_line(runner.invoke(app, ["config", "--set", "training.matryoshka_dims=[768,384]"]))
    assert "training.matryoshka_dims" in line and "768" in line and "dimension 384" in line, line
    assert runner.invoke(app, ["config", "--set", "training.matryoshka_dims=[384,128]"]).exit_code == 0


def test_dims_are_checked_against_a_local_model_without_weights(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "m", 256, dense_out=128)
    with pytest.raises(ConfigError, match="dimension 128"):
        load_config("smoke", sets=[f"model.base_model={model}"])
    cfg = load_config(
        "smoke",
        sets=[f"model.base_model={model}", "training.matryoshka_dims=[128,64]", "evaluation.dims=[128,64]"],
        overrides={"registry": {"primary_dim": 128}},
    )
    assert cfg.training.matryoshka_dims == (128, 64)


def test_run_with_dims_above_the_model_fails_before_synthesis(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RECIPE_EMBED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    r = runner.invoke(app, ["run", "--profile", "smoke", "--set", "training.matryoshka_dims=[768,384]"])
    assert "matryoshka_dims" in _one_error_line(r)
    assert not (tmp_path / "home").exists(), "work started (a dataset or an MLflow run) before the check"


@pytest.mark.parametrize(
    "setting", ["training.epochs=inf", "training.epochs=.inf", "training.learning_rate=nan", "registry.margin=-.inf"]
)
def test_numbers_must_be_finite(setting: str) -> None:
    line = _one_error_line(runner.invoke(app, ["config", "--profile", "smoke", "--set", setting]))
    assert setting.split("=")[0] in line and "finite" in line, line
