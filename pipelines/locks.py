"""The promotion lock: one lock per MLflow tracking URI, whatever the entry point or data directory.

Every entry point that moves registry aliases (the Prefect flow, ``recipe-embed run``,
``recipe-embed promote``) takes :func:`promotion_lock`:

- always a file lock (the ``filelock`` package) keyed by the tracking URI, so two processes on one
  host exclude each other even when they use different data directories;
- plus, when the caller passes one (the flow and the CLI do when ``PREFECT_API_URL`` is set), a
  distributed lock such as the Prefect global concurrency limit, so processes on different hosts
  sharing one tracking server exclude each other too. The file lock is taken first, the
  distributed one second, always in this order, so the two cannot deadlock.

Where the lock file lives (:func:`lock_path`):

- ``$RECIPE_EMBED_LOCK_DIR`` when set;
- for a local ``sqlite:///PATH`` store: ``PATH.locks/`` beside the database file, so every user and
  data directory that opens that database shares it;
- otherwise (an ``http(s)://`` server, any other URI): ``$XDG_CACHE_HOME/recipe-embed/locks`` (default
  ``~/.cache/recipe-embed/locks``).

The file name is ``<model>-<sha256(normalized URI)[:16]>.lock``. A lock held by a process that dies is
released by the kernel (the lock belongs to the open file), so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipelines.errors import RecipeEmbedError

LockFactory = Callable[[], AbstractContextManager[Any]]


class LockTimeoutError(RecipeEmbedError):
    """Another process held the lock for longer than the timeout."""

    exit_code = 1


def normalize_uri(uri: str) -> str:
    """One spelling per store: sqlite paths resolved, scheme and host lower-cased, no trailing slash."""
    uri = uri.strip()
    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///") :]
        if db and db != ":memory:":
            return "sqlite:///" + str(Path(db).expanduser().resolve())
        return uri
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(.*)$", uri)
    if m:
        return f"{m.group(1).lower()}://{m.group(2).lower()}{m.group(3).rstrip('/')}"
    return str(Path(uri).expanduser().resolve()) if uri else uri


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recipe-embed" / "locks"


def lock_path(tracking_uri: str, name: str = "registry") -> Path:
    """The lock file for ``tracking_uri`` (see the module docstring for the places)."""
    uri = normalize_uri(tracking_uri)
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    override = os.environ.get("RECIPE_EMBED_LOCK_DIR")
    if override:
        root = Path(override).expanduser()
    elif uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        db = Path(uri[len("sqlite:///") :])
        root = db.parent / f"{db.name}.locks"
    else:
        root = cache_dir()
    return root / f"{safe}-{digest}.lock"


@contextlib.contextmanager
def file_lock(path: str | Path, timeout_s: float = 300.0, poll_s: float = 0.05) -> Iterator[Path]:
    """Hold an exclusive ``filelock.FileLock`` on ``path`` (created if missing) for the ``with`` body.

    Waits up to ``timeout_s`` seconds, then raises :class:`LockTimeoutError` naming the file.
    """
    from filelock import FileLock, Timeout

    lock_file = Path(path)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LockTimeoutError(f"cannot create the lock directory {lock_file.parent}: {exc.strerror or exc}") from exc
    # thread_local=False and is_singleton=False: a plain per-call lock, released by this context only
    lock = FileLock(
        str(lock_file),
        timeout=max(timeout_s, 0.0),
        thread_local=False,
        is_singleton=False,
        fallback_to_soft=False,  # a soft (existence) lock could outlive a crashed holder
        preserve_lock_file=True,  # unlinking on release would let two holders lock different inodes
    )
    try:
        lock.acquire(poll_interval=poll_s)
    except Timeout:
        raise LockTimeoutError(
            f"could not take the lock {lock_file} within {timeout_s:g} s (another promotion is running; retry later)"
        ) from None
    try:
        yield lock_file
    finally:
        lock.release(force=True)


def promotion_lock(
    tracking_uri: str, model_name: str, timeout_s: float, extra: LockFactory | None = None
) -> LockFactory:
    """A factory of contexts holding the file lock for ``tracking_uri`` and then ``extra()`` (if any)."""
    path = lock_path(tracking_uri, model_name)

    @contextlib.contextmanager
    def hold() -> Iterator[Path]:
        with file_lock(path, timeout_s):
            if extra is None:
                yield path
            else:
                with extra():
                    yield path

    return hold


def registry_lock(cfg: Any, extra: LockFactory | None = None) -> LockFactory:
    """:func:`promotion_lock` for ``cfg``'s tracking URI and registered model."""
    from pipelines.tracking import resolve_tracking_uri

    return promotion_lock(resolve_tracking_uri(cfg), cfg.registry.model_name, cfg.registry.lock_timeout_s, extra)
