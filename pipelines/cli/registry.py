"""``recipe-embed promote`` and ``recipe-embed champion``: the Model Registry from the shell."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve
from pipelines.errors import InputError
from pipelines.locks import promotion_lock
from pipelines.metrics import Scores


def _fmt_metrics(metrics: Mapping[str, float], dims: tuple[int, ...]) -> list[str]:
    from pipelines.metrics import SIMILARITY, lookup

    lines = []
    for d in dims:
        values = {m: lookup(metrics, d, m) for m in ("map@100", "ndcg@10", "mrr@10")}
        shown = ", ".join(f"{SIMILARITY}_{m}={v:.4f}" for m, v in values.items() if v is not None)
        if shown:
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
        """Compare a logged candidate with the re-scored champion and move the alias if it wins.

        The candidate's metrics and eval set come from the run (dataset directory tag); the candidate and
        the champion are scored per query on that same eval set, and a paired bootstrap decides.
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

        def evaluate(uri: str) -> Scores:
            from pipelines.stages import score_stage

            typer.echo(f"scoring {uri} on {Path(data_dir) / 'eval.parquet'}", err=True)
            return score_stage(cfg, uri, data_dir)

        decision = registry.promote(cfg, run_id, model_uri, candidate, evaluate, lock=promotion_lock(cfg))
        if as_json:
            typer.echo(json.dumps(decision.to_dict(), indent=2, sort_keys=True))
            return
        name = cfg.registry.model_name
        typer.echo(f"{name} version {decision.candidate_version}: {decision.label} ({decision.reason})")
        typer.echo(decision.line())
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
