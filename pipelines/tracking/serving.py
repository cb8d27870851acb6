"""The serving grid on the run: a table artifact and a plot at the artifact root, the recommendation as
tags, and a line in the registered version's description."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.tracking.connection import client
from pipelines.tracking.runs import set_tags

GRID_TABLE = "serving_grid.json"
GRID_PLOT = "serving_grid.png"


def recommendation_tags(rec: Mapping[str, Any]) -> dict[str, str]:
    """``serving_dim``, ``serving_precision``, ``serving_bytes_per_vector``, ``serving_relative_map``
    (plus ``serving_rescore``)."""
    return {
        "serving_dim": str(rec["dim"]),
        "serving_precision": str(rec["precision"]),
        "serving_bytes_per_vector": str(rec["bytes_per_vector"]),
        "serving_relative_map": f"{float(rec['relative_map']):.4f}",
        "serving_rescore": "true" if rec.get("rescore") else "false",
    }


def plot_grid(grid: Mapping[str, Any], out: Path) -> Path:
    """map@100 against bytes per vector (log scale), one line per column, each point labelled with its dim."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from pipelines.io import atomic_path
    from pipelines.serving import MAP

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for col in grid["columns"]:
        cells = sorted((c for c in grid["cells"] if c["column"] == col), key=lambda c: c["bytes_per_vector"])
        xs = [c["bytes_per_vector"] for c in cells]
        ys = [c[MAP] for c in cells]
        ax.plot(xs, ys, marker="o", label=col)
        for c in cells:
            ax.annotate(
                str(c["dim"]), (c["bytes_per_vector"], c[MAP]), textcoords="offset points", xytext=(0, 5), fontsize=7
            )
    rec = grid.get("recommendation")
    if rec:
        ax.scatter(
            [rec["bytes_per_vector"]], [rec[MAP]], s=160, facecolors="none", edgecolors="red", label="recommended"
        )
        floor = rec["reference_map"] * (1 - rec["max_relative_loss"])
        ax.axhline(floor, color="red", linestyle=":", linewidth=1, label=f"fp32 -{rec['max_relative_loss']:.0%}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per vector")
    ax.set_ylabel(f"{MAP} (whole eval)")
    ax.set_title("serving grid: precision x dim")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def log_serving(
    run_id: str, grid: Mapping[str, Any], model_name: str | None = None, version: str | None = None
) -> None:
    """The grid as the table ``serving_grid.json`` and the plot ``serving_grid.png`` at the artifact root,
    the recommendation as tags, and (with ``version``) as a line appended to that version's description."""
    import pandas as pd

    from pipelines.serving import grid_rows, recommendation_line

    c = client()
    c.log_table(run_id, data=pd.DataFrame(grid_rows(grid)), artifact_file=GRID_TABLE)
    with tempfile.TemporaryDirectory(prefix="recipe-embed-serving-") as tmp:
        c.log_artifact(run_id, str(plot_grid(grid, Path(tmp) / GRID_PLOT)))
    rec = grid.get("recommendation")
    if not rec:
        return
    set_tags(run_id, recommendation_tags(rec))
    if model_name and version:
        line = recommendation_line(rec)
        current = c.get_model_version(model_name, version).description or ""
        if line not in current:
            c.update_model_version(model_name, version, description=f"{current}\n{line}".strip()[:4900])
