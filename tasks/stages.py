"""One thin Prefect ``@task`` per stage of ``pipelines.stages``; no pipeline logic lives here.

Policy per task:

- services (MLflow) -> declared retries; training -> no retries (a child process, :mod:`pipelines.childproc`);
- anything handed a client, a lock or a model -> ``cache_policy=NONE``;
- synthesis (which validates) -> cached by ``stages.dataset_key(cfg)`` (config + catalog digest) with
  persisted results, so a rerun on the same inputs is a ``Cached`` state and a changed byte is not;
- every task has a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from pipelines import sequence, skip, stages
from pipelines.childproc import train_in_subprocess
from pipelines.config import PipelineConfig
from pipelines.locks import promotion_lock

TRAIN_TIMEOUT_S = float(os.environ.get("RECIPE_EMBED_TRAIN_TIMEOUT_S", 6 * 3600))
"""Training child deadline; the task's own timeout adds a minute for the clean stop."""

MLFLOW_RETRY_DELAYS: list[float] = [
    float(x) for x in os.environ.get("RECIPE_EMBED_MLFLOW_RETRY_DELAYS", "2,10,30").split(",") if x.strip()
]
"""Seconds before each retry of a task that talks to MLflow (a comma list; one retry per entry)."""
MLFLOW_RETRIES = len(MLFLOW_RETRY_DELAYS)


# --- caching -------------------------------------------------------------------------------------


def dataset_cache_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str:
    """Cache key of synthesis: the data-relevant config and the catalog's content digest."""
    return f"recipe-embed-dataset-{stages.dataset_key(parameters['cfg'])}"


def result_storage_for(cfg: PipelineConfig) -> Path:
    """Persisted task results live in ``<data_dir>/prefect-results`` (absolute, for any cwd).

    A ``Path`` (not an unsaved block) is what Prefect accepts as local result storage.
    """
    path = (Path(cfg.paths.data_dir) / "prefect-results").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- retries ---------------------------------------------------------------------------------------


