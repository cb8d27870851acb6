"""Run training in a child process, so a timeout or a cancel really stops it and frees the GPU.

The child is ``python -m pipelines.cli train --data DIR --out MODEL_DIR --config CFG.json``
(:func:`train_command`, the one place that builds its argv). It never blocks on its parent:

- its stdout and stderr go to a log file, ``MODEL_DIR/logs/train.log`` (appended), not to a pipe;
  a thread here tails the file into the task's logger, so a dead reader cannot stall training;
- it runs in its own process group (``Popen(process_group=0)``); on timeout, cancel or any exception
  here the whole group gets SIGTERM, then SIGKILL after :data:`TERM_GRACE_S`, well within 30 s;
- it exits when this process dies, however it dies: :mod:`pipelines.lifeline` (set up by the CLI
  from ``RECIPE_EMBED_PARENT_PID``/``RECIPE_EMBED_PARENT_START``) sets ``PR_SET_PDEATHSIG`` on Linux
  and runs a watchdog thread that ends the child's process group once this process is gone.
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

from pipelines import lifeline
from pipelines.errors import OutOfMemoryError, StorageError, TrainingError

TERM_GRACE_S = 10.0
"""Seconds between SIGTERM and SIGKILL when stopping the child (a cancel ends it within 30 s)."""

LOG_SUBPATH = Path("logs") / "train.log"


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


class LogTail:
    """Follow a growing text file from its current end and hand each complete line to ``log``."""

    def __init__(self, path: Path, log: Callable[[str], Any], poll_s: float = 0.2) -> None:
        self.path = path
        self.log = log
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._offset = path.stat().st_size if path.exists() else 0
        self._partial = b""
        self._thread = threading.Thread(target=self._run, name="train-log-tail", daemon=True)

    def start(self) -> LogTail:
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return
        if not data:
            return
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            # tqdm redraws with \r: show the last state of the line
            text = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
            with contextlib.suppress(Exception):  # a broken log handler must not stop the tail
                self.log(text)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._read()

    def stop(self) -> None:
        """Stop following; read what is left, including a last line without a newline."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self._thread.is_alive():  # ``log`` is stuck (a dead reader): never block the caller on it
            return
        self._read()
        if self._partial:
            rest, self._partial = self._partial, b""
            with contextlib.suppress(Exception):
                self.log(rest.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1])


def run_logged(
    argv: Sequence[str],
    *,
    log_file: str | Path,
    log: Callable[[str], Any],
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    grace_s: float = TERM_GRACE_S,
) -> int:
    """Run ``argv`` in its own process group with its output appended to ``log_file``; tail that
    file into ``log``; return the exit code (negative: killed by that signal).

    Raises :class:`TrainingTimeout` past ``timeout_s``. Any exception raised in this thread while
    waiting (a Prefect timeout or cancellation, KeyboardInterrupt) stops the child's group first.
    """
    log_path = Path(log_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**(os.environ if env is None else env), **lifeline.parent_env()}
    tail = LogTail(log_path, log).start()
    try:
        with open(log_path, "ab", buffering=0) as out:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env,
                cwd=cwd,
                process_group=0,
            )
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    stop_process_group(proc, grace_s)
                    raise TrainingTimeout(f"training exceeded its {timeout_s:.0f} s timeout and was stopped")
                time.sleep(0.2)
        finally:
            stop_process_group(proc, grace_s)
    finally:
        tail.stop()
    return int(proc.returncode)


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

    Raises :class:`TrainingError` on a non-zero exit (its last output lines in the message),
    :class:`StorageError` with the child's own line when it could not write (a full disk), and
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
    log_file = Path(out_dir) / LOG_SUBPATH
    try:
        argv = train_command(data_dir, out_dir, config_file)
        log.info("training in a child process: %s (log: %s)", " ".join(argv), log_file)
        code = run_logged(argv, log_file=log_file, log=emit, timeout_s=timeout_s, env=env)
    finally:
        config_file.unlink(missing_ok=True)
    if code != 0:
        errors = [ln.split("recipe-embed: error:", 1)[1].strip() for ln in tail if "recipe-embed: error:" in ln]
        if code == 1 and errors and errors[-1].startswith("cannot write "):
            raise StorageError(errors[-1])  # a full disk: the child's own line, word for word
        message = exit_message(code, tail, log_file)
        if "out of memory" in message.lower():
            raise OutOfMemoryError(message)
        raise TrainingError(message)
    return str(out_dir)


def exit_message(code: int, tail: Sequence[str], log_file: Path) -> str:
    """One line for a failed child: its last ``recipe-embed: error:`` line, else its last line."""
    errors = [ln for ln in tail if "recipe-embed: error:" in ln]
    last = (errors or [ln for ln in tail if ln.strip()] or ["no output"])[-1].strip()
    last = last.split("recipe-embed: error:", 1)[-1].strip()
    if code == -signal.SIGKILL:
        how = "was killed (SIGKILL: out of memory? see dmesg)"
    elif code < 0:
        how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return f"training child {how}: {last} (full log: {log_file})"
