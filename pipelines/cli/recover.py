"""``recipe-embed reconcile`` and ``recipe-embed log``: recover from crashes without retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve
from pipelines.locks import promotion_lock


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    @handle_errors
    def reconcile_cmd(
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, change nothing.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    ) -> None:
        """End FAILED the runs left RUNNING by a dead process; settle registry versions with no decision.

        A run's owner is its Prefect flow run (asked at $PREFECT_API_URL when set) or its host + pid
        (+ process start time) recorded at run start.
        """
        from pipelines import reconcile as rc
        from pipelines import tracking

        cfg = resolve(profile, config, set_)
        tracking.connect(cfg)
        findings = rc.reconcile(cfg, flow_run_state=rc.prefect_http_state(), lock=promotion_lock(cfg), dry_run=dry_run)
        if as_json:
            typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
            return
        if not findings:
            typer.echo("nothing to reconcile: no RUNNING runs, every version has a decision")
        for f in findings:
            typer.echo(f"{f.kind} {f.id}: {f.action} ({f.reason})")

    @app.command("log")
    @handle_errors
    def log_cmd(
        model_dir: Annotated[Path, typer.Option("--model-dir", help="A train output dir (model/, train_result.json).")],
        data: Annotated[Path, typer.Option("--data", help="The dataset directory it was trained on.")],
        run_id: Annotated[
            str | None, typer.Option("--run-id", help="Log into this existing run (default: a new run).")
        ] = None,
        promote: Annotated[bool, typer.Option("--promote", help="Then run champion/challenger.")] = False,
        run_name: Annotated[str | None, typer.Option("--run-name", help="Name of the new run.")] = None,
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
    ) -> None:
        """Log a model that was trained but never logged (evaluating it if needed); --promote to promote it."""
        from pipelines import stages, tracking
        from pipelines.datasets import read_manifest
        from pipelines.io import read_json_object
        from pipelines.models import model_dir_of

        cfg = resolve(profile, config, set_)
        root = model_dir.expanduser().resolve()
        model_dir_of(root)  # InputError when there is no model
        dataset = data.expanduser().resolve()
        read_manifest(dataset)  # InputError when it is not a complete dataset
        data_dir = str(dataset)
        tracking.connect(cfg)
        rid = run_id or stages.start_run_stage(cfg, run_name=run_name or f"log {root.name}")
        typer.echo(f"MLflow run {rid} at {tracking.resolve_tracking_uri(cfg)}")
        with tracking.run_guard(rid):
            eval_json = root / "eval_metrics.json"
            if eval_json.exists():
                candidate = {k: float(v) for k, v in read_json_object(eval_json).items()}
            else:
                typer.echo(f"evaluating {root} on {Path(data_dir) / 'eval.parquet'}", err=True)
                candidate = stages.evaluate_stage(cfg, str(root), data_dir, str(eval_json))
            base_json = root / "base_metrics.json"
            base = {k: float(v) for k, v in read_json_object(base_json).items()} if base_json.exists() else None
            model_uri = stages.log_stage(cfg, rid, data_dir, str(root), candidate, base)
            typer.echo(f"logged {model_uri}")
            if promote:
                decision = stages.promote_stage(
                    cfg, rid, model_uri, data_dir, candidate, lock=promotion_lock(cfg), base=base, model_root=str(root)
                )
                typer.echo(
                    f"{cfg.registry.model_name} version {decision.get('candidate_version')}: "
                    f"{decision.get('decision')} ({decision.get('reason')})"
                )
        if not promote:
            typer.echo(f"promote it with: recipe-embed promote --run-id {rid}")
