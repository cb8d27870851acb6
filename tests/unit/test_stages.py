"""Stage plumbing that needs no model: dataset completeness, keys, model-root resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import stages
from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.io import sha256_file


def _fake_dataset(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "train.parquet").write_bytes(b"train-bytes")
    (d / "eval.parquet").write_bytes(b"eval-bytes")
    digests = {name: sha256_file(d / name) for name in ("train.parquet", "eval.parquet")}
    (d / "manifest.json").write_text(json.dumps({"digests": digests}))
    return d


def test_complete_dataset_is_recognised(tmp_path: Path) -> None:
    assert stages.dataset_is_complete(_fake_dataset(tmp_path / "ds"))


def test_changed_byte_makes_dataset_incomplete(tmp_path: Path) -> None:
    d = _fake_dataset(tmp_path / "ds")
    (d / "eval.parquet").write_bytes(b"eval-bytez")
    assert not stages.dataset_is_complete(d)


@pytest.mark.parametrize("damage", ["no_manifest", "corrupt_manifest", "missing_file", "empty_digests"])
def test_damaged_dataset_is_incomplete(tmp_path: Path, damage: str) -> None:
    d = _fake_dataset(tmp_path / "ds")
    if damage == "no_manifest":
        (d / "manifest.json").unlink()
    elif damage == "corrupt_manifest":
        (d / "manifest.json").write_text("{not json")
    elif damage == "missing_file":
        (d / "train.parquet").unlink()
    else:
        (d / "manifest.json").write_text(json.dumps({"digests": {}}))
    assert not stages.dataset_is_complete(d)


def test_model_path_prefers_model_subdir(tmp_path: Path) -> None:
    root = tmp_path / "run1"
    (root / "model").mkdir(parents=True)
    (root / "model" / "modules.json").write_text("[]")
    assert stages.model_path(str(root)) == str(root / "model")
    assert stages.model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_require_dataset_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recipe-embed synthesize"):
        stages.require_dataset(tmp_path)


def test_dataset_key_tracks_data_config_not_training() -> None:
    a = load_config("smoke")
    same_data = load_config("smoke", sets=["training.learning_rate=1e-3"])
    other_seed = load_config("smoke", sets=["synthesis.seed=7"])
    assert stages.dataset_key(a) == stages.dataset_key(same_data)
    assert stages.dataset_key(a) != stages.dataset_key(other_seed)
    assert stages.training_key(a) != stages.training_key(same_data)


def test_dataset_key_follows_catalog_bytes(tmp_path: Path) -> None:
    from pipelines.catalog import load_catalog

    bundled = load_config("smoke")
    cat = load_catalog(bundled.catalog)
    path = tmp_path / "catalog.jsonl"
    cat.to_json(path, orient="records", lines=True)
    user = load_config("smoke", sets=[f"catalog.path={path}"])
    key1 = stages.dataset_key(user)
    with path.open("a") as fh:
        fh.write("\n")
    assert stages.dataset_key(user) != key1
