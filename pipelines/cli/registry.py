"""``recipe-embed promote`` and ``recipe-embed champion``: the Model Registry from the shell."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, promotion_lock, resolve
from pipelines.errors import InputError


def _fmt_metrics(metrics: Mapping[str, float], dims: tuple[int, ...]) -> list[str]:
    lines = []
    for d in dims:
        row = {k.split(f"dim_{d}_", 1)[1]: v for k, v in metrics.items() if k.startswith(f"dim_{d}_")}
        if not row:
            continue
        shown = ", ".join(
            f"{m}={row[m]:.4f}" for m in ("cosine_map@100", "cosine_ndcg@10", "cosine_mrr@10") if m in row
        )
        lines.append(f"  dim {d}: {shown}")
    return lines


def register(app: typer.Typer) -> None:
    @app.command("promote")
    @handle_errors
    def promote_cmd(
        run_id: Annotated[str, typer.Option("--run-id", help="The MLflow run of the candidate.")],
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    ) -> None:
        """Compare a logged candidate with the re-evaluated champion and move the alias if it wins.

        The candidate's metrics and eval set come from the run (dataset directory tag); the champion
        is re-evaluated on that same eval set.
        """
        from pipelines import registry, tracking

        cfg = resolve(profile, config, set_)
        tracking.connect(cfg)
        run = _get_run(tracking, run_id)
        tags: dict[str, Any] = dict(run.data.tags)
        model_uri = tags.get(tracking.MODEL_URI_TAG)
        if not model_uri:
            raise InputError(f"run {run_id} has no logged model (tag {tracking.MODEL_URI_TAG} missing)")
        data_dir = tags.get(tracking.DATASET_DIR_TAG)
        if not data_dir:
            raise InputError(f"run {run_id} has no dataset directory (tag {tracking.DATASET_DIR_TAG} missing)")
        candidate = tracking.read_metrics(run_id)
        if not candidate:
            raise InputError(f"run {run_id} has no candidate metrics (dim_* keys)")

        def evaluate(uri: str) -> dict[str, float]:
            from pipelines.stages import evaluate_stage

            typer.echo(f"re-evaluating {uri} on {Path(data_dir) / 'eval.parquet'}", err=True)
            return evaluate_stage(cfg, uri, data_dir)

        decision = registry.promote(cfg, run_id, model_uri, candidate, evaluate, lock=promotion_lock(cfg))
        if as_json:
            typer.echo(json.dumps(decision.to_dict(), indent=2, sort_keys=True))
            return
        name = cfg.registry.model_name
        typer.echo(f"{name} version {decision.candidate_version}: {decision.label} ({decision.reason})")
        for d, delta in decision.deltas.items():
            typer.echo(f"  dim {d} map@100 delta vs champion v{decision.champion_version}: {delta:+.4f}")

    @app.command("champion")
    @handle_errors
    def champion_cmd(
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    ) -> None:
        """Show the current champion: version, metrics, and the line that loads it."""
        from pipelines import registry, tracking

        cfg = resolve(profile, config, set_)
        tracking.connect(cfg)
        info = registry.champion(cfg)
        if as_json:
            typer.echo(json.dumps(info, indent=2, sort_keys=True, default=str))
            return
        name = cfg.registry.model_name
        if info is None:
            typer.echo(f"no champion yet for {name} (alias {cfg.registry.champion_alias!r} is not set)")
            return
        typer.echo(f"{name} champion: version {info['version']} (run {info['run_id']})")
        typer.echo("\n".join(_fmt_metrics(info["metrics"], tuple(cfg.evaluation.dims))) or "  (no metrics)")
        typer.echo(info["load"])


def _get_run(tracking: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return tracking.client().get_run(run_id)
    except MlflowException as exc:
        raise InputError(f"no MLflow run {run_id!r} at {tracking.client().tracking_uri}: {exc.message}") from exc
