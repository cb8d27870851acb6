"""Per-dimension metric plot (PNG) for the fine-tuned, base and champion models."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

PLOT_METRICS = ("cosine_map@100", "cosine_ndcg@10")

# Distinct markers and dashes, so identical series (e.g. an untrained candidate = base) stay visible.
_STYLES: tuple[dict[str, object], ...] = (
    {"marker": "o", "linestyle": "-", "markersize": 8},
    {"marker": "s", "linestyle": "--", "markersize": 6},
    {"marker": "^", "linestyle": ":", "markersize": 6},
    {"marker": "D", "linestyle": "-.", "markersize": 5},
)


def dim_series(metrics: Mapping[str, float], dims: Sequence[int], metric: str) -> list[float]:
    """``[metrics["dim_384_<metric>"], ...]`` in ``dims`` order; missing -> NaN."""
    return [float(metrics.get(f"dim_{d}_{metric}", math.nan)) for d in dims]


def plot_dim_metrics(
    series: Mapping[str, Mapping[str, float]],
    dims: Sequence[int],
    out: str | Path,
    metrics: Sequence[str] = PLOT_METRICS,
) -> Path:
    """One panel per metric, one line per model (``{"fine-tuned": {...}, "base": {...}}``) over dims."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from pipelines.io import atomic_path

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    xs = list(range(len(dims)))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (label, values) in enumerate(series.items()):
            style = _STYLES[i % len(_STYLES)]
            ax.plot(xs, dim_series(values, dims, metric), label=label, **style)
        ax.set_xticks(xs, [str(d) for d in dims])
        ax.set_xlabel("embedding dimension")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    target = Path(out)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target
