"""The Prefect side of the promotion lock: a global concurrency limit with one slot.

:func:`pipelines.locks.registry_lock` always holds the file lock keyed by the tracking URI; with a
Prefect API configured (``PREFECT_API_URL``) the flow and the CLI add this slot, which excludes
promotions on other hosts that share the tracking server. Without ``PREFECT_API_URL`` the slot
would live in a throw-away ephemeral API and exclude nothing, so it is not taken.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from pipelines.locks import LockFactory, registry_lock

PROMOTION_LOCK = "recipe-embedder-promotion"
"""Prefect global concurrency limit (1 slot) serialising promotions in the model registry."""


def prefect_api_configured() -> bool:
    return bool(os.environ.get("PREFECT_API_URL"))


def ensure_global_limit(name: str = PROMOTION_LOCK, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` if it is missing (Prefect no longer auto-creates)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))


@contextlib.contextmanager
def hold_prefect_slot(name: str, timeout_s: float) -> Iterator[None]:
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield


def prefect_slot(cfg: Any, name: str = PROMOTION_LOCK) -> LockFactory:
    ensure_global_limit(name)
    return functools.partial(hold_prefect_slot, name, cfg.registry.lock_timeout_s)


def promotion_lock(cfg: Any, name: str = PROMOTION_LOCK) -> LockFactory:
    """The promotion lock of every entry point: the file lock keyed by the tracking URI, plus the
    Prefect slot ``name`` when ``PREFECT_API_URL`` is set."""
    return registry_lock(cfg, prefect_slot(cfg, name) if prefect_api_configured() else None)
