"""A seeded paired bootstrap over queries: how sure is "candidate minus champion"?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.errors import InputError

CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 1 << 24  # resample rows x queries per block: at most 16M indices (128 MB int64)


@dataclass(frozen=True)
class Interval:
    """The mean paired difference and its percentile bootstrap interval."""

    delta: float
    low: float
    high: float
    resamples: int
    queries: int

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.delta, self.low, self.high))

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def text(self) -> str:
        """``+0.0123 [0.0081, 0.0170]``."""
        return f"{self.delta:+.4f} [{self.low:.4f}, {self.high:.4f}]"


def paired_bootstrap(
    candidate: np.ndarray,
    champion: np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Resample queries with replacement ``resamples`` times (the same queries for both models) and take
    the ``confidence`` percentile interval of the mean of ``candidate - champion``.

    Vectorized, in blocks of resamples; the same seed gives the same interval. Non-finite inputs give a
    non-finite delta (never an interval that looks fine).
    """
    cand = np.asarray(candidate, dtype=np.float64)
    champ = np.asarray(champion, dtype=np.float64)
    if cand.ndim != 1 or cand.shape != champ.shape:
        raise InputError(f"paired bootstrap: shapes differ ({cand.shape} vs {champ.shape})")
    n = int(cand.shape[0])
    if n == 0:
        raise InputError("paired bootstrap: no queries")
    if resamples < 1:
        raise InputError(f"paired bootstrap: resamples must be >= 1, got {resamples}")
    diff = cand - champ
    delta = float(diff.mean())
    if not np.isfinite(diff).all():
        return Interval(delta if not math.isfinite(delta) else math.nan, math.nan, math.nan, resamples, n)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(delta, float(low), float(high), resamples, n)
