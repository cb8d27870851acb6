"""The ``recipe-embed`` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import sys

import typer

from pipelines.cli import _common, data, model, pipeline, recover, registry, search

app = typer.Typer(
    name="recipe-embed",
    help="Keep a recipe-search embedding model fresh: synthesize, validate, train, evaluate, promote.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """recipe-embed: synthesize -> validate -> train -> evaluate -> track -> promote."""


_common.register(app)
data.register(app)
model.register(app)
registry.register(app)
recover.register(app)
pipeline.register(app)
search.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: known errors become one line on stderr and an exit code."""
    from pipelines import lifeline

    lifeline.install()  # a child of a training task: end when that task's process ends
    _common.quiet_third_party()
    try:
        app(args=argv, standalone_mode=True)
    except _common.HANDLED as exc:  # raised outside a command body (rare)
        _common.die(exc)
    sys.exit(0)
