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
        """Reconcile, synthesize, validate, train, evaluate, log to MLflow and promote, without Prefect:
        the flow's stage sequence in this process (SKIPPED when the champion has the same inputs)."""
        from pipelines import report, sequence

        cfg = resolve(profile, config, set_)
        runner = sequence.local_runner(echo=typer.echo)
        result = sequence.run_stages(cfg, runner, run_name=run_name, lock=promotion_lock(cfg))
        typer.echo("")
        typer.echo(report.to_text(result))
