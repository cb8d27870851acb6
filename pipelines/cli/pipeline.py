"""``recipe-embed run``: the whole pipeline in this process, without Prefect."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve


def print_report(report: dict[str, Any], dims: tuple[int, ...], echo: Any = typer.echo) -> None:
    """Per-dimension table (candidate / champion / base), the decision, and where to look next."""
    from rich.console import Console

    from pipelines.evaluation import metrics_table

    results = {"fine-tuned": report["candidate"]}
    decision = report.get("decision") or {}
    if decision.get("champion_metrics"):
        results[f"champion v{decision.get('champion_version')}"] = decision["champion_metrics"]
    if report.get("base"):
        results["base"] = report["base"]
    Console().print(metrics_table(results, dims))
    verdict = "PROMOTED" if decision.get("promote") else "NOT promoted"
    echo(f"decision: {verdict} (version {decision.get('candidate_version')}): {decision.get('reason')}")


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
        from pipelines import stages, tracking

        cfg = resolve(profile, config, set_)
        report = stages.run_pipeline(cfg, run_name=run_name, echo=typer.echo)
        print_report(report, cfg.evaluation.dims)
        uri = tracking.resolve_tracking_uri(cfg)
        if uri.startswith("sqlite:"):
            typer.echo(
                f"compare runs in the MLflow UI:  mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)"
            )
        else:
            typer.echo(f"MLflow UI: {uri}")
