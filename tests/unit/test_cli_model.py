"""``recipe-embed train`` / ``recipe-embed evaluate``: contracts and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.cli.model import parse_dims
from pipelines.errors import InputError
from pipelines.evaluation import evaluate_pairs

runner = CliRunner()


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("absent.csv", None, "no such file"),
        ("pairs.txt", "anchor,positive\na,b\n", "unsupported format"),
        ("cols.csv", "question,answer\na,b\n", "missing column(s) anchor, positive"),
        ("broken.parquet", "this is not parquet", "cannot read as parquet"),
        ("empty.csv", "anchor,positive\n", "no rows"),
        ("blank.csv", "anchor,positive\na,\n", "'positive' has 1 empty"),
    ],
)
def test_bad_pairs_file_exits_2_with_one_line(tmp_path: Path, name: str, content: str | None, match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = _invoke("evaluate", "--model", "bundled:all-MiniLM-L6-v2", "--pairs", str(path), "--json",
                     str(tmp_path / "out.json"))  # fmt: skip
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith("recipe-embed: error:") and match in line
    assert not (tmp_path / "out.json").exists()


def test_missing_model_dir_exits_2(tmp_path: Path, recipe_pairs: pd.DataFrame) -> None:
    recipe_pairs.to_csv(tmp_path / "p.csv", index=False)
    result = _invoke("evaluate", "--model", str(tmp_path / "nope"), "--pairs", str(tmp_path / "p.csv"), "--json",
                     str(tmp_path / "o.json"))  # fmt: skip
    assert result.exit_code == 2
    assert "no such model directory" in _error_line(result)


def test_train_missing_data_dir_exits_2(tmp_path: Path) -> None:
    result = _invoke("train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert "no such dataset directory" in _error_line(result)


def test_train_refuses_to_delete_an_earlier_run(tmp_path: Path, tiny_dataset_dir: Path, monkeypatch) -> None:
    out = tmp_path / "m"
    checkpoint = out / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    args = ("train", "--data", str(tiny_dataset_dir), "--out", str(out), "--profile", "smoke")
    result = _invoke(*args)
    assert result.exit_code == 2
    line = _error_line(result)
    assert "checkpoints: holds an earlier run" in line and "--resume" in line and "--overwrite" in line
    assert checkpoint.exists()  # nothing deleted
    assert _invoke(*args, "--resume", "--overwrite").exit_code == 2

    import pipelines.training

    seen: list[bool] = []

    def reached(*a: object, resume: bool = False, **k: object) -> None:
        seen.append(resume)
        raise InputError("training reached")

    monkeypatch.setattr(pipelines.training, "train", reached)
    for flag, resume in (("--overwrite", False), ("--resume", True)):
        assert "training reached" in _error_line(_invoke(*args, flag))
        assert seen.pop() is resume


def test_parse_dims() -> None:
    assert parse_dims("384,256, 128,64") == (384, 256, 128, 64)
    for bad in ("384,x", "0", "", "64,64"):
        with pytest.raises(InputError):
            parse_dims(bad)


def test_evaluate_writes_flat_library_keys(tmp_path: Path, recipe_pairs: pd.DataFrame, bundled_model_path: str) -> None:
    pairs = recipe_pairs.head(20)
    pairs.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    out = tmp_path / "m.json"
    base_out = tmp_path / "base.json"
    result = _invoke("evaluate", "--model", "bundled:all-MiniLM-L6-v2", "--base", bundled_model_path,
                     "--base-json", str(base_out), "--pairs", str(tmp_path / "p.jsonl"), "--dims", "384,64",
                     "--json", str(out), "--batch-size", "32")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert all(isinstance(v, float) for v in metrics.values())
    assert len([k for k in metrics if k.startswith("dim_")]) == 30  # the library's keys for the whole eval
    assert "intent_ingredient_pair_dim_64_cosine_map@100" in metrics  # and per intent: the pairs have one
    assert "dim_384_cosine_map@100" in metrics and "dim_64_cosine_ndcg@10" in metrics
    expected = evaluate_pairs(bundled_model_path, pairs, (384, 64), batch_size=32)
    assert metrics == pytest.approx(expected, abs=1e-9)
    assert json.loads(base_out.read_text()) == pytest.approx(expected, abs=1e-9)
    assert "fine-tuned" in result.stdout and "cosine_map@100" in result.stdout


@pytest.mark.slow
def test_train_then_evaluate_with_smoke_profile(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    out = tmp_path / "model-dir"
    result = _invoke("train", "--data", str(tiny_dataset_dir), "--out", str(out), "--profile", "smoke",
                     "--set", "model.max_seq_length=32", "--set", "training.per_device_batch_size=16")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (out / "model" / "modules.json").is_file()
    assert (out / "train_result.json").is_file()
    assert "validation dim_384_cosine_map@100" in result.stdout

    metrics_path = tmp_path / "metrics.json"
    result = _invoke("evaluate", "--model", str(out), "--pairs", str(tiny_dataset_dir / "eval.parquet"),
                     "--dims", "384,256,128,64", "--json", str(metrics_path))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len([k for k in json.loads(metrics_path.read_text()) if k.startswith("dim_")]) == 60
