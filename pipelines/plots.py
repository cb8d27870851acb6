"""The run's metric plot (PNG): map@100 per dimension, one panel for the whole eval and one per eval
slice, one line per model (candidate, base, champion)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipelines.metrics import PRIMARY, groups_in, lookup

FALLBACK_METRICS = ("map@100", "ndcg@10")
"""Panels for an eval without slices (older datasets): the whole eval, these metrics."""

# Distinct markers and dashes, so identical series (e.g. an untrained candidate = base) stay visible.
_STYLES: tuple[dict[str, object], ...] = (
    {"marker": "o", "linestyle": "-", "markersize": 8},
    {"marker": "s", "linestyle": "--", "markersize": 6},
    {"marker": "^", "linestyle": ":", "markersize": 6},
    {"marker": "D", "linestyle": "-.", "markersize": 5},
)


def dim_series(
    metrics: Mapping[str, float],
    dims: Sequence[int],
    metric: str = PRIMARY,
    kind: str | None = None,
    group: str | None = None,
) -> list[float]:
    """``metric`` at each of ``dims`` for the whole eval (or one group); missing -> NaN."""
    out = []
    for d in dims:
        v = lookup(metrics, d, metric, kind, group)
        out.append(math.nan if v is None else v)
    return out


def panels(series: Mapping[str, Mapping[str, float]]) -> list[tuple[str, str, str | None, str | None]]:
    """``(title, metric, kind, group)`` per panel: the whole eval and each slice, or the fallback metrics."""
    slices: list[str] = []
    for values in series.values():
        slices += [s for s in groups_in(values, "slice") if s not in slices]
    if not slices:
        return [(f"{m} (whole eval)", m, None, None) for m in FALLBACK_METRICS]
    out: list[tuple[str, str, str | None, str | None]] = [(f"{PRIMARY}: whole eval", PRIMARY, None, None)]
    out += [(f"{PRIMARY}: {s}", PRIMARY, "slice", s) for s in slices]
    return out


def plot_dim_metrics(
    series: Mapping[str, Mapping[str, float]],
    dims: Sequence[int],
    out: str | Path,
    only: str | None = None,
) -> Path:
    """One panel per eval slice (and the whole eval), one line per model (``{"candidate": {...}, "base": {...}}``)
    over dims, on a shared y axis so slices compare at a glance. ``only``: one slice's panel alone (a small plot)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from pipelines.io import atomic_path

    layout = [p for p in panels(series) if only is None or p[3] == only]
    if not layout:
        raise ValueError(f"no metrics for slice {only!r} to plot")
    width, height = (4.2, 4.0) if only is None else (3.6, 3.0)
    fig, axes = plt.subplots(1, len(layout), figsize=(width * len(layout), height), squeeze=False, sharey=True)
    xs = list(range(len(dims)))
    for ax, (title, metric, kind, group) in zip(axes[0], layout, strict=True):
        for i, (label, values) in enumerate(series.items()):
            ys = dim_series(values, dims, metric, kind, group)
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(xs, ys, label=label, **_STYLES[i % len(_STYLES)])
            for x, y in zip(xs, ys, strict=True):
                if i == 0 and not math.isnan(y):
                    ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
        ax.set_xticks(xs, [str(d) for d in dims])
        ax.set_xlabel("embedding dimension")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(PRIMARY if all(p[1] == PRIMARY for p in layout) else "score")
    axes[0][0].legend(loc="best")
    fig.tight_layout()
    target = Path(out)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target
