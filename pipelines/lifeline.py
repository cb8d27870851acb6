"""A child process that ends when the process that started it dies.

The parent puts :func:`parent_env` into the child's environment; the child calls :func:`install`
early (the CLI does, whenever ``RECIPE_EMBED_PARENT_PID`` is set). Then:

- on Linux the child asks for ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``, via
  ctypes) if the named parent is its direct parent, and handles ``SIGTERM`` by killing its whole
  process group (its data loader workers too) at once;
- a daemon thread checks every second that the parent, identified by pid *and* start time (a reused
  pid is not the parent), still exists; once it is gone the thread kills the child's process group
  (the child leads its own group when started with ``process_group=0``), else the child alone.

The variables are removed from the child's environment once read, so its own children (data loader
workers, a launcher's workers) do not inherit a parent that is not theirs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

PID_ENV = "RECIPE_EMBED_PARENT_PID"
START_ENV = "RECIPE_EMBED_PARENT_START"
PR_SET_PDEATHSIG = 1


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None
    where there is no ``/proc`` or no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may contain spaces and ')'
    return fields[19] if len(fields) > 19 else None


def is_alive(pid: int, start_time: str | None = None) -> bool:
    """True when ``pid`` exists and, if ``start_time`` is given and readable, started then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start_time:
        now = process_start_time(pid)
        if now is not None and now != start_time:
            return False
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as fh:
        if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":  # a zombie has exited: it is not alive
            return False
    return True


def parent_env(pid: int | None = None) -> dict[str, str]:
    """The environment that names this process (or ``pid``) as the child's parent."""
    pid = os.getpid() if pid is None else pid
    env = {PID_ENV: str(pid)}
    start = process_start_time(pid)
    if start:
        env[START_ENV] = start
    return env


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel for ``sig`` when this process's parent dies (Linux ``PR_SET_PDEATHSIG``; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _end_self() -> None:  # pragma: no cover - ends the process
    with contextlib.suppress(Exception):
        if os.getpgrp() == os.getpid():  # we lead our group: take our children with us
            os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _on_term(_signum: int, _frame: object) -> None:  # pragma: no cover - ends the process
    _end_self()


def install(poll_s: float = 1.0) -> threading.Thread | None:
    """Tie this process's life to the parent named in the environment; None if none is named."""
    raw = os.environ.pop(PID_ENV, None)
    start = os.environ.pop(START_ENV, None)
    if not raw:
        return None
    try:
        parent = int(raw)
    except ValueError:
        return None
    if os.getppid() == parent:
        if os.getpgrp() == os.getpid() and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_term)  # parent gone or a cancel: end the whole group now
            set_pdeathsig(signal.SIGTERM)
        else:
            set_pdeathsig(signal.SIGKILL)
    if not is_alive(parent, start):  # died before we got here
        _end_self()

    def watch() -> None:
        while True:
            threading.Event().wait(poll_s)
            if not is_alive(parent, start):
                _end_self()

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread
