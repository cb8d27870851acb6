"""Child processes of the pipeline: the training child and the torchrun launcher, told once.

Every child the pipeline starts goes through here:

- **argv** — :func:`train_command` is the one place that builds ``python -m pipelines.cli train ...``
  (the Prefect task's child and the torchrun ranks run the same command);
- **config file** — :func:`config_file` hands the caller's resolved config to the child as a
  temporary JSON file (``--config``), removed afterwards, so the child resolves exactly that config;
- **process group** — :func:`start` can put the child in its own group, so a stop reaches its data
  loader workers too; :func:`stop` sends SIGTERM, then SIGKILL after a grace period;
- **death signal** — a child started with ``die_with_parent`` gets ``PR_SET_PDEATHSIG``
  (:func:`pipelines.lifeline.set_pdeathsig`); the training child also runs the lifeline watchdog;
- **typed errors** — a child that fails with one of our errors writes it as a record
  (:func:`record_error`, called by the CLI) to the file named by ``RECIPE_EMBED_ERROR_FILE``; the
  parent rebuilds the same type (:func:`read_error`), so an out-of-memory child is an
  :class:`~pipelines.errors.OutOfMemoryError` here, with no guessing from its output.

The training child never blocks on this process: its output goes to a log file that a thread tails
into the caller's logger (:class:`LogTail`), not to a pipe.
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipelines import errors, lifeline
from pipelines.errors import RecipeEmbedError, StorageError, TrainingError

TERM_GRACE_S = 10.0
"""Seconds between SIGTERM and SIGKILL when stopping the training child."""

LOG_SUBPATH = Path("logs") / "train.log"
ERROR_FILE_ENV = "RECIPE_EMBED_ERROR_FILE"
"""Where a child writes the record of the error it exits with (:func:`record_error`)."""


class TrainingTimeout(TrainingError):
    """The training child ran past its deadline and was stopped."""


# --- argv and config ------------------------------------------------------------------------------


def train_command(
    data_dir: str | Path,
    out_dir: str | Path,
    config_file: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> list[str]:
    """The training child's argv: the ``recipe-embed train`` CLI under this interpreter."""
    argv = [sys.executable, "-m", "pipelines.cli", "train", "--data", str(data_dir), "--out", str(out_dir)]
    argv += ["--config", str(config_file)]
    return argv + (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])


