"""Run lifecycle: create a run with the config as params, end it, and never leave it RUNNING
(:func:`run_guard`); run tags."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipelines.errors import InputError, note_interrupt
from pipelines.tracking.connection import client, ensure_experiment

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

MAX_PARAM_VALUE = 6000
"""MLflow's limit on a param value (characters); longer values are cut with a marker."""

_PARAM_BATCH = 90
"""Params per ``log_batch`` call (MLflow allows 100)."""

TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")


def _param_value(value: str) -> str:
    if len(value) <= MAX_PARAM_VALUE:
        return value
    marker = f"...[cut {len(value) - MAX_PARAM_VALUE + 20} chars]"
    return value[: MAX_PARAM_VALUE - len(marker)] + marker


def start_run(cfg: PipelineConfig, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """Create a run in ``cfg.tracking.experiment`` with the flattened config as params; return its id."""
    from mlflow.entities import Param

    c = client(cfg)
    experiment_id = ensure_experiment(cfg)
    all_tags = {"recipe_embed.profile": cfg.profile, **dict(tags or {})}
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = str(run.info.run_id)
    params = [Param(k, _param_value(v)) for k, v in sorted(cfg.flat().items())]
    for i in range(0, len(params), _PARAM_BATCH):
        c.log_batch(run_id, params=params[i : i + _PARAM_BATCH])
    return run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run terminated with ``status`` (FINISHED, FAILED or KILLED)."""
    if status not in TERMINAL_STATUSES:
        raise InputError(f"end_run: status must be one of {', '.join(TERMINAL_STATUSES)}, got {status!r}")
    client().set_terminated(run_id, status=status)


def run_status(run_id: str) -> str:
    return str(client().get_run(run_id).info.status)


class RunKilled(SystemExit):
    """Raised inside :func:`run_guard` when the process gets SIGTERM (exit code 128 + signal)."""


@contextlib.contextmanager
def run_guard(run_id: str, end_on_success: bool = True) -> Iterator[str]:
    """Never leave ``run_id`` RUNNING: an exception ends it FAILED, SIGTERM/Ctrl-C ends it KILLED.

    On SIGTERM the handler marks the run KILLED and raises :class:`RunKilled` (a ``SystemExit`` with
    code 143), so the process exits unless someone catches it. ``end_on_success=False`` leaves a
    successful run open for the next stage (another process may continue it).
    """
    previous: Any = None
    installed = False
    ended = False

    def _on_term(signum: int, _frame: Any) -> None:
        nonlocal ended
        if not ended:
            ended = True
            with contextlib.suppress(Exception):
                end_run(run_id, "KILLED")
        raise RunKilled(128 + signum)

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_term)
        installed = True
    try:
        yield run_id
    except (KeyboardInterrupt, RunKilled) as exc:
        if not ended:
            ended = True
            try:
                end_run(run_id, "KILLED")
                note_interrupt(exc, f"MLflow run {run_id} ended KILLED")
            except Exception:
                note_interrupt(exc, f"MLflow run {run_id} could not be ended (recipe-embed reconcile ends it)")
        else:
            note_interrupt(exc, f"MLflow run {run_id} ended KILLED")
        raise
    except BaseException as exc:
        clean_exit = isinstance(exc, SystemExit) and exc.code in (0, None)
        if not ended and (end_on_success or not clean_exit):
            ended = True
            with contextlib.suppress(Exception):
                end_run(run_id, "FINISHED" if clean_exit else "FAILED")
        raise
    else:
        if end_on_success and not ended:
            end_run(run_id, "FINISHED")
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def set_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_tag(run_id, k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))
