"""Path-in / path-out stages: what ``recipe-embed run`` chains and what the Prefect tasks wrap.

Each stage takes the resolved config plus paths or URIs and returns paths, URIs or plain dicts,
never live models, so a stage can run in another process (a Prefect task, a child process).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.errors import InputError, RecipeEmbedError
from pipelines.io import write_json

log = logging.getLogger(__name__)

TAG_PREFIX = "recipe_embed."
SPLITS = ("train", "validation", "eval", "rejects")

Lock = Callable[[], AbstractContextManager[Any]]


# --- keys --------------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def dataset_key(cfg: PipelineConfig) -> str:
    """Digest of everything that shapes the dataset: data config, tokenizer limit, catalog bytes."""
    from pipelines.catalog import catalog_digest

    relevant = {
        "synthesis": cfg.synthesis.model_dump(mode="json"),
        "validation": cfg.validation.model_dump(mode="json"),
        "catalog": str(cfg.catalog.path.resolve()) if cfg.catalog.path else None,
        "model": cfg.model.model_dump(mode="json"),
        "catalog_digest": catalog_digest(cfg.catalog),
    }
    return _digest(relevant)[:16]


def training_key(cfg: PipelineConfig) -> str:
    """Digest of what decides the trained model: data key + model + training + evaluation config."""
    relevant = {
        "dataset": dataset_key(cfg),
        "model": cfg.model.model_dump(mode="json"),
        "training": cfg.training.model_dump(mode="json"),
        "evaluation": cfg.evaluation.model_dump(mode="json"),
    }
    return _digest(relevant)[:16]


# --- data --------------------------------------------------------------------------------------


def dataset_is_complete(data_dir: Path) -> bool:
    """A dataset dir counts only if its manifest verifies against every file and its gate passed."""
    from pipelines.datasets import read_manifest

    try:
        read_manifest(data_dir)
    except RecipeEmbedError:
        return False
    return True


def synthesize_stage(cfg: PipelineConfig) -> str:
    """Synthesize and validate pairs into ``datasets/<dataset_key>``; reuse a complete one."""
    from pipelines.datasets import build_dataset, timing_line

    out = cfg.paths.datasets_dir / dataset_key(cfg)
    if dataset_is_complete(out):
        log.info("dataset %s is complete, reusing it", out)
        return str(out)
    manifest = build_dataset(cfg, out)
    log.info("dataset %s written; %s", out, timing_line(manifest))
    return str(out)


# --- training and evaluation -------------------------------------------------------------------


def default_model_root(cfg: PipelineConfig) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return cfg.paths.models_dir / f"{stamp}-{training_key(cfg)}"


def train_stage(cfg: PipelineConfig, data_dir: str, out_dir: str | None = None, resume: bool = False) -> str:
    from pipelines.training import train

    root = Path(out_dir) if out_dir else default_model_root(cfg)
    train(Path(data_dir), root, cfg.model, cfg.training, resume=resume, progress=True)
    return str(root)


def evaluate_stage(cfg: PipelineConfig, model: str, data_dir: str, out_json: str | None = None) -> dict[str, float]:
    """Evaluate a model (path, model root, hub id, ``bundled:...`` or ``models:/`` URI) on eval.parquet."""
    from pipelines.evaluation import evaluate_pairs, load_pairs

    pairs = load_pairs(Path(data_dir) / "eval.parquet")
    metrics = evaluate_pairs(model, pairs, cfg.evaluation.dims, cfg.evaluation.batch_size)
    if out_json:
        write_json(metrics, out_json)
    return metrics


# --- tracking and registry ---------------------------------------------------------------------


def run_tags(cfg: PipelineConfig) -> dict[str, str]:
    from pipelines.catalog import catalog_digest

    return {
        f"{TAG_PREFIX}profile": cfg.profile,
        f"{TAG_PREFIX}catalog_digest": catalog_digest(cfg.catalog),
        f"{TAG_PREFIX}dataset_key": dataset_key(cfg),
        f"{TAG_PREFIX}training_key": training_key(cfg),
        f"{TAG_PREFIX}base_model": cfg.model.base_model,
    }


def start_run_stage(cfg: PipelineConfig, run_name: str | None = None) -> str:
    from pipelines import tracking

    tracking.connect(cfg)
    return tracking.start_run(cfg, run_name=run_name, tags=run_tags(cfg))


def should_skip_training(cfg: PipelineConfig) -> str | None:
    """A reason when the champion came from the same catalog, config and base model, else None."""
    from mlflow.tracking import MlflowClient

    from pipelines import registry, tracking

    tracking.connect(cfg)
    champ = registry.champion(cfg)
    if not champ:
        return None
    tags = MlflowClient().get_run(champ["run_id"]).data.tags
    mine = run_tags(cfg)
    keys = ("catalog_digest", "training_key", "base_model")
    if all(tags.get(f"{TAG_PREFIX}{k}") == mine[f"{TAG_PREFIX}{k}"] for k in keys):
        return (
            f"champion v{champ['version']} (run {champ['run_id']}) was trained on the same catalog "
            f"digest, config and base model; skipping training (change any of them, e.g. "
            f"--set training.seed=N, to train a new candidate)"
        )
    return None


def log_stage(
    cfg: PipelineConfig,
    run_id: str,
    data_dir: str,
    model_root: str,
    candidate: dict[str, float],
    base: dict[str, float] | None,
) -> str:
    """Log dataset inputs, training history, metrics and the model; return the model URI."""
    from pipelines import tracking

    tracking.connect(cfg)
    tracking.log_dataset(run_id, Path(data_dir))
    tracking.log_training(run_id, Path(model_root))
    tracking.log_metrics(run_id, candidate)
    if base:
        tracking.log_metrics(run_id, base, prefix="base_")
    return tracking.log_model(run_id, Path(model_root), cfg)


def promote_stage(
    cfg: PipelineConfig,
    run_id: str,
    model_uri: str,
    data_dir: str,
    candidate: dict[str, float],
    lock: Lock | None = None,
    base: dict[str, float] | None = None,
    model_root: str | None = None,
) -> dict[str, Any]:
    """Champion/challenger under a lock; then the report artifacts (plot, metrics, model card)."""
    from pipelines import registry, tracking
    from pipelines.datasets import read_manifest

    tracking.connect(cfg)

    def evaluate(uri: str) -> dict[str, float]:
        return evaluate_stage(cfg, uri, data_dir)

    decision = registry.promote(cfg, run_id, model_uri, candidate, evaluate=evaluate, lock=lock)
    out = decision.to_dict()
    out["champion_metrics"] = tracking.read_metrics(run_id, prefix="champion_") or None
    train_result: dict[str, Any] = {}
    if model_root:
        from pipelines.training import load_train_result

        train_result = load_train_result(Path(model_root))
    tracking.log_report(
        run_id,
        cfg,
        candidate=candidate,
        base=base,
        champion=out.get("champion_metrics"),
        manifest=read_manifest(Path(data_dir)),
        train_result=train_result,
    )
    return out


def end_run_stage(run_id: str, status: str = "FINISHED") -> None:
    from pipelines import tracking

    tracking.end_run(run_id, status)


def tracking_ui_url(cfg: PipelineConfig, run_id: str) -> str | None:
    """A browser link to the run when the tracking URI is an HTTP server, else None."""
    from mlflow.tracking import MlflowClient

    from pipelines import tracking

    uri = tracking.resolve_tracking_uri(cfg)
    if not tracking.is_remote(uri):
        return None
    exp_id = MlflowClient(uri).get_run(run_id).info.experiment_id
    return f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"


# --- the whole pipeline without Prefect ---------------------------------------------------------


def run_pipeline(cfg: PipelineConfig, *, run_name: str | None = None, echo: Callable[[str], None] = print) -> dict:
    """synthesize -> validate -> train -> evaluate -> log -> promote, in this process.

    Returns the same report dict as the Prefect flow (see :mod:`pipelines.report`).
    """
    from pipelines import tracking

    run_id = start_run_stage(cfg, run_name=run_name)
    echo(f"MLflow run {run_id} at {tracking.resolve_tracking_uri(cfg)}")
    report: dict[str, Any] = {
        "profile": cfg.profile,
        "run_id": run_id,
        "dims": list(cfg.evaluation.dims),
        "skipped": None,
        "tracking_uri": tracking.resolve_tracking_uri(cfg),
    }
    with tracking.run_guard(run_id):
        echo("[1/5] synthesize + validate")
        already = dataset_is_complete(cfg.paths.datasets_dir / dataset_key(cfg))
        data_dir = synthesize_stage(cfg)
        report.update(data_dir=data_dir, synthesis="cached" if already else "computed")
        from pipelines.models import pick_device

        device = pick_device(cfg.training.device)
        echo(f"[2/5] train on {device}: batch {cfg.training.per_device_batch_size}, {cfg.training.epochs:g} epoch(s)")
        model_root = train_stage(cfg, data_dir)
        echo("[3/5] evaluate candidate and base model")
        candidate = evaluate_stage(cfg, model_root, data_dir, str(Path(model_root) / "eval_metrics.json"))
        base = (
            evaluate_stage(cfg, cfg.model.base_model, data_dir, str(Path(model_root) / "base_metrics.json"))
            if cfg.evaluation.evaluate_base
            else None
        )
        echo("[4/5] log to MLflow")
        model_uri = log_stage(cfg, run_id, data_dir, model_root, candidate, base)
        echo("[5/5] champion/challenger")
        decision = promote_stage(cfg, run_id, model_uri, data_dir, candidate, base=base, model_root=model_root)
        report.update(model_root=model_root, model_uri=model_uri, decision=decision)
        report["metrics"] = {"candidate": candidate, "champion": decision.get("champion_metrics"), "base": base}
        report["mlflow_url"] = tracking_ui_url(cfg, run_id)
    return report


def require_dataset(data_dir: str | Path) -> Path:
    p = Path(data_dir)
    if not (p / "manifest.json").exists():
        raise InputError(f"{p}: not a dataset directory (no manifest.json); run `recipe-embed synthesize` first")
    return p
