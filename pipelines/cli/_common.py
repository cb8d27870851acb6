"""Shared CLI pieces: config options, error handling, the ``config`` command."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from pipelines.childproc import record_error
from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.errors import RecipeEmbedError, interrupt_message, storage_error
from pipelines.profiles import PROFILE_CHOICES

HANDLED = (RecipeEmbedError, ConfigError, OSError)
"""OSError: disk full, read-only, permission denied -> one line with the path and the cause, exit 1."""

ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        metavar="[" + "|".join(PROFILE_CHOICES) + "]",
        help="Named profile (default: the config file's `profile`, else default); auto = default on a GPU, cpu elsewhere.",
    ),
]
ConfigFileOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML/TOML/JSON file of config overrides.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one key, e.g. --set training.epochs=2 (repeatable)."),
]

F = TypeVar("F", bound=Callable[..., Any])


def die(exc: BaseException) -> NoReturn:
    if isinstance(exc, OSError):  # a disk or file-system error not wrapped at the write layer
        exc = storage_error(exc, action="")
    code = exc.exit_code if isinstance(exc, RecipeEmbedError) else 2
    record_error(exc, code)  # a child of the pipeline: its parent rebuilds this error's type
    with contextlib.suppress(OSError):  # stderr itself may be gone (a closed pipe): the exit code still tells
        typer.echo(f"recipe-embed: error: {exc}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn our known errors into one stderr line and their exit code, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HANDLED as exc:
            die(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C: what it ended and how to go on, then 128 + SIGINT
            with contextlib.suppress(OSError):
                typer.echo(interrupt_message(exc), err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def resolve(profile: str | None, config: Path | None, sets: list[str] | None, **extra: Any) -> PipelineConfig:
    return load_config(profile, file=config, sets=tuple(sets or ()), overrides=extra or None)


def quiet_third_party() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("httpx", "urllib3", "alembic", "mlflow", "transformers", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    @app.command("config")
    @handle_errors
    def config_cmd(
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        show: Annotated[bool, typer.Option("--show", help="Print the resolved config.")] = False,
    ) -> None:
        """Resolve and check a config; --show prints it as JSON."""
        cfg = resolve(profile, config, set_)
        if show:
            typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
        else:
            typer.echo(f"config ok: profile {cfg.profile}")
