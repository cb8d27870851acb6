"""``recipe-embed run``: the whole pipeline in this process, without Prefect."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve
from pipelines.locks import promotion_lock


def register(app: typer.Typer) -> None:
    @app.command("run")
    @handle_errors
    def run_cmd(
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        run_name: Annotated[str | None, typer.Option("--run-name", help="MLflow run name.")] = None,
    ) -> None:
        """Synthesize, validate, train, evaluate, log to MLflow and promote, without Prefect."""
        from pipelines import report, stages

        cfg = resolve(profile, config, set_)
        result = stages.run_pipeline(cfg, run_name=run_name, echo=typer.echo, lock=promotion_lock(cfg))
        typer.echo("")
        typer.echo(report.to_text(result))
