"""The ``recipe-embed`` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, NoReturn

import typer
from typer._click import Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors its own click
from typer.core import TyperGroup

from pipelines.cli import _common, data, model, pipeline, recover, registry, search


class _OneLineUsageErrors(TyperGroup):
    """A usage error (a missing option value, an unknown option) is one stderr line and exit 2, like
    every other bad input, instead of the usage box; no arguments at all still prints the help."""

    @staticmethod
    def _one_line(exc: UsageError) -> NoReturn:
        if isinstance(exc, NoArgsIsHelpError):
            raise exc
        where = exc.ctx.command_path if exc.ctx is not None else "recipe-embed"
        with contextlib.suppress(OSError):
            typer.echo(f"recipe-embed: error: {exc.format_message()} (see {where} --help)", err=True)
        raise typer.Exit(2) from exc

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            self._one_line(exc)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # raised while parsing the subcommand's own options
            self._one_line(exc)


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="recipe-embed",
    help="Keep a recipe-search embedding model fresh: synthesize, validate, train, evaluate, promote.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(cls=_OneLineUsageErrors)
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
