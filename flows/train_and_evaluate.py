"""The ``train-and-evaluate`` Prefect flow and its local entry point.

``python -m flows.train_and_evaluate --profile auto`` runs it in this process on an ephemeral Prefect
API (unless ``PREFECT_API_URL`` points at a server) with sqlite MLflow under ``data/``; the
deployments in ``prefect.yaml`` run the same flow on a process worker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.flows import Flow
from prefect.states import Completed, State

from flows import outcome as out
from pipelines import report as rpt
from pipelines import sequence, stages
from pipelines.config import (
    AUTO,
    PROFILE_CHOICES,
    ConfigError,
    PipelineConfig,
    choose_profile,
    deep_merge,
    load_config,
    parse_set,
    read_config_file,
)
from pipelines.locks import promotion_lock
from tasks import stages as t
from tasks.stages import PromotionFailed as PromotionFailed  # re-exported: the run's Failed message

if TYPE_CHECKING:
    ProfileChoice = str
else:  # built from the one list of names: the Prefect UI shows it as a dropdown, the API enforces it
    ProfileChoice = Literal[PROFILE_CHOICES]
REPORT_KEY = out.report_key(None)
"""The report's artifact key of a run outside a deployment; a deployment's runs use ``out.report_key(name)``."""
RUN_ID_LABEL = "mlflow.run_id"

_RUN_IDS: dict[str, str] = {}
"""flow run id -> MLflow run id, for hooks that run in this process (failure); others read the label."""

log = logging.getLogger(__name__)


# --- ending the MLflow run when the flow does not finish ----------------------------------------


def _remember_run(run_id: str) -> None:
    flow_run_id = runtime.flow_run.id
    if not flow_run_id:
        return
    _RUN_IDS[str(flow_run_id)] = run_id
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(flow_run_id, {RUN_ID_LABEL: run_id})
    except Exception as exc:  # a label is a convenience for out-of-process hooks; never fail the run
        log.warning("could not label flow run with its MLflow run id: %s", exc)


def _mlflow_run_id(flow_run: FlowRun) -> str | None:
    run_id = _RUN_IDS.get(str(flow_run.id))
    if run_id:
        return run_id
    labels = dict(flow_run.labels or {})
    if RUN_ID_LABEL not in labels:  # the snapshot may predate the label: read it fresh
        try:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                labels = dict(client.read_flow_run(flow_run.id).labels or {})
        except Exception:
            return None
    value = labels.get(RUN_ID_LABEL)
    return str(value) if value else None


def _end_mlflow_run(status: str, flow_run: FlowRun) -> None:
    run_id = _mlflow_run_id(flow_run)
    if not run_id:
        return
    from pipelines import tracking

    params = flow_run.parameters or {}
    tracking.connect(config_from_parameters(params.get("profile", "auto"), params.get("overrides")))
    stages.end_run_stage(run_id, status)


def _end_quietly(status: str, flow_run: FlowRun) -> None:
    """Hooks never raise: an unreachable MLflow must not turn a failure into a hook crash. A run
    left RUNNING here is ended later by ``recipe-embed reconcile`` or the next flow run."""
    try:
        _end_mlflow_run(status, flow_run)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        log.warning(
            "could not end the MLflow run of flow run %s as %s (%s: %s); `recipe-embed reconcile` will",
            getattr(flow_run, "id", "?"),
            status,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )


def on_failure(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    _end_quietly("FAILED", flow_run)


def on_cancellation(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    _end_quietly("KILLED", flow_run)


def on_crashed(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    _end_quietly("FAILED", flow_run)


# --- the flow ------------------------------------------------------------------------------------------


def config_from_parameters(profile: str = "auto", overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """The flow's parameters -> a validated config; a bad key or value is one ConfigError line."""
    try:
        return load_config(profile, overrides=overrides or None)
    except ConfigError as exc:
        raise ConfigError(f"invalid flow parameters: {exc}") from None


