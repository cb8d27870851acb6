"""Run training in a child process, so a timeout or a cancel really stops it and frees the GPU.

The child is ``python -m pipelines.cli train --data DIR --out MODEL_DIR --config CFG.json``. Its output
is streamed line by line to a logger; on timeout, cancel or any exception in the parent, the child's
whole process group gets SIGTERM, then SIGKILL after a grace period. On Linux the child also gets
SIGKILL if the parent dies abruptly (``PR_SET_PDEATHSIG``), so no orphan keeps the GPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import TrainingError

TERM_GRACE_S = 20.0
"""Seconds between SIGTERM and SIGKILL when stopping the child."""


class TrainingTimeout(TrainingError):
    """The training child ran past its deadline and was stopped."""


def train_command(data_dir: str | Path, out_dir: str | Path, config_file: str | Path) -> list[str]:
    """The child's argv: the ``recipe-embed train`` CLI under this interpreter."""
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "train",
        "--data",
        str(data_dir),
        "--out",
        str(out_dir),
        "--config",
        str(config_file),
    ]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_streaming(
    argv: Sequence[str],
    *,
    log: Callable[[str], Any],
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    grace_s: float = TERM_GRACE_S,
) -> int:
    """Run ``argv`` in its own process group, stream its merged output to ``log``, return its exit code.

    Raises :class:`TrainingTimeout` past ``timeout_s``. Any exception raised in this thread while
    waiting (a Prefect timeout or cancellation, KeyboardInterrupt) stops the child before propagating.
    """
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        errors="replace",
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # only sets the death signal
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name="train-output", daemon=True)
    reader.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                stop_process_group(proc, grace_s)
                raise TrainingTimeout(f"training exceeded its {timeout_s:.0f} s timeout and was stopped")
            time.sleep(0.2)
    finally:
        stop_process_group(proc, grace_s)
        reader.join(timeout=5)
    return proc.returncode


def write_config_file(cfg: Any, directory: str | Path | None = None) -> Path:
    """Write the resolved config as JSON that ``--config`` accepts; the caller removes it."""
    fd, name = tempfile.mkstemp(prefix="recipe-embed-config-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(cfg.model_dump(mode="json"), fh, indent=2)
    return Path(name)


def train_in_subprocess(
    cfg: Any,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    timeout_s: float | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> str:
    """Train in a child process; return the model root dir (the model is in ``<root>/model``).

    Raises :class:`TrainingError` on a non-zero exit (its last output lines in the message) and
    :class:`TrainingTimeout` past ``timeout_s``.
    """
    log = logger or logging.getLogger("recipe_embed.training")
    tail: list[str] = []

    def emit(line: str) -> None:
        tail.append(line)
        del tail[:-20]
        log.info(line)

    config_file = write_config_file(cfg)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    try:
        argv = train_command(data_dir, out_dir, config_file)
        log.info("training in a child process: %s", " ".join(argv))
        code = run_streaming(argv, log=emit, timeout_s=timeout_s, env=env)
    finally:
        config_file.unlink(missing_ok=True)
    if code != 0:
        last = next((ln for ln in reversed(tail) if ln.strip()), "no output")
        raise TrainingError(f"training child exited with code {code}: {last}")
    return str(out_dir)
