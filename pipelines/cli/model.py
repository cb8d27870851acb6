"""CLI commands for this area (filled in by its owner)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
