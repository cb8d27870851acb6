"""The pipeline's stage sequence, told once.

``recipe-embed run`` and the Prefect flow ``train-and-evaluate`` both call :func:`run_stages`; they
differ only in the :class:`Runner` they hand it: in-process stage functions (:data:`LOCAL`, built
here) or the Prefect tasks that wrap the same functions (``tasks.stages.FLOW_RUNNER``). So both make
the same decisions in the same order and return the same report (:mod:`pipelines.report`)::

    reconcile -> start run -> synthesize + validate -> skip check -+-> mark skipped --------------+
                                                                   +-> train -> evaluate -> log ---+-> promote -> end run
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipelines import stages
from pipelines.config import PipelineConfig

log = logging.getLogger(__name__)

Lock = Callable[[], AbstractContextManager[Any]]

STAGES = ("reconcile", "start_run", "synthesize", "skip_check", "train", "evaluate", "log", "promote", "end_run")
"""The stages in the order :func:`run_stages` calls them (``mark_skipped`` replaces train..promote on a skip)."""


@dataclasses.dataclass(frozen=True)
class Runner:
    """How each stage runs. Every field is a callable with the signature of the stage function in
    :mod:`pipelines.stages` it stands for (a Prefect task wrapping it, or the function itself)."""

    reconcile: Callable[[PipelineConfig, Lock | None], Any]
    start_run: Callable[..., str]  # (cfg, run_name=, flow_run_id=) -> MLflow run id
    synthesize: Callable[[PipelineConfig], tuple[str, bool]]  # -> (dataset dir, reused)
    skip_check: Callable[[PipelineConfig], str | None]  # -> a reason to skip training, or None
    mark_skipped: Callable[[PipelineConfig, str, str], None]
    train: Callable[[PipelineConfig, str, str], str]  # (cfg, data dir, out dir) -> model root
    evaluate: Callable[..., dict[str, float]]  # (cfg, model, data dir, out json, role=) -> metrics
    log: Callable[..., str]  # (cfg, run id, data dir, model root, candidate, base) -> model URI
    promote: Callable[..., dict[str, Any]]  # (cfg, run id, model URI, data dir, candidate, lock=, base=, model_root=)
    end_run: Callable[[str, str], None]
    echo: Callable[[str], None] = print
    guard: Callable[[str], AbstractContextManager[Any]] = lambda _run_id: contextlib.nullcontext()
    """Around the stages after the run started: the CLI ends the run FAILED/KILLED on an error or a
    signal; the flow leaves that to its state hooks."""


def run_stages(
    cfg: PipelineConfig,
    runner: Runner,
    *,
    run_name: str | None = None,
    flow_run_id: str | None = None,
    lock: Lock | None = None,
    on_run_started: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """reconcile -> start run -> synthesize + validate -> skip check -> train -> evaluate -> log ->
    promote -> end run; return the run's report.

    ``lock``: the promotion lock factory (:func:`pipelines.locks.promotion_lock`), used by reconcile
    (settling versions) and promote. ``on_run_started(run_id)``: called once the MLflow run exists.
    """
    say = runner.echo
    say("[1/7] reconcile: end runs whose process is gone, settle undecided versions")
    runner.reconcile(cfg, lock)
    run_id = runner.start_run(cfg, run_name=run_name, flow_run_id=flow_run_id)
    if on_run_started is not None:
        on_run_started(run_id)
    say(f"MLflow run {run_id}")
    report: dict[str, Any] = {
        "profile": cfg.profile,
        "run_id": run_id,
        "dims": list(cfg.evaluation.dims),
        "primary_dim": cfg.registry.primary_dim,
        "skipped": None,
        "decision": None,
        "model_uri": None,
        "metrics": {"candidate": None, "champion": None, "base": None},
    }
    with runner.guard(run_id):
        say("[2/7] synthesize + validate")
        data_dir, reused = runner.synthesize(cfg)
        report.update(data_dir=data_dir, synthesis="cached" if reused else "computed")
        say(f"[3/7] skip check: {'dataset reused' if reused else 'dataset computed'} ({data_dir})")
        reason = runner.skip_check(cfg)
        if reason:
            say(f"skipping training: {reason}")
            runner.mark_skipped(cfg, run_id, reason)
            report["skipped"] = reason
        else:
            report.update(_train_to_decision(cfg, runner, run_id, data_dir, lock))
        runner.end_run(run_id, "FINISHED")
    report.update(_links(cfg, run_id))
    return report


def _train_to_decision(
    cfg: PipelineConfig, runner: Runner, run_id: str, data_dir: str, lock: Lock | None
) -> dict[str, Any]:
    """train -> evaluate (candidate, base) -> log -> promote; the report's entries they fill."""
    from pipelines.models import pick_device

    say = runner.echo
    say(
        f"[4/7] train on {pick_device(cfg.training.device)}: batch {cfg.training.per_device_batch_size}, "
        f"{cfg.training.epochs:g} epoch(s)"
    )
    model_root = runner.train(cfg, data_dir, str(stages.default_model_root(cfg)))
    say("[5/7] evaluate candidate" + (" and base model" if cfg.evaluation.evaluate_base else ""))
    root = Path(model_root)
    candidate = runner.evaluate(cfg, model_root, data_dir, str(root / "eval_metrics.json"), role="candidate")
    base = None
    if cfg.evaluation.evaluate_base:
        base = runner.evaluate(cfg, cfg.model.base_model, data_dir, str(root / "base_metrics.json"), role="base")
    say("[6/7] log to MLflow")
    model_uri = runner.log(cfg, run_id, data_dir, model_root, candidate, base)
    say("[7/7] champion/challenger")
    decision = runner.promote(cfg, run_id, model_uri, data_dir, candidate, lock=lock, base=base, model_root=model_root)
    return {
        "model_root": model_root,
        "model_uri": model_uri,
        "decision": decision,
        "metrics": {"candidate": candidate, "champion": decision.get("champion_metrics"), "base": base},
    }


