"""The promotion lock: one lock per MLflow tracking URI, whatever the entry point or data directory.

Every entry point that moves registry aliases (the Prefect flow, ``recipe-embed run``,
``recipe-embed promote``, ``recipe-embed reconcile``) takes :func:`promotion_lock`:

- always a file lock (the ``filelock`` package) keyed by the tracking URI, so two processes on one
  host exclude each other even when they use different data directories;
- plus, when ``PREFECT_API_URL`` is set, one slot of the Prefect global concurrency limit
  :data:`PROMOTION_LOCK` (:func:`prefect_slot`, over the REST API: no Prefect import), so processes
  on different hosts sharing one tracking server exclude each other too. The file lock is taken
  first, the slot second, always in this order, so the two cannot deadlock.

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
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipelines import prefect_http
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


PROMOTION_LOCK = "recipe-embedder-promotion"
"""The Prefect global concurrency limit (1 slot) serialising promotions across hosts."""

API_RETRIES = 5
"""How often a busy Prefect server's 429/502/503 answer is retried (:func:`pipelines.prefect_http.call`)."""

SLOT_LEASE_S = 300.0
"""How long the server keeps a slot whose holder stopped renewing it (a crashed process frees it then)."""


class PrefectSlotError(RecipeEmbedError):
    """The Prefect API could not be asked for the promotion slot (unreachable, or an error answer)."""

    exit_code = 1


def _slot_error(api: str, what: str, exc: Exception) -> PrefectSlotError:
    return PrefectSlotError(f"cannot {what} on the Prefect API {api} ({exc}); is PREFECT_API_URL right?")


def ensure_global_limit(api: str, name: str = PROMOTION_LOCK, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` when it is missing (Prefect no longer creates it on use)."""
    try:
        prefect_http.call(
            api, "GET", f"/v2/concurrency_limits/{urllib.parse.quote(name, safe='')}", retries=API_RETRIES
        )
        return
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise _slot_error(api, f"read the concurrency limit {name}", exc) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _slot_error(api, f"read the concurrency limit {name}", exc) from exc
    try:
        prefect_http.call(api, "POST", "/v2/concurrency_limits/", {"name": name, "limit": limit}, retries=API_RETRIES)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: another process created it meanwhile
            raise _slot_error(api, f"create the concurrency limit {name}", exc) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _slot_error(api, f"create the concurrency limit {name}", exc) from exc


def _acquire_slot(api: str, name: str, timeout_s: float, lease_s: float, poll_s: float) -> str:
    """A lease on one slot of ``name`` (``POST /v2/concurrency_limits/increment-with-lease``), retried
    while the server answers 423 (taken), up to ``timeout_s``."""
    body = {"names": [name], "slots": 1, "mode": "concurrency", "lease_duration": lease_s}
    deadline = time.monotonic() + max(timeout_s, 0.0)
    while True:
        try:
            got = prefect_http.call(
                api, "POST", "/v2/concurrency_limits/increment-with-lease", body, retries=API_RETRIES
            )
            return str(got["lease_id"])
        except urllib.error.HTTPError as exc:
            if exc.code != 423:
                raise _slot_error(api, f"take a slot of {name}", exc) from exc
            try:
                wait = float(exc.headers.get("Retry-After") or poll_s)
            except ValueError:
                wait = poll_s
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
            raise _slot_error(api, f"take a slot of {name}", exc) from exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockTimeoutError(
                f"could not take the Prefect concurrency slot {name} within {timeout_s:g} s "
                "(another promotion is running; retry later)"
            )
        time.sleep(max(0.05, min(wait, poll_s, left)))


def _renew_until(api: str, lease_id: str, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(lease_s / 3):
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):  # retried at the next beat
            prefect_http.call(
                api, "POST", f"/v2/concurrency_limits/leases/{lease_id}/renew", {"lease_duration": lease_s}
            )


@contextlib.contextmanager
def prefect_slot(
    api: str, name: str = PROMOTION_LOCK, timeout_s: float = 300.0, lease_s: float = SLOT_LEASE_S, poll_s: float = 2.0
) -> Iterator[str]:
    """Hold one slot of the Prefect global concurrency limit ``name`` for the ``with`` body, through the
    REST API at ``api`` (no Prefect import): the limit is created (1 slot) when missing; the slot is a
    lease renewed in the background while held and released on exit; a holder that dies stops
    renewing and the server frees the slot ``lease_s`` seconds later."""
    ensure_global_limit(api, name)
    lease_id = _acquire_slot(api, name, timeout_s, lease_s, poll_s)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_until, args=(api, lease_id, lease_s, stop), name=f"prefect-slot-{name}", daemon=True
    )
    renewer.start()
    try:
        yield lease_id
    finally:
        stop.set()
        renewer.join(timeout=15)
        # a release that fails is harmless: the server frees the slot when the lease expires
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            prefect_http.call(
                api, "POST", "/v2/concurrency_limits/decrement-with-lease", {"lease_id": lease_id}, retries=API_RETRIES
            )


def promotion_lock(cfg: Any, extra: LockFactory | None = None, *, slot: bool = True) -> LockFactory:
    """The promotion lock of every entry point (the flow, ``recipe-embed run``, ``promote``, ``reconcile``):
    a factory of contexts holding, in this order,

    - the file lock keyed by ``cfg``'s tracking URI (:func:`lock_path`);
    - the Prefect slot :data:`PROMOTION_LOCK` (:func:`prefect_slot`) when ``slot`` and
      ``$PREFECT_API_URL`` is set (without an API there is no other host to exclude);
    - ``extra()``, when given.

    Each waits up to ``cfg.registry.lock_timeout_s`` seconds.
    """
    from pipelines.tracking import resolve_tracking_uri

    path = lock_path(resolve_tracking_uri(cfg), cfg.registry.model_name)
    timeout_s = float(cfg.registry.lock_timeout_s)
    api = prefect_http.api_url() if slot else None

    @contextlib.contextmanager
    def hold() -> Iterator[Path]:
        with contextlib.ExitStack() as stack:
            stack.enter_context(file_lock(path, timeout_s))
            if api:
                stack.enter_context(prefect_slot(api, PROMOTION_LOCK, timeout_s))
            if extra is not None:
                stack.enter_context(extra())
            yield path

    return hold
