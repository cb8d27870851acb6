"""Path-in / path-out stages: what both runners of :mod:`pipelines.sequence` call (in-process, or wrapped as Prefect tasks).

Each stage takes the resolved config plus paths or URIs and returns paths, URIs or plain dicts,
never live models, so a stage can run in another process (a Prefect task, a child process).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.errors import RecipeEmbedError, out_of_memory_as_error
from pipelines.io import write_json
from pipelines.keys import dataset_key, run_tags, source_tags, training_key
from pipelines.metrics import Scores, headline

log = logging.getLogger(__name__)

Lock = Callable[[], AbstractContextManager[Any]]


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
    return synthesize_or_reuse(cfg)[0]


def synthesize_or_reuse(cfg: PipelineConfig) -> tuple[str, bool]:
    """:func:`synthesize_stage`, and whether it reused a complete dataset (its manifest checked once)."""
    from pipelines.datasets import build_dataset, timing_line

    out = cfg.paths.datasets_dir / dataset_key(cfg)
    if dataset_is_complete(out):
        log.info("dataset %s is complete, reusing it", out)
        return str(out), True
    manifest = build_dataset(cfg, out)
    log.info("dataset %s written; %s", out, timing_line(manifest))
    return str(out), False


# --- training and evaluation -------------------------------------------------------------------


def default_model_root(cfg: PipelineConfig) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return cfg.paths.models_dir / f"{stamp}-{training_key(cfg)}"


def train_model(
    cfg: PipelineConfig, data_dir: str | Path, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> Any:
    """Fine-tune into ``out_dir``: in this process, or as ``training.nproc_per_node`` torchrun ranks.

    Returns the :class:`~pipelines.training.TrainResult` of this process, or None when the ranks ran
    in child processes. An out-of-memory failure is an :class:`~pipelines.errors.OutOfMemoryError`.
    """
    from pipelines import distributed
    from pipelines.training import train

    nproc = distributed.resolve_nproc(cfg.training.nproc_per_node, cfg.training.device)
    if nproc > 1 and not distributed.in_torchrun():  # re-run the train command as nproc ranks
        distributed.train_under_torchrun(cfg, data_dir, out_dir, nproc, resume=resume, overwrite=overwrite)
        return None
    return train(Path(data_dir), Path(out_dir), cfg.model, cfg.training, resume=resume, progress=True)


def train_stage(cfg: PipelineConfig, data_dir: str, out_dir: str | None = None, resume: bool = False) -> str:
    """:func:`train_model` into ``out_dir`` (default: a new dir under ``paths.models_dir``); return that dir."""
    root = Path(out_dir) if out_dir else default_model_root(cfg)
    train_model(cfg, data_dir, root, resume=resume)
    return str(root)


def evaluate_stage(cfg: PipelineConfig, model: str, data_dir: str, out_json: str | None = None) -> dict[str, float]:
    """Evaluate a model (path, model root, hub id, ``bundled:...`` or ``models:/`` URI) on eval.parquet.

    Metrics for the whole eval, per slice and per intent. With ``out_json``, the per-query average
    precision goes beside it (:func:`pipelines.evaluation.per_query_path`) for the promotion rule.
    """
    from pipelines.evaluation import per_query_path, write_per_query
    from pipelines.serving import grid_path

    pairs, scores = _score(cfg, model, data_dir)
    if out_json:
        write_json(scores.metrics, out_json)
        write_per_query(scores, per_query_path(out_json), pairs)
        if scores.serving is not None:
            write_json(scores.serving, grid_path(out_json))
    return scores.metrics


def score_stage(cfg: PipelineConfig, model: str, data_dir: str) -> Scores:
    """Metrics plus per-query average precision on ``data_dir``'s eval set (what promotion compares)."""
    return _score(cfg, model, data_dir)[1]


def _score(cfg: PipelineConfig, model: str, data_dir: str) -> tuple[Any, Scores]:
    from pipelines.evaluation import load_pairs, score_pairs
    from pipelines.stdio import detach_broken_stdio

    detach_broken_stdio()  # a dead worker's pipe must not fail the evaluation
    from pipelines.serving import serving_request, with_recommendation

    pairs = load_pairs(Path(data_dir) / "eval.parquet")
    with out_of_memory_as_error(cfg.evaluation.batch_size, "evaluation"):
        scores = score_pairs(
            model,
            pairs,
            cfg.evaluation.dims,
            cfg.evaluation.batch_size,
            attention_backend=cfg.training.attention_backend,
            serving=serving_request(cfg.serving, Path(data_dir)),
        )
    if scores.serving is not None:
        scores = dataclasses.replace(scores, serving=with_recommendation(scores.serving, cfg.serving.max_relative_loss))
    return pairs, scores


