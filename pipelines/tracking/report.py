"""The run's report artifacts: the per-dim plot, the metrics and decision as JSON, the model card."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.tracking.connection import client

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig


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
    """Artifacts: ``report/metrics.png``, ``report/metrics.json`` and ``report/model-card.md``."""
    from pipelines.io import write_json, write_text
    from pipelines.modelcard import render_model_card
    from pipelines.plots import plot_dim_metrics

    dims = tuple(cfg.evaluation.dims)
    series = {"candidate": dict(candidate)}
    if base:
        series["base"] = dict(base)
    if champion:
        series["champion"] = dict(champion)
    with tempfile.TemporaryDirectory(prefix="recipe-embed-report-") as tmp:
        out = Path(tmp) / "report"
        out.mkdir()
        plot_dim_metrics(series, dims, out / "metrics.png")
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
        client().log_artifacts(run_id, str(out), artifact_path="report")


def _jsonable(metrics: Mapping[str, float] | None) -> dict[str, float | str] | None:
    if metrics is None:
        return None
    return {k: (float(v) if math.isfinite(float(v)) else str(v)) for k, v in metrics.items()}