@flow(
    name="train-and-evaluate",
    description="Synthesize -> validate -> fine-tune -> evaluate -> log to MLflow -> promote the champion.",
    on_failure=[on_failure],
    on_cancellation=[on_cancellation],
    on_crashed=[on_crashed],
    validate_parameters=True,
)
def train_and_evaluate(
    profile: ProfileChoice = AUTO,
    overrides: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> Any:
    """Train a candidate recipe embedder and promote it when it beats the champion.

    Args:
        profile: named config profile; ``auto`` = the card's scale on a GPU, ``cpu`` otherwise.
        overrides: nested config overrides, e.g. ``{"training": {"epochs": 2}}`` (unknown keys fail).
        run_name: MLflow run name (default: the Prefect flow run's name).
    """
    logger = get_run_logger()
    cfg = config_from_parameters(profile, overrides)
    logger.info("config: profile %s, data under %s", cfg.profile, cfg.paths.data_dir)
    report = sequence.run_stages(
        cfg,
        t.FLOW_RUNNER,
        run_name=run_name or runtime.flow_run.name or None,
        flow_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
        lock=promotion_lock(cfg),
        on_run_started=_remember_run,
    )
    report["flow_run"] = runtime.flow_run.name
    return _finish(cfg, report)


def _finish(cfg: PipelineConfig, report: dict[str, Any]) -> State[dict[str, Any]]:
    """Publish the report (artifact keyed per deployment), emit the outcome's events, and end in a
    Completed state named after the outcome whose message is the decision line."""
    logger = get_run_logger()
    deployment = runtime.deployment.name
    line = rpt.decision_line(report)
    kind = out.outcome(report)
    create_markdown_artifact(
        markdown=rpt.to_markdown(report),
        key=out.report_key(deployment),
        description=f"{out.STATE_NAMES[kind]} ({runtime.flow_run.name}): {line}",
    )
    logger.info("decision (eval split): %s", line)
    if report.get("mlflow_url"):
        logger.info("MLflow run: %s", report["mlflow_url"])
    age = out.champion_age_days(cfg) if kind != "promoted" else None
    out.emit(out.events(cfg, report, deployment, age))
    return Completed(message=line, name=out.STATE_NAMES[kind], data=report)


# --- local entry point -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = _Parser(
        prog="python -m flows.train_and_evaluate",
        description="Run the train-and-evaluate flow here (ephemeral Prefect API unless PREFECT_API_URL is set).",
    )
    ap.add_argument(
        "--profile",
        "-p",
        choices=PROFILE_CHOICES,
        help="named profile (default: the config file's `profile`, else auto = default on a GPU, cpu elsewhere)",
    )
    ap.add_argument("--config", "-c", type=Path, help="YAML/TOML/JSON file of config overrides")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE override (repeatable)")
    ap.add_argument("--run-name", help="MLflow run name")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    try:
        file_data = read_config_file(args.config) if args.config else {}
        profile = choose_profile(args.profile, file_data, default=AUTO)  # the rule recipe-embed follows
        overrides = deep_merge({k: v for k, v in file_data.items() if k != "profile"}, parse_set(args.sets))
        load_config(profile, overrides=overrides or None)  # fail before starting any server
    except ConfigError as exc:
        print(f"train-and-evaluate: error: {exc}", file=sys.stderr)
        return 2
    # the ephemeral API starts a server subprocess: Prefect's 20 s default is short on a busy machine;
    # settings are read when prefect is imported, so the override goes through temporary_settings
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    startup = max(120, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    try:
        with temporary_settings(
            updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup, PREFECT_SERVER_ANALYTICS_ENABLED: False}
        ):
            # the flow ends in a named Completed state; calling it returns that state's data, the report
            result: dict[str, Any] = cast(
                "dict[str, Any]",
                train_and_evaluate(profile=profile, overrides=overrides or None, run_name=args.run_name),
            )
    except Exception as exc:
        print(f"train-and-evaluate: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    print()
    print(rpt.to_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