def candidate_scores(candidate: dict[str, float], model_root: str | None) -> Scores:
    """The candidate's metrics with its per-query scores when ``evaluate_stage`` wrote them under ``model_root``."""
    from pipelines.evaluation import per_query_path, read_per_query

    if model_root:
        path = per_query_path(Path(model_root) / "eval_metrics.json")
        if path.exists():
            return Scores(dict(candidate), read_per_query(path))
    return Scores(dict(candidate))


# --- tracking and registry ---------------------------------------------------------------------


def reconcile_stage(
    cfg: PipelineConfig, flow_run_state: Callable[[str], str | None] | None = None, lock: Lock | None = None
) -> list[dict[str, str]]:
    """End runs left RUNNING by dead processes and settle undecided versions (:mod:`pipelines.reconcile`).

    Housekeeping never fails the pipeline: an error comes back as one ``kind=error`` finding."""
    from pipelines import reconcile as rc
    from pipelines import tracking

    try:
        tracking.connect(cfg)
        findings = rc.reconcile(cfg, flow_run_state=flow_run_state, lock=lock)
    except Exception as exc:
        log.warning("reconcile failed: %s: %s", type(exc).__name__, exc)
        return [{"kind": "error", "id": "", "action": "none", "reason": f"{type(exc).__name__}: {exc}"}]
    return [f.to_dict() for f in findings]


def findings_text(findings: list[dict[str, str]]) -> list[str]:
    """One line per finding that changed something (``run R ended (owner gone)``)."""
    return [
        f"reconcile: {f['kind']} {f['id']} {f['action']} ({f['reason']})" for f in findings if f["action"] != "kept"
    ]


def start_run_stage(cfg: PipelineConfig, run_name: str | None = None, flow_run_id: str | None = None) -> str:
    """Start the MLflow run, tagged with its owner (host, pid, pid start time, Prefect flow run id)
    so :mod:`pipelines.reconcile` can end it if its process dies."""
    from pipelines import tracking
    from pipelines.reconcile import owner_tags

    tracking.connect(cfg)
    tags = {**run_tags(cfg), **source_tags(flow_run_id), **owner_tags(flow_run_id)}
    return tracking.start_run(cfg, run_name=run_name, tags=tags)


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
    primary_dim = cfg.registry.primary_dim
    tracking.log_metrics(run_id, headline(candidate, primary_dim))  # all of them: the table (log_report)
    if base:
        tracking.log_metrics(run_id, headline(base, primary_dim, "base"), prefix="base_")
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
    score: Callable[[str], Scores] | None = None,
) -> dict[str, Any]:
    """Champion/challenger under a lock; then the report artifacts (plot, metrics, model card).

    ``score(uri)``: how a model is scored on the eval split (default :func:`score_stage`)."""
    from pipelines import registry, tracking
    from pipelines.datasets import read_manifest
    from pipelines.serving import read_grid

    tracking.connect(cfg)

    scored: dict[str, Scores] = {}

    def evaluate(uri: str) -> Scores:
        scored[uri] = score(uri) if score is not None else score_stage(cfg, uri, data_dir)
        return scored[uri]

    decision = registry.promote(
        cfg, run_id, model_uri, candidate_scores(candidate, model_root), evaluate=evaluate, lock=lock
    )
    out = decision.to_dict()
    out["line"] = decision.line()
    out["champion_metrics"] = _champion_metrics(cfg, run_id, decision, scored)
    grid = read_grid(Path(model_root) / "eval_metrics.json") if model_root else None
    if grid is not None:
        from pipelines.tracking.serving import log_serving

        log_serving(run_id, grid, cfg.registry.model_name, decision.candidate_version)
        out["serving"] = grid
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
        decision=out,
        serving=grid,
    )
    return out


def _champion_metrics(cfg: PipelineConfig, run_id: str, decision: Any, scored: dict[str, Scores]) -> dict | None:
    """Every metric of the champion re-scored on this eval (what the run logged a headline of), or None."""
    from pipelines import tracking

    name = cfg.registry.model_name
    for version in (decision.champion_version, decision.scored_against):
        if version and f"models:/{name}/{version}" in scored:
            return dict(scored[f"models:/{name}/{version}"].metrics)
    return tracking.read_metrics(run_id, prefix="champion_") or None  # a rerun: what the run holds


def end_run_stage(run_id: str, status: str = "FINISHED") -> None:
    from pipelines import tracking

    tracking.end_run(run_id, status)


def tracking_ui_url(cfg: PipelineConfig, run_id: str) -> str | None:
    """A browser link to the run when the tracking URI is an HTTP server, else None.

    The link starts with ``$MLFLOW_UI_URL`` when set (the address people open, e.g. behind a proxy),
    else with the tracking URI itself."""
    from mlflow.tracking import MlflowClient

    from pipelines import tracking

    uri = tracking.resolve_tracking_uri(cfg)
    if not tracking.is_remote(uri):
        return None
    exp_id = MlflowClient(uri).get_run(run_id).info.experiment_id
    base = os.environ.get("MLFLOW_UI_URL") or uri
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
