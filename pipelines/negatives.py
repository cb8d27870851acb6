"""Hard negatives for (anchor, positive) pairs, mined with the base model.

Candidates come from sentence-transformers' own ``util.mine_hard_negatives`` (the base model embeds
every question and every distinct answer of the split; the closest answers that are not the
question's own are the candidates, best first). Several answers can be correct for one question
(two recipe cards that both meet a need, two listings of the same recipes), so each row takes its
first candidate that ``is_correct`` rejects as an answer; when none is left it takes a seeded random
answer of the split that is not correct, and the manifest counts those fallbacks.

Candidates are cached by the split's texts, the base model and the number of candidates under
``cache_dir`` (one Parquet file per key), so a re-run of the same dataset skips the encoding.
Mining runs on the GPU when there is one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import DataQualityError

CACHE_VERSION = 1
Progress = Callable[[str], None] | None


def cache_key(anchors: Sequence[str], positives: Sequence[str], base_model: str, candidates: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, base_model, candidates]).encode())
    for a, p in zip(anchors, positives, strict=True):
        h.update(a.encode("utf-8", "surrogatepass") + b"\x00" + p.encode("utf-8", "surrogatepass") + b"\x01")
    return h.hexdigest()[:32]


def load_miner(base_model: str, max_seq_length: int, device: str | None = None) -> Any:
    """The base model that mines, on the GPU when there is one."""
    from sentence_transformers import SentenceTransformer

    from pipelines.models import pick_device, resolve_base_model

    model = SentenceTransformer(resolve_base_model(base_model), device=device or pick_device("auto"))
    model.max_seq_length = max_seq_length
    return model


def mine_candidates(
    anchors: Sequence[str],
    positives: Sequence[str],
    *,
    model: Any,
    candidates: int,
    batch_size: int = 128,
) -> list[list[str]]:
    """Per row, up to ``candidates`` answers of the other rows closest to the question (best first)."""
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    distinct = len(set(positives))
    k = min(candidates, max(distinct - 1, 0))
    if k == 0:
        return [[] for _ in anchors]
    pairs = datasets.Dataset.from_dict({"anchor": list(anchors), "positive": list(positives)})
    mined = mine_hard_negatives(
        pairs,
        model,
        anchor_column_name="anchor",
        positive_column_name="positive",
        range_max=k,
        num_negatives=k,
        sampling_strategy="top",
        output_format="n-tuple",
        batch_size=batch_size,
        use_faiss=False,
        verbose=False,
    )
    found: dict[tuple[str, str], list[str]] = {}
    neg_cols = [c for c in mined.column_names if c.startswith("negative")]
    for row in mined.to_list():
        found[(row["anchor"], row["positive"])] = [row[c] for c in neg_cols]
    return [found.get((a, p), []) for a, p in zip(anchors, positives, strict=True)]


def add_negatives(
    split: pd.DataFrame,
    is_correct: Callable[[int, str], bool],
    *,
    base_model: str,
    model: Callable[[], Any],
    candidates: int,
    seed: int,
    cache_dir: Path | None = None,
    batch_size: int = 128,
    progress: Progress = None,
) -> tuple[list[str], dict[str, Any]]:
    """One negative per row of ``split`` (``anchor``, ``positive``) and a report for the manifest.

    ``is_correct(row, text)``: whether ``text`` (another row's answer) correctly answers row ``row``.
    ``model()``: the mining model (called only when the cache has no candidates for these pairs);
    ``base_model`` names it in the cache key.
    """
    anchors = split["anchor"].astype(str).tolist()
    positives = split["positive"].astype(str).tolist()
    t0 = time.perf_counter()
    key = cache_key(anchors, positives, base_model, candidates)
    cache_file = Path(cache_dir) / f"{key}.parquet" if cache_dir is not None else None
    cached = cache_file is not None and cache_file.is_file()
    if cached:
        assert cache_file is not None
        mined = [list(x) for x in pd.read_parquet(cache_file)["candidates"]]
    else:
        if progress:
            progress(f"mining hard negatives for {len(anchors):,} pairs with {base_model}")
        mined = mine_candidates(anchors, positives, model=model(), candidates=candidates, batch_size=batch_size)
        if cache_file is not None:
            from pipelines.io import write_parquet

            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(pd.DataFrame({"candidates": mined}), cache_file)

    corpus = list(dict.fromkeys(positives))
    rng = np.random.default_rng([seed, 7])
    negatives: list[str] = []
    fallbacks = 0
    for row, (positive, options) in enumerate(zip(positives, mined, strict=True)):
        pick = next((c for c in options if c != positive and not is_correct(row, c)), None)
        if pick is None:
            fallbacks += 1
            for j in rng.permutation(len(corpus))[:200]:
                cand = corpus[int(j)]
                if cand != positive and not is_correct(row, cand):
                    pick = cand
                    break
        if pick is None:
            raise DataQualityError(f"no answer in the split can serve as a negative for row {row}: {anchors[row]!r}")
        negatives.append(pick)
    report = {
        "rows": len(negatives),
        "candidates": candidates,
        "fallback_random": fallbacks,
        "cached": cached,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return negatives, report
