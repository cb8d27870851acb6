"""Stage plumbing that needs no model: dataset completeness, keys, model-root resolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines import stages
from pipelines.config import load_config
from pipelines.errors import InputError


@pytest.fixture(scope="module")
def smoke_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.datasets import build_dataset

    out = tmp_path_factory.mktemp("smoke") / "ds"
    build_dataset(load_config("smoke"), out)
    return out


@pytest.fixture
def dataset(smoke_dataset: Path, tmp_path: Path) -> Path:
    d = tmp_path / "ds"
    shutil.copytree(smoke_dataset, d)
    return d


def test_complete_dataset_is_recognised(dataset: Path) -> None:
    assert stages.dataset_is_complete(dataset)


def test_changed_byte_makes_dataset_incomplete(dataset: Path) -> None:
    path = dataset / "eval.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not stages.dataset_is_complete(dataset)


@pytest.mark.parametrize("damage", ["no_manifest", "corrupt_manifest", "missing_file", "failed_gate"])
def test_damaged_dataset_is_incomplete(dataset: Path, damage: str) -> None:
    manifest = dataset / "manifest.json"
    if damage == "no_manifest":
        manifest.unlink()
    elif damage == "corrupt_manifest":
        manifest.write_text("{not json")
    elif damage == "missing_file":
        (dataset / "train.parquet").unlink()
    else:
        data = json.loads(manifest.read_text())
        data["quality_gate"] = {"passed": False, "reason": "too many rejects"}
        manifest.write_text(json.dumps(data))
    assert not stages.dataset_is_complete(dataset)


def test_synthesize_stage_reuses_a_complete_dataset(tmp_path: Path) -> None:
    cfg = load_config("smoke", sets=[f"paths.data_dir={tmp_path}"])
    first = Path(stages.synthesize_stage(cfg))
    mtime = (first / "train.parquet").stat().st_mtime_ns
    assert stages.synthesize_stage(cfg) == str(first)
    assert (first / "train.parquet").stat().st_mtime_ns == mtime
    (first / "train.parquet").write_bytes(b"damaged")
    assert stages.synthesize_stage(cfg) == str(first)
    assert stages.dataset_is_complete(first)


def test_model_root_resolves_to_its_model_subdir(tmp_path: Path) -> None:
    from pipelines.evaluation import resolve_model_path
    from pipelines.models import model_dir_of

    root = tmp_path / "run1"
    (root / "model").mkdir(parents=True)
    (root / "model" / "modules.json").write_text("[]")
    assert resolve_model_path(str(root)) == str((root / "model").resolve())
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    # the one owner, which MLflow logging uses too: a model dir itself is fine, anything else is one line
    assert model_dir_of(root / "model") == model_dir_of(root) == (root / "model").resolve()
    (tmp_path / "empty" / "model").mkdir(parents=True)
    for bad in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(InputError, match="not a model directory"):
            model_dir_of(bad)
    with pytest.raises(InputError, match="not a model directory"):
        resolve_model_path(str(tmp_path / "empty"))  # a model/ without modules.json is not a hub id


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