def write_config_file(cfg: Any, directory: str | Path | None = None) -> Path:
    """Write the resolved config as JSON that ``--config`` accepts; the caller removes it."""
    fd, name = tempfile.mkstemp(prefix="recipe-embed-config-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(cfg.model_dump(mode="json"), fh, indent=2)
    return Path(name)


@contextlib.contextmanager
def config_file(cfg: Any, directory: str | Path | None = None) -> Iterator[Path]:
    """:func:`write_config_file`, removed when the block ends."""
    path = write_config_file(cfg, directory)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


# --- typed errors across the process boundary -------------------------------------------------------


def record_error(exc: BaseException, exit_code: int) -> None:
    """In a child: write ``exc`` (type, message, exit code) where the parent asked (``$RECIPE_EMBED_ERROR_FILE``)."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    record = {"type": type(exc).__name__, "message": str(exc), "exit_code": exit_code}
    with contextlib.suppress(OSError):  # the parent still has the exit code and the log
        Path(path).write_text(json.dumps(record), encoding="utf-8")


def _error_types() -> dict[str, type[RecipeEmbedError]]:
    found: dict[str, type[RecipeEmbedError]] = {"TrainingTimeout": TrainingTimeout}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, RecipeEmbedError):
            found[value.__name__] = value
    return found


def read_error(path: str | Path) -> RecipeEmbedError | None:
    """The error a child recorded at ``path`` (same type, same message), or None if it recorded none."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        kind, message = _error_types()[record["type"]], str(record["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return kind(message)


@contextlib.contextmanager
def error_file() -> Iterator[Path]:
    """A fresh path for a child's error record (:data:`ERROR_FILE_ENV`), removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="recipe-embed-error-", suffix=".json")
    os.close(fd)
    path = Path(name)
    path.unlink()  # present only once a child wrote it
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


# --- starting and stopping --------------------------------------------------------------------------


def start(
    argv: Sequence[str],
    *,
    stdout: Any,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    own_group: bool = False,
    die_with_parent: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``argv`` with stdin closed and stderr joined to ``stdout``.

    ``own_group``: the child leads a new process group (stop it and its workers with :func:`stop`).
    ``die_with_parent``: the child gets SIGTERM when this process dies (Linux ``PR_SET_PDEATHSIG``).
    """
    return subprocess.Popen(
        list(argv),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        process_group=0 if own_group else None,
        preexec_fn=(lambda: lifeline.set_pdeathsig(signal.SIGTERM)) if die_with_parent else None,
    )


def stop(
    proc: subprocess.Popen[Any], grace_s: float = TERM_GRACE_S, *, group: bool = True, first_wait_s: float = 0.0
) -> None:
    """Stop ``proc``: wait ``first_wait_s`` (it may be stopping already), then SIGTERM, then SIGKILL
    after ``grace_s``. ``group``: signal its whole process group (it must lead one)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((None, first_wait_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
        elif wait_s <= 0:
            continue
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the training child -----------------------------------------------------------------------------


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
        # what is left, including a last line without a newline: here too, never in the caller's thread
        self._read()
        if self._partial:
            rest, self._partial = self._partial, b""
            with contextlib.suppress(Exception):
                self.log(rest.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1])

    def stop(self) -> None:
        """Stop following once what is left is read (5 s at most). ``log`` runs only in the tail's own
        thread: when it is stuck (a dead reader), the caller is never blocked on it, even when the child
        ended before the tail's first read."""
        self._stop.set()
        self._thread.join(timeout=5)


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
            proc = start(argv, stdout=out, env=child_env, cwd=cwd, own_group=True)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    stop(proc, grace_s)
                    raise TrainingTimeout(f"training exceeded its {timeout_s:.0f} s timeout and was stopped")
                time.sleep(0.2)
        finally:
            stop(proc, grace_s)
    finally:
        tail.stop()
    return int(proc.returncode)


def train_in_subprocess(
    cfg: Any,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    timeout_s: float | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> str:
    """Train in a child process; return the model root dir (the model is in ``<root>/model``).

    A failed child raises the error it recorded, with its type: :class:`StorageError` with the child's
    own line (a full disk), :class:`~pipelines.errors.OutOfMemoryError`, :class:`TrainingError` (its
    last output line in the message); :class:`TrainingTimeout` past ``timeout_s``.
    """
    log = logger or logging.getLogger("recipe_embed.training")
    tail: list[str] = []

    def emit(line: str) -> None:
        tail.append(line)
        del tail[:-20]
        log.info(line)

    log_file = Path(out_dir) / LOG_SUBPATH
    with config_file(cfg) as cfg_file, error_file() as err_file:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", ERROR_FILE_ENV: str(err_file)}
        env.setdefault("HF_HUB_OFFLINE", "1")
        argv = train_command(data_dir, out_dir, cfg_file)
        log.info("training in a child process: %s (log: %s)", " ".join(argv), log_file)
        code = run_logged(argv, log_file=log_file, log=emit, timeout_s=timeout_s, env=env)
        recorded = read_error(err_file) if code != 0 else None
    if code == 0:
        return str(out_dir)
    if isinstance(recorded, StorageError):
        raise recorded  # a full disk: the child's own line, word for word
    message = exit_message(code, tail, log_file, recorded)
    raise (type(recorded) if isinstance(recorded, TrainingError) else TrainingError)(message)


def exit_message(code: int, tail: Sequence[str], log_file: Path, recorded: BaseException | None = None) -> str:
    """One line for a failed child: the error it recorded, else its last ``recipe-embed: error:`` line,
    else its last line."""
    if recorded is not None:
        last = str(recorded)
    else:
        errors_seen = [ln for ln in tail if "recipe-embed: error:" in ln]
        last = (errors_seen or [ln for ln in tail if ln.strip()] or ["no output"])[-1].strip()
        last = last.split("recipe-embed: error:", 1)[-1].strip()
    if code == -signal.SIGKILL:
        how = "was killed (SIGKILL: out of memory? see dmesg)"
    elif code < 0:
        how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return f"training child {how}: {last} (full log: {log_file})"