def retry_unless_out_of_memory(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: an out-of-memory failure is not retried (it would fail again)."""
    from pipelines.errors import OutOfMemoryError

    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        return not isinstance(exc, OutOfMemoryError)  # the stages raise it for any out-of-memory
    return True


def _logger() -> Any:
    """The task run's logger; the module's outside a run (a task's ``.fn`` called directly)."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


# --- tasks -----------------------------------------------------------------------------------------


@task(
    name="synthesize",
    description="Synthesize and validate the Q/A dataset (cached by config + catalog digest).",
    cache_key_fn=dataset_cache_key,
    persist_result=True,
    timeout_seconds=3600,
)
def synthesize(cfg: PipelineConfig) -> str:
    return stages.synthesize_stage(cfg)


@task(
    name="start-mlflow-run",
    cache_policy=NONE,
    timeout_seconds=120,
    retries=MLFLOW_RETRIES,
    retry_delay_seconds=MLFLOW_RETRY_DELAYS,
)
def start_run(cfg: PipelineConfig, run_name: str | None = None, flow_run_id: str | None = None) -> str:
    run_id = stages.start_run_stage(cfg, run_name=run_name, flow_run_id=flow_run_id)
    _logger().info("started MLflow run %s (experiment %s)", run_id, cfg.tracking.experiment)
    return run_id


def prefect_flow_run_state(flow_run_id: str) -> str | None:
    """The Prefect state type of a flow run (``CRASHED`` ...), ``DELETED`` if gone, None if unknown."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        run_uuid = uuid.UUID(str(flow_run_id))
    except ValueError:
        return None
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_uuid)
    except ObjectNotFound:
        return "DELETED"
    except Exception:
        return None
    return run.state.type.value if run.state is not None else None


@task(name="reconcile", cache_policy=NONE, timeout_seconds=600)
def reconcile(cfg: PipelineConfig, lock: sequence.Lock | None = None) -> list[dict[str, str]]:
    """End runs left RUNNING by dead processes and settle undecided versions; never fails the flow."""
    findings = stages.reconcile_stage(cfg, prefect_flow_run_state, lock or promotion_lock(cfg))
    logger = _logger()
    for line in stages.findings_text(findings):
        logger.info("%s", line)
    for f in findings:
        if f["kind"] == "error":
            logger.warning("reconcile failed: %s", f["reason"])
    return findings


@task(
    name="skip-check",
    cache_policy=NONE,
    timeout_seconds=120,
    retries=MLFLOW_RETRIES,
    retry_delay_seconds=MLFLOW_RETRY_DELAYS,
)
def skip_check(cfg: PipelineConfig) -> str | None:
    reason = skip.should_skip_training(cfg)
    _logger().info("%s", f"skip training: {reason}" if reason else "train: no run has these inputs yet")
    return reason


@task(
    name="mark-skipped",
    cache_policy=NONE,
    timeout_seconds=120,
    retries=MLFLOW_RETRIES,
    retry_delay_seconds=MLFLOW_RETRY_DELAYS,
)
def mark_skipped(cfg: PipelineConfig, run_id: str, reason: str) -> None:
    skip.mark_skipped_stage(cfg, run_id, reason)
    _logger().info("marked MLflow run %s skipped", run_id)


@task(
    name="fine-tune",
    cache_policy=NONE,
    retries=0,  # a failed training child is not retried: its typed error says why
    timeout_seconds=TRAIN_TIMEOUT_S + 60,
)
def train(cfg: PipelineConfig, data_dir: str, out_dir: str) -> str:
    return train_in_subprocess(cfg, data_dir, out_dir, timeout_s=TRAIN_TIMEOUT_S, logger=_logger())


def scores_text(cfg: PipelineConfig, metrics: dict[str, float] | None) -> str:
    """``eval map@100 at 384 0.8801, 256 0.8712, ...`` (the split named, every dim that was scored)."""
    from pipelines.metrics import PRIMARY, lookup

    found = [(d, lookup(metrics, d, PRIMARY)) for d in cfg.evaluation.dims]
    shown = ", ".join(f"{d} {v:.4f}" for d, v in found if v is not None)
    return f"eval {PRIMARY} at {shown}" if shown else f"no eval {PRIMARY}"


evaluation_task = task(
    name="evaluate",
    task_run_name="evaluate-{role}",
    cache_policy=NONE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_out_of_memory,
    timeout_seconds=3600,
)
"""The options of both evaluation tasks; each run is named after its ``role`` (candidate, base, champion)."""


@evaluation_task
def evaluate(
    cfg: PipelineConfig, model: str, data_dir: str, out_json: str, role: str = "candidate"
) -> dict[str, float]:
    """Score ``model`` on the eval split; ``role`` (candidate, base) names the task run."""
    metrics = stages.evaluate_stage(cfg, model, data_dir, out_json)
    _logger().info("%s %s: %s (written to %s)", role, model, scores_text(cfg, metrics), out_json)
    return metrics


@evaluation_task
def score(cfg: PipelineConfig, model: str, data_dir: str, role: str = "champion") -> Any:
    """Score ``model`` on the eval split with per-query values (for the paired comparison)."""
    scores = stages.score_stage(cfg, model, data_dir)
    _logger().info("%s %s: %s", role, model, scores_text(cfg, scores.metrics))
    return scores


@task(
    name="log-to-mlflow",
    cache_policy=NONE,
    timeout_seconds=1800,
    retries=MLFLOW_RETRIES,
    retry_delay_seconds=MLFLOW_RETRY_DELAYS,
)
def log_to_mlflow(
    cfg: PipelineConfig,
    run_id: str,
    data_dir: str,
    model_root: str,
    candidate: dict[str, float],
    base: dict[str, float] | None,
) -> str:
    """Dataset inputs, training history, candidate and base metrics, then the model; returns the model URI."""
    model_uri = stages.log_stage(cfg, run_id, data_dir, model_root, candidate, base)
    _logger().info(
        "logged to MLflow run %s: dataset, training history, candidate%s metrics, model %s",
        run_id,
        " and base" if base else "",
        model_uri,
    )
    return model_uri


@task(
    name="promote",
    cache_policy=NONE,
    timeout_seconds=900,
    retries=MLFLOW_RETRIES,
    retry_delay_seconds=MLFLOW_RETRY_DELAYS,
)
def promote(
    cfg: PipelineConfig,
    run_id: str,
    model_uri: str,
    data_dir: str,
    candidate: dict[str, float],
    lock: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    base: dict[str, float] | None = None,
    model_root: str | None = None,
) -> dict[str, Any]:
    """Register the candidate, score the champion (task ``evaluate-champion``) and decide."""

    def score_model(uri: str) -> Any:
        return score(cfg, uri, data_dir, role="champion" if uri != model_uri else "candidate")

    decision = stages.promote_stage(
        cfg, run_id, model_uri, data_dir, candidate, lock=lock, base=base, model_root=model_root, score=score_model
    )
    _logger().info(
        "registered %s version %s; decision (eval split): %s",
        cfg.registry.model_name,
        decision.get("candidate_version"),
        decision.get("line"),
    )
    return decision


@task(
    name="end-mlflow-run",
    cache_policy=NONE,
    timeout_seconds=120,
    retries=MLFLOW_RETRIES,
    retry_delay_seconds=MLFLOW_RETRY_DELAYS,
)
def end_run(run_id: str, status: str = "FINISHED") -> None:
    stages.end_run_stage(run_id, status)
    _logger().info("ended MLflow run %s as %s", run_id, status)


# --- the flow's runner of the stage sequence -------------------------------------------------------------


def synthesize_cached(cfg: PipelineConfig) -> tuple[str, bool]:
    """Run the cached synthesis task; return (dataset dir, whether it came from the cache)."""
    task_ = synthesize.with_options(result_storage=result_storage_for(cfg))
    state = task_(cfg, return_state=True)
    data_dir = str(state.result())
    cached = state.name == "Cached"
    if cached and not stages.dataset_is_complete(Path(data_dir)):  # cached path deleted or altered
        state = task_.with_options(refresh_cache=True)(cfg, return_state=True)
        data_dir, cached = str(state.result()), False
    return data_dir, cached


class PromotionFailed(RuntimeError):
    """The promote task failed (after its retries): the flow run is Failed, not Completed."""


def promote_or_fail(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`promote`; its failure is one :class:`PromotionFailed` line (the flow run's state message)."""
    try:
        return promote(*args, **kwargs)
    except Exception as exc:
        raise PromotionFailed(f"promotion failed: {type(exc).__name__}: {exc}") from exc


FLOW_RUNNER = sequence.Runner(
    reconcile=reconcile,
    start_run=start_run,
    synthesize=synthesize_cached,
    skip_check=skip_check,
    mark_skipped=mark_skipped,
    train=train,
    evaluate=evaluate,
    log=log_to_mlflow,
    promote=promote_or_fail,
    end_run=end_run,
    echo=lambda line: _logger().info("%s", line),
)
"""The stage sequence (:func:`pipelines.sequence.run_stages`) with each stage a task of this module."""
