"""Keep working when stdout/stderr lose their reader (the worker that started this process died).

Python ignores SIGPIPE, so every write to a pipe without a reader raises ``BrokenPipeError``: a log
line or a progress bar would then fail a model load ("cannot load model: [Errno 32] Broken pipe")
or an evaluation. :func:`detach_broken_stdio` finds such descriptors (``poll`` reports ``POLLERR``
on a pipe whose read end is closed) and points them at ``/dev/null``, so output is dropped and the
work goes on; the run's own records (MLflow, log files) are unaffected.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys


def is_broken(fd: int) -> bool:
    """True when ``fd`` is a pipe or socket whose reader is gone."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    try:
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events)


def detach_broken_stdio() -> bool:
    """Point a reader-less stdout (fd 1) / stderr (fd 2) at ``/dev/null``; True if one was."""
    changed = False
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        if not is_broken(fd):
            continue
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
        with contextlib.suppress(Exception):  # drop what the stream still buffers for the dead pipe
            if stream is not None and hasattr(stream, "buffer"):
                stream.flush()
        changed = True
    return changed