def _links(cfg: PipelineConfig, run_id: str) -> dict[str, Any]:
    """The tracking URI and the run's browser link; a missing link never fails a finished run."""
    from pipelines.tracking import resolve_tracking_uri

    try:
        return {"tracking_uri": resolve_tracking_uri(cfg), "mlflow_url": stages.tracking_ui_url(cfg, run_id)}
    except Exception as exc:
        log.warning("no MLflow link: %s", exc)
        return {"mlflow_url": None}


# --- in this process (recipe-embed run) ---------------------------------------------------------------


def _evaluate_here(cfg: PipelineConfig, model: str, data_dir: str, out_json: str, role: str = "candidate") -> dict:
    return stages.evaluate_stage(cfg, model, data_dir, out_json)


def _guard_here(run_id: str) -> AbstractContextManager[Any]:
    from pipelines import tracking

    return tracking.run_guard(run_id, end_on_success=False)


def local_runner(echo: Callable[[str], None] = print) -> Runner:
    """The stages as plain function calls in this process, printing progress with ``echo``."""
    from pipelines import reconcile as rc
    from pipelines import skip

    def reconcile_here(cfg: PipelineConfig, lock: Lock | None) -> list[dict[str, str]]:
        findings = stages.reconcile_stage(cfg, rc.prefect_http_state(), lock)
        for line in stages.findings_text(findings):
            echo(line)
        return findings

    return Runner(
        reconcile=reconcile_here,
        start_run=stages.start_run_stage,
        synthesize=stages.synthesize_or_reuse,
        skip_check=skip.should_skip_training,
        mark_skipped=skip.mark_skipped_stage,
        train=stages.train_stage,
        evaluate=_evaluate_here,
        log=stages.log_stage,
        promote=stages.promote_stage,
        end_run=stages.end_run_stage,
        echo=echo,
        guard=_guard_here,
    )
