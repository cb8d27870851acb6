"""Metric keys as MLflow takes them, and metrics in and out of a run.

Metric keys follow sentence-transformers (``dim_384_cosine_map@100``); MLflow rejects ``@``, so
:func:`sanitize` maps it to ``_at_`` in every run (``dim_384_cosine_map_at_100``), with ``base_`` and
``champion_`` prefixes for the other models, so the MLflow compare view lines runs up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.tracking.connection import client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

_BATCH = 900
"""Metrics per ``log_batch`` call (MLflow allows 1000)."""

_BAD_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")


def sanitize(key: str) -> str:
    """``dim_384_cosine_map@100`` -> ``dim_384_cosine_map_at_100`` (:func:`pipelines.metrics.mlflow_key`);
    other characters MLflow rejects -> ``_``."""
    from pipelines.metrics import mlflow_key

    return _BAD_KEY_CHARS.sub("_", mlflow_key(key))


def unsanitize(key: str) -> str:
    """Inverse of :func:`sanitize` for our metric names: ``_at_`` -> ``@``."""
    from pipelines.metrics import from_mlflow_key

    return from_mlflow_key(key)


def _as_float(value: Any) -> float | None:
    """``value`` as a float (NaN and inf included), or None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def log_metric_batch(run_id: str, batch: Sequence[Metric]) -> None:
    """Log ``batch`` in ``log_batch`` calls of at most :data:`_BATCH` metrics."""
    c = client()
    for i in range(0, len(batch), _BATCH):
        c.log_batch(run_id, metrics=list(batch[i : i + _BATCH]))


def log_metrics(run_id: str, metrics: Mapping[str, Any], prefix: str = "", step: int = 0) -> dict[str, float]:
    """Log ``metrics`` with sanitized keys and ``prefix`` ("", "base_", "champion_"); return what was logged.

    Non-numeric values are skipped; NaN and inf are logged as they are (MLflow stores them).
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    logged: dict[str, float] = {}
    for key, value in metrics.items():
        v = _as_float(value)
        if v is None or isinstance(value, bool):
            continue
        logged[prefix + sanitize(key)] = v
    log_metric_batch(run_id, [Metric(k, v, now, step) for k, v in logged.items()])
    return logged


def read_metrics(run_id: str, prefix: str = "", c: MlflowClient | None = None) -> dict[str, float]:
    """The run's latest eval metrics under ``prefix`` (``dim_*``, ``slice_*``, ``intent_*``), keys
    unsanitized, prefix cut.

    ``c``: the client to read with (default: one on the process URI set by :func:`connect`).
    """
    data = (c or client()).get_run(run_id).data.metrics
    starts = tuple(prefix + p for p in ("dim_", "slice_", "intent_"))
    out: dict[str, float] = {}
    for key, value in data.items():
        if key.startswith(starts):
            out[unsanitize(key[len(prefix) :])] = float(value)
    return out
