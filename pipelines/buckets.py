"""Length buckets: a training column encoded in a few groups of similar length.

The collator pads each column (anchors, positives, negatives) to its longest text. In a batch of 64 pairs
where one answer is an 80-token recipe card and most are 20-token listings, every text then costs 80 tokens
of compute. :class:`BucketedForward` sorts a column's rows by length, cuts them into at most ``k`` groups
(the cut that pads least, :func:`cut_points`), runs the model once per group trimmed to the group's longest
text, and puts the embeddings back in the rows' order. Padding is masked, so each embedding is the one the
padded batch gives, up to float rounding; the loss sees the same batch. Only the compute changes.

:func:`length_buckets` puts it under the model's ``forward`` for one loss call (``training.length_buckets``;
:class:`pipelines.trainer.GuardedTrainer`), beneath MatryoshkaLoss's own cache of the forward pass.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

GROUP_OVERHEAD_TOKENS = 256
"""What one more forward pass costs, in padded tokens (kernel launches, layer set-up): a cut must save
more padding than this."""


def cut_points(lengths: Sequence[int], k: int, overhead: int = GROUP_OVERHEAD_TOKENS) -> list[int]:
    """Where to cut ascending ``lengths`` into at most ``k`` contiguous groups so that the padded tokens
    (each group's size x its longest) plus ``overhead`` per group are fewest: the start of each group after
    the first (``[]``: one group). Exact, by dynamic programming over the cuts (n is a batch, k is small)."""
    n = len(lengths)
    if any(b < a for a, b in itertools.pairwise(lengths)):
        raise ValueError("lengths must be ascending")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n == 0:
        return []
    inf = float("inf")
    # best[g][j]: fewest tokens for the first j rows in g groups; back[g][j]: where the last group starts
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    back = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for g in range(1, k + 1):
        for j in range(1, n + 1):
            for i in range(g - 1, j):
                cost = best[g - 1][i] + (j - i) * lengths[j - 1] + overhead
                if cost < best[g][j]:
                    best[g][j], back[g][j] = cost, i
    groups = min(range(1, k + 1), key=lambda g: (best[g][n], g))
    cuts, j = [], n
    for g in range(groups, 0, -1):
        j = back[g][j]
        cuts.append(j)
    return sorted(c for c in cuts if c > 0)


def spans(cuts: Sequence[int], n: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each group of ``n`` rows cut at ``cuts`` (:func:`cut_points`)."""
    return list(zip([0, *cuts], [*cuts, n], strict=True))


class BucketedForward:
    """``forward`` for one column at a time, in length groups; see the module docstring.

    Falls back to one plain call when the features have no 2-D ``attention_mask``, when they are padded on
    the left (trimming the right would cut text), or when one group pads least.
    """

    def __init__(self, forward: Callable[[dict[str, Any]], dict[str, Any]], k: int) -> None:
        self.forward = forward
        self.k = k

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        mask = features.get("attention_mask")
        if self.k <= 1 or not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] < 2:
            return self.forward(features)
        if not bool(mask[:, 0].all()):  # left padding
            return self.forward(features)
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        sorted_lengths = lengths[order].tolist()
        cuts = cut_points(sorted_lengths, self.k)
        if not cuts:
            return self.forward(features)
        rows, width = mask.shape
        parts = []
        for lo, hi in spans(cuts, rows):
            idx = order[lo:hi]
            longest = int(sorted_lengths[hi - 1])
            parts.append(self.forward(_take(features, idx, rows, width, longest))["sentence_embedding"])
        embeddings = torch.cat(parts)[torch.argsort(order)]
        return {"sentence_embedding": embeddings}


def _take(features: dict[str, Any], idx: torch.Tensor, rows: int, width: int, longest: int) -> dict[str, Any]:
    """The rows ``idx`` of every per-row tensor, per-token ones trimmed to ``longest``; the rest as is."""
    out: dict[str, Any] = {}
    for key, value in features.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows:
            value = value[idx.to(value.device)]
            if value.dim() >= 2 and value.shape[1] == width:
                value = value[:, :longest]
        out[key] = value
    return out


@contextlib.contextmanager
def length_buckets(model: Any, k: int) -> Iterator[None]:
    """``model.forward`` in at most ``k`` length groups inside the block (nothing changes for ``k`` 1 or no
    model)."""
    if k <= 1 or model is None:
        yield
        return
    had_own = "forward" in vars(model)
    original = model.forward
    model.forward = BucketedForward(original, k)
    try:
        yield
    finally:
        if had_own:
            model.forward = original
        else:
            del model.forward
