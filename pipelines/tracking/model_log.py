"""What training produced, on the run: the loss history and training figures, and the model itself."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.tracking.connection import client
from pipelines.tracking.metric_log import _as_float, log_metric_batch, log_metrics
from pipelines.tracking.runs import set_tags

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

MODEL_URI_TAG = "recipe_embed.model_uri"
MODEL_DIR_TAG = "recipe_embed.model_dir"

TRAIN_METRIC_KEYS = (
    "train_loss",
    "train_epoch",
    "train_pairs_per_second",
    "train_loop_pairs_per_second",
    "train_checkpoint_seconds",
    "train_seconds",
    "train_pairs",
    "train_base_interpolation_alpha",
)
"""The training figures a run logs (``train_loss`` and ``train_epoch`` as step metrics)."""


def log_training(run_id: str, model_root: str | Path) -> dict[str, Any]:
    """Loss history as step metric ``train_loss``, plus pairs/s (the whole ``train()`` call and its loop
    alone), seconds and the validation map@100 per dim (every validation metric is in the metrics table)."""
    from mlflow.entities import Metric

    from pipelines.training import load_train_result

    result = load_train_result(Path(model_root))
    now = int(time.time() * 1000)
    batch: list[Metric] = []
    for i, row in enumerate(result.get("loss_history") or []):
        loss = _as_float(row.get("loss"))
        if loss is None:
            continue
        step = int(row.get("step", i))
        batch.append(Metric("train_loss", loss, now, step))
        if row.get("epoch") is not None:
            batch.append(Metric("train_epoch", float(row["epoch"]), now, step))
    log_metric_batch(run_id, batch)
    settings = result.get("settings") or {}
    scalars = {
        "train_pairs_per_second": result.get("pairs_per_second"),
        "train_loop_pairs_per_second": settings.get("loop_pairs_per_second"),
        "train_checkpoint_seconds": settings.get("checkpoint_seconds"),
        "train_seconds": result.get("seconds"),
        "train_pairs": result.get("train_pairs"),
        # the share of fine-tuned weights kept (1: the fine-tuned model; pipelines/interpolation.py)
        "train_base_interpolation_alpha": (settings.get("base_interpolation") or {}).get("alpha"),
    }
    assert len(scalars) + 2 == len(TRAIN_METRIC_KEYS)
    log_metrics(run_id, {k: v for k, v in scalars.items() if v is not None})
    val = result.get("validation_metrics") or {}
    if isinstance(val, Mapping):
        from pipelines.metrics import headline

        flat = {k: v for k, v in val.items() if not isinstance(v, Mapping)}
        log_metrics(run_id, headline(flat, 0, "validation"), prefix="validation_")  # all: the metrics table
    tags = {MODEL_DIR_TAG: str(Path(model_root).expanduser().resolve())}
    if result.get("device"):
        tags["train.device"] = str(result["device"])
    if result.get("best_checkpoint"):
        tags["train.best_checkpoint"] = str(result["best_checkpoint"])
    set_tags(run_id, tags)
    return result


def pip_requirements() -> list[str]:
    """Exact pins of what loading the model needs (skips MLflow's slow requirement inference)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("sentence-transformers", "transformers", "torch", "tokenizers", "safetensors"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return reqs


def log_model(run_id: str, model_dir: str | Path, cfg: PipelineConfig) -> str:
    """Log the SentenceTransformer with ``mlflow.sentence_transformers.log_model``; return its URI.

    The model is attached to ``run_id`` (no active run needed) and its URI is kept as a run tag.
    """
    import mlflow
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    from pipelines.models import model_dir_of

    path = model_dir_of(model_dir)
    c = client()
    run = c.get_run(run_id)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    model = SentenceTransformer(str(path), device="cpu")
    info = mlflow.sentence_transformers.log_model(
        model,
        name="model",
        run_id=run_id,
        pip_requirements=pip_requirements(),
        metadata={"profile": cfg.profile, "dims": list(cfg.evaluation.dims)},
    )
    uri = str(info.model_uri)
    set_tags(run_id, {MODEL_URI_TAG: uri})
    return uri
