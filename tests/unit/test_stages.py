"""Stage plumbing that needs no model: dataset completeness, keys, model-root resolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines import keys, skip, stages
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
    assert stages.synthesize_or_reuse(cfg) == (str(first), True)
    assert (first / "train.parquet").stat().st_mtime_ns == mtime
    (first / "train.parquet").write_bytes(b"damaged")
    assert stages.synthesize_or_reuse(cfg) == (str(first), False)
    assert stages.dataset_is_complete(first)


def test_model_root_resolves_to_its_model_subdir(tmp_path: Path) -> None:
    from pipelines.models import model_dir_of, resolve_model_path

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
    assert keys.dataset_key(a) == keys.dataset_key(same_data)
    assert keys.dataset_key(a) != keys.dataset_key(other_seed)
    assert keys.training_key(a) != keys.training_key(same_data)


def test_dataset_key_follows_the_bundled_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to a bundled file synthesis reads (a hand-written question, a wording) is a new dataset."""
    for name, text in (("dev_questions.jsonl", '{"q": "a"}\n'), ("wordings.json", "{}"), ("notes.md", "x")):
        (tmp_path / name).write_text(text)
    before = keys.bundled_data_digest(tmp_path)
    (tmp_path / "notes.md").write_text("y")  # not data synthesis reads
    assert keys.bundled_data_digest(tmp_path) == before
    (tmp_path / "dev_questions.jsonl").write_text('{"q": "b"}\n')
    assert keys.bundled_data_digest(tmp_path) != before
    cfg = load_config("smoke")
    key = keys.dataset_key(cfg)
    monkeypatch.setattr(keys, "bundled_data_digest", lambda: "edited")
    assert keys.dataset_key(cfg) != key


def test_dataset_key_follows_catalog_bytes(tmp_path: Path) -> None:
    from pipelines.catalog import load_catalog

    bundled = load_config("smoke")
    cat = load_catalog(bundled.catalog)
    path = tmp_path / "catalog.jsonl"
    cat.to_json(path, orient="records", lines=True)
    user = load_config("smoke", sets=[f"catalog.path={path}"])
    key1 = keys.dataset_key(user)
    with path.open("a") as fh:
        fh.write("\n")
    assert keys.dataset_key(user) != key1


def test_training_key_includes_the_code_version_and_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("smoke")
    key = keys.training_key(cfg)
    monkeypatch.setattr(keys, "git_commit", lambda: "f" * 40)
    assert keys.training_key(cfg) != key
    assert keys.run_tags(cfg)[keys.GIT_COMMIT_TAG] == "f" * 40
    with_commit = keys.training_key(cfg)
    monkeypatch.setattr(keys, "package_version", lambda: "9.9.9")
    assert keys.training_key(cfg) != with_commit


class _Run:
    def __init__(self, run_id: str, tags: dict[str, str]) -> None:
        from types import SimpleNamespace

        self.info = SimpleNamespace(run_id=run_id, start_time=1)
        self.data = SimpleNamespace(tags=tags)


def _skip_setup(monkeypatch: pytest.MonkeyPatch, champion_tags: dict | None, last_tags: dict | None) -> None:
    from types import SimpleNamespace

    from pipelines import registry, tracking

    monkeypatch.setattr(tracking, "connect", lambda cfg: "sqlite://")
    champ = {"version": "1", "run_id": "champ-run"} if champion_tags is not None else None
    monkeypatch.setattr(registry, "champion", lambda cfg: champ)
    runs = {"champ-run": _Run("champ-run", champion_tags or {})}
    monkeypatch.setattr(tracking, "client", lambda cfg=None: SimpleNamespace(get_run=lambda rid: runs[rid]))
    last = _Run("last-run", {**last_tags, "decision": "rejected", "registered_version": "2"}) if last_tags else None
    monkeypatch.setattr(skip, "last_evaluated_run", lambda cfg: last)


def test_skip_when_the_champion_or_the_last_evaluated_candidate_has_the_same_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = load_config("smoke")
    mine = keys.run_tags(cfg)
    other = {**mine, "recipe_embed.training_key": "0" * 16}

    _skip_setup(monkeypatch, champion_tags=mine, last_tags=None)
    reason = skip.should_skip_training(cfg)
    assert reason is not None and reason.startswith("champion v1 (run champ-run)")
    assert "registry.skip_unchanged=false" in reason  # says how to force a retrain

    # the champion differs, but the last candidate (rejected) was this very key: skip, naming it
    _skip_setup(monkeypatch, champion_tags=other, last_tags=mine)
    reason = skip.should_skip_training(cfg)
    assert reason is not None and "last evaluated candidate v2 (run last-run, rejected)" in reason

    # neither: train
    _skip_setup(monkeypatch, champion_tags=other, last_tags=other)
    assert skip.should_skip_training(cfg) is None
    _skip_setup(monkeypatch, champion_tags=None, last_tags=None)
    assert skip.should_skip_training(cfg) is None

    # forced
    _skip_setup(monkeypatch, champion_tags=mine, last_tags=mine)
    assert skip.should_skip_training(load_config("smoke", sets=["registry.skip_unchanged=false"])) is None


def test_source_tags_name_the_entry_point_and_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/x/.venv/bin/recipe-embed", "run", "--profile", "smoke"])
    monkeypatch.setattr("getpass.getuser", lambda: "ana")
    cli = keys.source_tags()
    assert cli == {"mlflow.source.name": "recipe-embed run", "mlflow.source.type": "LOCAL", "mlflow.user": "ana"}
    flow = keys.source_tags("0b1c")
    assert flow["mlflow.source.type"] == "JOB" and flow["mlflow.source.name"].startswith("flows/train_and_evaluate.py")
