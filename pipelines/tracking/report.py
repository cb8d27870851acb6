"""The run's report artifacts: the plots and the full metrics table at the artifact root, the metrics and
decision as JSON, the model card; the headline ``0_`` metrics."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.tracking.connection import client
from pipelines.tracking.metric_log import log_metrics

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig


TABLE_ARTIFACT = "metrics_table.json"
"""Every metric of the run (candidate, base and champion on the eval, candidate on validation), one row a
metric (:data:`pipelines.metrics.TABLE_COLUMNS`), at the artifact root; the UI shows it as a table."""

PLOT_ARTIFACT = "metrics.png"


def slice_plot_artifact(slice_name: str) -> str:
    """``metrics_slice_<slice>.png``: one slice's small plot, at the artifact root beside :data:`PLOT_ARTIFACT`."""
    return f"metrics_slice_{slice_name}.png"


def log_report(
    run_id: str,
    cfg: PipelineConfig,
    candidate: Mapping[str, float],
    base: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    manifest: Mapping[str, Any] | None,
    train_result: Mapping[str, Any] | None,
    decision: Mapping[str, Any] | None = None,
    serving: Mapping[str, Any] | None = None,
) -> None:
    """Artifacts: the plots ``metrics.png`` and ``metrics_slice_<slice>.png`` and the full table
    ``metrics_table.json`` at the root (where Compare lists them), ``report/metrics.json`` and
    ``report/model-card.md``; and the ``0_`` headline metrics (:func:`pipelines.metrics.headline_key`)."""
    from pipelines.io import write_json, write_text
    from pipelines.modelcard import render_model_card
    from pipelines.plots import panels, plot_dim_metrics

    dims = tuple(cfg.evaluation.dims)
    series = {"candidate": dict(candidate)}
    if base:
        series["base"] = dict(base)
    if champion:
        series["champion"] = dict(champion)
    with tempfile.TemporaryDirectory(prefix="recipe-embed-report-") as tmp:
        root = Path(tmp) / "root"
        out = Path(tmp) / "report"
        root.mkdir()
        out.mkdir()
        plot_dim_metrics(series, dims, root / PLOT_ARTIFACT)
        for _title, _metric, kind, group in panels(series):
            if kind == "slice" and group:
                plot_dim_metrics(series, dims, root / slice_plot_artifact(group), only=group)
        write_json(
            {
                "candidate": _jsonable(candidate),
                "base": _jsonable(base),
                "champion": _jsonable(champion),
                "dims": list(dims),
                "decision": dict(decision) if decision else None,
            },
            out / "metrics.json",
        )
        write_text(
            render_model_card(
                cfg, candidate, base, champion, manifest or {}, train_result or {}, decision, serving=serving
            ),
            out / "model-card.md",
        )
        c = client()
        c.log_artifacts(run_id, str(root))
        c.log_artifacts(run_id, str(out), artifact_path="report")
    log_metrics_table(run_id, candidate, base, champion, (train_result or {}).get("validation_metrics"))
    log_metrics(run_id, headline_figures(cfg.registry.primary_dim, candidate, base, decision))


def log_metrics_table(
    run_id: str,
    candidate: Mapping[str, float],
    base: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    validation: Mapping[str, Any] | None = None,
) -> None:
    """:data:`TABLE_ARTIFACT`: every metric computed for the run, including those not logged as MLflow metrics."""
    import pandas as pd

    from pipelines.metrics import TABLE_COLUMNS, table_rows

    rows = table_rows({"candidate": candidate, "base": base, "champion": champion})
    if isinstance(validation, Mapping):
        flat = {k: v for k, v in validation.items() if not isinstance(v, Mapping)}
        rows += table_rows({"candidate": flat}, split="validation")
    client().log_table(run_id, pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), artifact_file=TABLE_ARTIFACT)


def headline_figures(
    primary_dim: int,
    candidate: Mapping[str, float],
    base: Mapping[str, float] | None,
    decision: Mapping[str, Any] | None,
) -> dict[str, float]:
    """The ``0_`` keys: the candidate's primary metric, its Δ vs base, and its Δ vs the champion re-scored on
    the same eval with the 95% interval (each only when known)."""
    from pipelines.metrics import (
        PRIMARY_CI_HIGH,
        PRIMARY_CI_LOW,
        PRIMARY_DELTA_BASE,
        PRIMARY_DELTA_CHAMPION,
        headline_key,
        lookup,
    )

    out: dict[str, float] = {}
    value = lookup(candidate, primary_dim)
    if value is not None:
        out[headline_key()] = value
        b = lookup(base, primary_dim)
        if b is not None:
            out[headline_key(PRIMARY_DELTA_BASE)] = value - b
    for what, field in ((PRIMARY_DELTA_CHAMPION, "delta"), (PRIMARY_CI_LOW, "ci_low"), (PRIMARY_CI_HIGH, "ci_high")):
        v = _number((decision or {}).get(field))
        if v is not None:
            out[headline_key(what)] = v
    return out


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _jsonable(metrics: Mapping[str, float] | None) -> dict[str, float | str] | None:
    if metrics is None:
        return None
    return {k: (float(v) if math.isfinite(float(v)) else str(v)) for k, v in metrics.items()}
