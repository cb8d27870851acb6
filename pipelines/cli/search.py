"""``recipe-embed search "QUERY"``: the top recipe cards of a catalog for a query."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve


def register(app: typer.Typer) -> None:
    @app.command("search")
    @handle_errors
    def search_cmd(
        query: Annotated[str, typer.Argument(help='What to look for, e.g. "quick vegan thai dinner with tofu".')],
        model: Annotated[
            str | None,
            typer.Option(
                "--model", "-m", help="Model (default: models:/recipe-embedder@champion), a dir or bundled:..."
            ),
        ] = None,
        dim: Annotated[
            int | None, typer.Option("--dim", help="Served dimension (default: the recommendation).")
        ] = None,
        precision: Annotated[
            str | None,
            typer.Option("--precision", help="float32, int8 or binary (default: the recommendation)."),
        ] = None,
        k: Annotated[int, typer.Option("-k", help="Number of recipe cards to show.")] = 5,
        catalog: Annotated[
            Path | None, typer.Option("--catalog", help="Recipe catalog (CSV/JSONL/Parquet; default: the bundled one).")
        ] = None,
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
    ) -> None:
        """Embed the catalog once (cached beside the model) and print the top k recipe cards with scores."""
        from pipelines.search import check_request, run_search

        check_request(query, k, precision)
        extra = {"catalog": {"path": str(catalog)}} if catalog is not None else {}
        cfg = resolve(profile, config, set_, **extra)
        for line in run_search(cfg, query, model=model, dim=dim, precision=precision, k=k):
            typer.echo(line)
