"""A cross-process file lock (``fcntl.flock``) with a timeout and a clear error."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from pipelines.errors import RecipeEmbedError


class LockTimeoutError(RecipeEmbedError):
    """Another process held the lock for longer than the timeout."""

    exit_code = 1


@contextlib.contextmanager
def file_lock(path: str | Path, timeout_s: float = 300.0, poll_s: float = 0.05) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` body.

    The lock belongs to the open file description, so it is released when the body ends, when the
    process dies or is killed: a crashed holder never leaves a stale lock. Waits up to ``timeout_s``
    seconds, then raises :class:`LockTimeoutError` naming the file.
    """
    import fcntl

    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"could not take the lock {lock_path} within {timeout_s:g} s "
                        "(another promotion is running; retry later)"
                    ) from None
                time.sleep(poll_s)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield lock_path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
