"""The run's dataset inputs: train and eval parquet files as ``mlflow.data`` inputs with their digests."""

from __future__ import annotations

import warnings
from pathlib import Path

from pipelines.errors import InputError
from pipelines.tracking.connection import client
from pipelines.tracking.runs import set_tags

DATASET_DIR_TAG = "recipe_embed.dataset_dir"


def log_dataset(run_id: str, data_dir: str | Path) -> None:
    """Log the train and eval parquet files as ``mlflow.data`` inputs with the manifest digests.

    Contexts are ``training`` and ``evaluation``; the dataset directory is recorded as a run tag so
    ``recipe-embed promote`` can find the eval set again.
    """
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    from pipelines.datasets import read_manifest

    root = Path(data_dir).expanduser().resolve()
    manifest = read_manifest(root, verify=False, require_passed=False)
    digests: dict[str, str] = manifest.get("digests") or {}
    inputs = []
    tags: dict[str, str] = {DATASET_DIR_TAG: str(root)}
    for split, context in (("train", "training"), ("eval", "evaluation")):
        path = root / f"{split}.parquet"
        if not path.exists():
            raise InputError(f"{path}: no such file (is {root} a dataset directory?)")
        sha = digests.get(path.name) or digests.get(split) or ""
        if not sha:
            from pipelines.io import sha256_file

            sha = sha256_file(path)
        df = pd.read_parquet(path)
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways" (same class)
            warnings.simplefilter("ignore", UserWarning)
            ds = from_pandas(df, source=str(path), name=f"recipe-{split}", digest=sha[:32])
        inputs.append(
            DatasetInput(
                ds._to_mlflow_entity(),
                tags=[InputTag("mlflow.data.context", context), InputTag("sha256", sha)],
            )
        )
        tags[f"dataset.{split}.sha256"] = sha
        tags[f"dataset.{split}.rows"] = str(len(df))
    if manifest.get("catalog_digest"):
        tags["dataset.catalog_digest"] = str(manifest["catalog_digest"])
    client().log_inputs(run_id, datasets=inputs)
    set_tags(run_id, tags)
