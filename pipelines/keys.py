"""What a run is made of, as digests and tags: the dataset key, the training key, the code version,
and the tags every MLflow run carries (what ``recipe-embed run`` and the flow both write)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig

TAG_PREFIX = "recipe_embed."


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def dataset_key(cfg: PipelineConfig) -> str:
    """Digest of everything that shapes the dataset: data config, tokenizer limit, catalog bytes, bundled data,
    the synthesized texts' format."""
    from pipelines.catalog import catalog_digest
    from pipelines.synthesis.pairs import SYNTHESIS_FORMAT

    relevant = {
        "synthesis": cfg.synthesis.model_dump(mode="json"),
        "validation": cfg.validation.model_dump(mode="json"),
        "catalog": str(cfg.catalog.path.resolve()) if cfg.catalog.path else None,
        "model": cfg.model.model_dump(mode="json"),
        "catalog_digest": catalog_digest(cfg.catalog),
        "bundled_data": bundled_data_digest(),
        "synthesis_format": SYNTHESIS_FORMAT,
    }
    return _digest(relevant)[:16]


def bundled_data_digest(data_dir: Path | None = None) -> str:
    """Digest of the bundled data that synthesis reads beside the catalog (``pipelines/data``: wordings,
    alternate names, the glossary, the hand-written ``human`` and ``human_dev`` questions), so an edit to
    any of them makes a new dataset rather than reusing a cached one."""
    root = data_dir or Path(__file__).resolve().parent / "data"
    h = hashlib.sha256()
    for path in sorted(p for p in root.iterdir() if p.suffix in (".json", ".jsonl")):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recipe-embed")
    except PackageNotFoundError:
        import pipelines

        return str(getattr(pipelines, "__version__", "unknown"))


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout this code runs from, or None outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def training_key(cfg: PipelineConfig) -> str:
    """Digest of what decides the trained model: data key + model + training + evaluation config, and
    the code (package version, plus its git commit when it runs from a checkout)."""
    relevant = {
        "dataset": dataset_key(cfg),
        "model": cfg.model.model_dump(mode="json"),
        "training": cfg.training.model_dump(mode="json"),
        "evaluation": cfg.evaluation.model_dump(mode="json"),
        "code": {"version": package_version(), "commit": git_commit()},
    }
    return _digest(relevant)[:16]


GIT_COMMIT_TAG = "mlflow.source.git.commit"


def run_tags(cfg: PipelineConfig) -> dict[str, str]:
    from pipelines.catalog import catalog_digest

    tags = {
        f"{TAG_PREFIX}profile": cfg.profile,
        f"{TAG_PREFIX}catalog_digest": catalog_digest(cfg.catalog),
        f"{TAG_PREFIX}dataset_key": dataset_key(cfg),
        f"{TAG_PREFIX}training_key": training_key(cfg),
        f"{TAG_PREFIX}base_model": cfg.model.base_model,
        f"{TAG_PREFIX}package_version": package_version(),
    }
    commit = git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags


def source_tags(flow_run_id: str | None = None) -> dict[str, str]:
    """Who ran what, for the UI's Source and Created by columns: ``mlflow.source.name`` (the entry point),
    ``mlflow.source.type`` (JOB for a flow run, LOCAL for the command line) and ``mlflow.user``."""
    import getpass
    import os
    import sys

    from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER") or "unknown"
    if flow_run_id:
        source, kind = "flows/train_and_evaluate.py (Prefect flow train-and-evaluate)", "JOB"
    else:
        entry = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        args = [a for a in sys.argv[1:2] if not a.startswith("-")]
        source, kind = " ".join([entry, *args]), "LOCAL"
    return {MLFLOW_SOURCE_NAME: source, MLFLOW_SOURCE_TYPE: kind, MLFLOW_USER: user}
