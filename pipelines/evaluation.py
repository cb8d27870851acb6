"""Per-dimension IR evaluation: encode once at full dimension, slice and renormalize per dimension.

The numbers equal sentence-transformers' ``SequentialEvaluator([InformationRetrievalEvaluator(...,
truncate_dim=d, name=f"dim_{d}") ...])`` (same key names, same tie-breaking by ascending corpus id),
but the queries and the corpus are encoded once instead of once per dimension, and the metrics are
computed with array operations instead of Python loops.

The library's ``SequentialEvaluator`` also returns ``sequential_score`` (a copy of the last
evaluator's ``ndcg@10``); it is not one of the card's metrics and :func:`evaluate_pairs` omits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.errors import EvaluationError, InputError
from pipelines.models import load_model

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

from pipelines.metrics import (
    ACCURACY_AT_K,
    GROUP_KINDS,
    MAP_AT_K,
    MAX_K,
    METRIC_NAMES,
    MRR_AT_K,
    NDCG_AT_K,
    PRECISION_RECALL_AT_K,
    PRIMARY,
    SELECTION,
    Scores,
    metric_key,
    parse_key,
    size_key,
)

_SCORE_CHUNK_ELEMENTS = 1 << 26  # query rows per similarity block: at most 64M scores (256 MB float32)


# --- data ---------------------------------------------------------------------------------------


def load_pairs(path: str | Path) -> pd.DataFrame:
    """Read a pairs file (Parquet, CSV or JSONL) with ``anchor`` and ``positive`` columns."""
    from pipelines.io import read_table

    return read_table(path, required=["anchor", "positive"])


def build_ir_data(
    pairs: pd.DataFrame,
) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """Pairs -> (queries, corpus, relevant) for an IR evaluation.

    One query per row (the ``anchor``). The corpus holds each distinct ``positive`` text once, so
    two rows with the same answer do not compete with each other; every query's relevant set holds
    every corpus id whose text equals its positive, and, with an optional ``relevant`` column (a list
    of texts per row), every corpus id of those texts too (texts that are no row's positive join the
    corpus after the positives). Ids are
    zero-padded so that their string order (the library's tie-break) is their insertion order.
    """
    missing = [c for c in ("anchor", "positive") if c not in pairs.columns]
    if missing:
        raise InputError(f"pairs: missing column(s) {', '.join(missing)}")
    if len(pairs) == 0:
        raise InputError("pairs: no rows to evaluate")
    for col in ("anchor", "positive"):
        bad = pairs[col].map(lambda v: not isinstance(v, str) or not v.strip())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"pairs: column {col!r} has {int(bad.sum())} empty or non-text value(s) (row {row})")

    anchors = pairs["anchor"].tolist()
    positives = pairs["positive"].tolist()
    extra = [
        [t for t in more if isinstance(t, str) and t.strip()] if isinstance(more, list | tuple | np.ndarray) else []
        for more in (pairs["relevant"].tolist() if "relevant" in pairs.columns else [None] * len(anchors))
    ]
    # the positives first (their ids do not depend on the relevant column), then the other relevant texts
    distinct = list(dict.fromkeys([*positives, *(t for more in extra for t in more)]))
    cw = len(str(max(len(distinct) - 1, 0)))
    qw = len(str(max(len(anchors) - 1, 0)))
    text_to_cids: dict[str, set[str]] = {}
    corpus: dict[str, str] = {}
    for i, text in enumerate(distinct):
        cid = f"c{i:0{cw}d}"
        corpus[cid] = text
        text_to_cids.setdefault(text, set()).add(cid)
    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for i, (anchor, positive, more) in enumerate(zip(anchors, positives, extra, strict=True)):
        qid = f"q{i:0{qw}d}"
        queries[qid] = anchor
        relevant[qid] = set(text_to_cids[positive])
        for text in more:
            relevant[qid] |= text_to_cids[text]
    return queries, corpus, relevant


def _check_ir_data(queries: Mapping[str, str], corpus: Mapping[str, str], relevant: Mapping[str, set[str]]) -> None:
    if not queries:
        raise EvaluationError("no queries to evaluate")
    if not corpus:
        raise EvaluationError("empty corpus")
    for qid in queries:
        rel = relevant.get(qid)
        if not rel:
            raise EvaluationError(f"query {qid!r} has no relevant document")
        unknown = [cid for cid in rel if cid not in corpus]
        if unknown:
            raise EvaluationError(f"query {qid!r}: relevant id {unknown[0]!r} is not in the corpus")


# --- model --------------------------------------------------------------------------------------


def _as_model(model: str | Path | SentenceTransformer, device: str | None) -> SentenceTransformer:
    if isinstance(model, str | Path):
        return load_model(model, device=device)
    return model


@dataclass(frozen=True)
class ServingGrid:
    """Ask :func:`score_ir` for the serving grid: int8 calibration texts (train-split documents, never
    eval; none: no int8 columns) and the rescoring multiplier."""

    calibration_texts: Sequence[str] = ()
    rescore_multiplier: int = 4


# --- fast path ----------------------------------------------------------------------------------


def _check_dims(dims: Sequence[int], full_dim: int) -> list[int]:
    out = [int(d) for d in dims]
    if not out:
        raise InputError("no dimensions to evaluate")
    bad = [d for d in out if d < 1 or d > full_dim]
    if bad:
        raise InputError(f"dimension {bad[0]} is outside 1..{full_dim} (the model's embedding size)")
    if len(set(out)) != len(out):
        raise InputError(f"duplicate dimension in {out}")
    return out


def _ranked_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` best columns per row, ordered by (-score, column index) like the library."""
    import torch

    vals, idx = torch.topk(scores, k, dim=1, largest=True, sorted=False)
    # Order the selected set by (-score, index): sort by index, then a stable sort by score.
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    ranked = idx.gather(1, order)
    # Rows where the k-th score is tied with columns outside the set: topk picked arbitrarily among
    # the ties; redo those rows with a full stable sort (ties -> lowest index first).
    threshold = vals.min(dim=1, keepdim=True).values
    tied = ((scores >= threshold).sum(dim=1) > k).nonzero().flatten()
    if tied.numel():
        full = torch.sort(scores[tied], dim=1, descending=True, stable=True).indices[:, :k]
        ranked[tied] = full
    return ranked


def _per_query_from_hits(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """``hits[q, r]``: the rank-``r`` document of query ``q`` is relevant. Each metric per query, by the
    library's formulas (the library's number is the mean over queries)."""
    _n_queries, depth = hits.shape
    h = hits.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ACCURACY_AT_K:
        out[f"accuracy@{k}"] = np.asarray(h[:, :k].any(axis=1), dtype=np.float64)
    correct = {k: h[:, :k].sum(axis=1) for k in PRECISION_RECALL_AT_K}
    for k in PRECISION_RECALL_AT_K:
        out[f"precision@{k}"] = correct[k] / k
    for k in PRECISION_RECALL_AT_K:
        out[f"recall@{k}"] = correct[k] / n_relevant
    discounts = 1.0 / np.log2(np.arange(depth, dtype=np.float64) + 2.0)
    for k in NDCG_AT_K:
        dcg = (h[:, :k] * discounts[:k]).sum(axis=1)
        ideal_discounts = 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)
        idcg = np.cumsum(ideal_discounts)[np.minimum(n_relevant, k) - 1]
        out[f"ndcg@{k}"] = dcg / idcg
    for k in MRR_AT_K:
        top = h[:, :k]
        first = top.argmax(axis=1)
        out[f"mrr@{k}"] = np.where(top.any(axis=1), 1.0 / (first + 1.0), 0.0)
    for k in MAP_AT_K:
        top = h[:, :k]
        ranks = np.arange(1, top.shape[1] + 1, dtype=np.float64)
        precisions = np.cumsum(top, axis=1) / ranks * top
        out[f"map@{k}"] = precisions.sum(axis=1) / np.minimum(k, n_relevant)
    return {name: out[name] for name in METRIC_NAMES}


def _mean(name: str, values: np.ndarray) -> float:
    # the library sums and divides for accuracy and mrr, and takes np.mean for the others
    if name.startswith(("accuracy@", "mrr@")):
        return float(values.sum() / len(values))
    return float(np.mean(values))


def _metrics_from_hits(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """The library's metrics (means over queries) from a hit matrix."""
    return {name: _mean(name, v) for name, v in _per_query_from_hits(hits, n_relevant).items()}


def _similarity_scores(model: SentenceTransformer, q: torch.Tensor, c: torch.Tensor, plain_dot: bool) -> torch.Tensor:
    import torch

    if plain_dot:  # the body of util.cos_sim (inputs already normalized) and of util.dot_score
        return torch.mm(q, c.transpose(0, 1))
    return model.similarity(q, c)


def evaluate_ir(
    model: str | Path | SentenceTransformer,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    relevant: Mapping[str, set[str]],
    dims: Sequence[int],
    batch_size: int = 256,
    *,
    device: str | None = None,
    progress: bool = False,
    attention_backend: str = "auto",
) -> dict[str, float]:
    """The library's IR metrics at each of ``dims``, from one encode pass at full dimension.

    Every query must have at least one relevant id present in the corpus (else
    :class:`EvaluationError`); corpus ids must sort (as strings) in the order the caller wants ties
    broken, as in the library. The encodes run under ``attention_backend``
    (:mod:`pipelines.attention`; ``auto``: flash/memory-efficient SDPA on CUDA).
    """
    return score_ir(
        model,
        queries,
        corpus,
        relevant,
        dims,
        batch_size,
        device=device,
        progress=progress,
        attention_backend=attention_backend,
    ).metrics


def score_ir(
    model: str | Path | SentenceTransformer,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    relevant: Mapping[str, set[str]],
    dims: Sequence[int],
    batch_size: int = 256,
    *,
    groups: Mapping[tuple[str, str], np.ndarray] | None = None,
    device: str | None = None,
    progress: bool = False,
    attention_backend: str = "auto",
    serving: ServingGrid | None = None,
) -> Scores:
    """:func:`evaluate_ir` plus per-group metrics and the per-query average precision at each dim.

    ``serving``: also the serving grid (:mod:`pipelines.serving`) from the same encode, with its
    calibration texts (train-split documents) encoded once more; it lands in ``Scores.serving``.

    ``groups``: ``{("slice", "unseen_wording"): bool mask over queries, ...}``. A group's metrics are
    the same per-query values as the whole eval's (each query still ranks the whole corpus), averaged
    over the group's queries, under ``slice_unseen_wording_dim_384_cosine_map@100`` and the like, with
    the group's size under ``slice_unseen_wording_queries``. The queries and corpus are encoded once.
    """
    import torch
    import torch.nn.functional as F

    _check_ir_data(queries, corpus, relevant)
    st = _as_model(model, device)
    sim_name = st.similarity_fn_name
    normalize = sim_name == "cosine"
    plain_dot = sim_name in ("cosine", "dot")

    qids = list(queries)
    cids = list(corpus)
    masks: dict[tuple[str, str], np.ndarray] = {}
    for (kind, group), mask in (groups or {}).items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != (len(qids),):
            raise EvaluationError(f"group {kind}={group}: mask of shape {m.shape}, expected ({len(qids)},)")
        if m.any():
            masks[(kind, group)] = m
    # The library breaks score ties by ascending corpus id (string order): rank columns that way.
    order = sorted(range(len(cids)), key=cids.__getitem__)
    cids = [cids[i] for i in order]
    cid_index = {cid: i for i, cid in enumerate(cids)}

    common: dict[str, Any] = {"batch_size": batch_size, "convert_to_tensor": True, "show_progress_bar": progress}
    if device is not None:
        common["device"] = device
    full_dim = st.get_embedding_dimension()
    if full_dim is not None:  # fail before encoding when we can
        dims = _check_dims(dims, int(full_dim))
    from pipelines.attention import attention_context

    with attention_context(attention_backend, str(st.device)):
        q_full = st.encode_query([queries[q] for q in qids], **common)
        c_full = st.encode_document([corpus[c] for c in cids], **common)
        cal_full = (
            st.encode_document(list(serving.calibration_texts), **common)
            if serving is not None and serving.calibration_texts
            else None
        )
    dims = _check_dims(dims, int(q_full.shape[1]))

    max_rel = max(len(relevant[q]) for q in qids)
    rel = np.full((len(qids), max_rel), -1, dtype=np.int64)
    for i, qid in enumerate(qids):
        ids = sorted(cid_index[c] for c in relevant[qid])
        rel[i, : len(ids)] = ids
    n_relevant = (rel >= 0).sum(axis=1)
    rel_t = torch.from_numpy(rel).to(q_full.device)

    k = min(MAX_K, len(cids))
    rows_per_chunk = max(1, _SCORE_CHUNK_ELEMENTS // max(1, len(cids)))
    results: dict[str, float] = {}
    grouped: dict[str, float] = {}
    per_query_ap: dict[int, np.ndarray] = {}
    for d in dims:
        q = q_full[:, :d].contiguous()
        c = c_full[:, :d].contiguous()
        if normalize:  # slice, then renormalize: exactly util.cos_sim's normalize_embeddings
            q = F.normalize(q, p=2, dim=-1)
            c = F.normalize(c, p=2, dim=-1)
        hit_blocks = []
        for start in range(0, len(qids), rows_per_chunk):
            scores = _similarity_scores(st, q[start : start + rows_per_chunk], c, plain_dot)
            ranked = _ranked_top_k(scores, k)
            block_rel = rel_t[start : start + rows_per_chunk]
            hits = (ranked.unsqueeze(2) == block_rel.unsqueeze(1)).any(dim=2)
            hit_blocks.append(hits.cpu().numpy())
        hits_np = np.concatenate(hit_blocks, axis=0)
        if hits_np.shape[0] != len(qids):
            raise EvaluationError(f"dim {d}: evaluated {hits_np.shape[0]} queries, expected {len(qids)}")
        per_query = _per_query_from_hits(hits_np, n_relevant)
        for name, values in per_query.items():
            results[metric_key(d, name, similarity=sim_name)] = _mean(name, values)
        for (kind, group), mask in masks.items():
            for name, values in per_query.items():
                grouped[metric_key(d, name, kind, group, similarity=sim_name)] = _mean(name, values[mask])
        per_query_ap[d] = per_query[PRIMARY]
    for kind, group in masks:
        grouped[size_key(kind, group)] = float(masks[(kind, group)].sum())
    grid = None
    if serving is not None:
        from pipelines.serving import serving_grid

        def hits_of(scores: torch.Tensor) -> np.ndarray:
            blocks = []
            for start in range(0, len(qids), rows_per_chunk):
                ranked = _ranked_top_k(scores[start : start + rows_per_chunk], k)
                block_rel = rel_t[start : start + rows_per_chunk].cpu()
                blocks.append((ranked.unsqueeze(2) == block_rel.unsqueeze(1)).any(dim=2).numpy())
            return np.concatenate(blocks, axis=0)

        grid = serving_grid(
            q_full,
            c_full,
            cal_full,
            dims,
            hits_of,
            lambda hits: _per_query_from_hits(hits, n_relevant)[PRIMARY],
            {group: m for (kind, group), m in masks.items() if kind == "slice"},
            normalize=normalize,
            k=k,
            rescore_multiplier=serving.rescore_multiplier,
            float32_ap=per_query_ap,
        )
    return Scores({**results, **grouped}, per_query_ap, serving=grid)


IRData = tuple[Mapping[str, str], Mapping[str, str], Mapping[str, set[str]]]
"""``(queries, corpus, relevant)`` as :func:`build_ir_data` returns them."""


def score_validation(
    model: Any, ir: IRData, dims: Sequence[int], batch_size: int, slices: Mapping[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Validation metrics of ``model`` on ``ir`` at each of ``dims``: :func:`evaluate_ir`'s, and with two or
    more ``slices`` (``{name: bool mask over queries}``) the same per slice plus
    :data:`~pipelines.metrics.SELECTION` (map@100 averaged over the slices) at each dim, from one encode pass."""
    groups = {("slice", name): mask for name, mask in (slices or {}).items()} if len(slices or {}) > 1 else None
    scores = score_ir(model, *ir, dims, batch_size, groups=groups)
    metrics = dict(scores.metrics)
    if groups:
        for d in dims:  # a slice's map@100 is the mean of its queries' average precision
            whole = next(k for k in metrics if parse_key(k) == (None, None, d, PRIMARY))  # the model's similarity
            per_slice = [float(scores.per_query_ap[d][mask].mean()) for mask in groups.values()]
            metrics[whole.removesuffix(PRIMARY) + SELECTION] = float(np.mean(per_slice))
    return metrics


def validation_slices(pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{slice: mask}`` of a validation split's rows (``{}`` when it has no ``slice`` column)."""
    return {group: mask for (kind, group), mask in eval_groups(pairs).items() if kind == "slice"}


def eval_groups(pairs: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """``{("slice", name): mask, ("intent", name): mask}`` from the optional ``slice`` / ``intent`` columns."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for kind in GROUP_KINDS:
        if kind not in pairs.columns:
            continue
        col = pairs[kind]
        values = col.dropna().astype(str).unique().tolist()
        for value in sorted(values):
            out[(kind, value)] = (col.astype(str) == value).to_numpy() & col.notna().to_numpy()
    return out


def evaluate_pairs(
    model: str | Path | SentenceTransformer,
    pairs: pd.DataFrame,
    dims: Sequence[int],
    batch_size: int = 256,
    *,
    device: str | None = None,
    progress: bool = False,
    attention_backend: str = "auto",
) -> dict[str, float]:
    """IR metrics per dimension for ``pairs`` (``anchor`` = query, ``positive`` = its document).

    Returns ``{"dim_384_cosine_accuracy@1": ..., ..., "dim_64_cosine_map@100": ...}``: the library's
    keys for each dim in ``dims`` (15 metrics each), in the library's order, then the same per slice
    and per intent when ``pairs`` has ``slice`` / ``intent`` columns (see :func:`score_pairs`).
    """
    return score_pairs(
        model, pairs, dims, batch_size, device=device, progress=progress, attention_backend=attention_backend
    ).metrics


def score_pairs(
    model: str | Path | SentenceTransformer,
    pairs: pd.DataFrame,
    dims: Sequence[int],
    batch_size: int = 256,
    *,
    device: str | None = None,
    progress: bool = False,
    attention_backend: str = "auto",
    serving: ServingGrid | None = None,
) -> Scores:
    """:func:`evaluate_pairs` plus per-query average precision (row order of ``pairs``) at each dim
    (and the serving grid when ``serving`` is given)."""
    queries, corpus, relevant = build_ir_data(pairs)
    if len(queries) != len(pairs):
        raise EvaluationError(f"built {len(queries)} queries from {len(pairs)} pairs")
    return score_ir(
        model,
        queries,
        corpus,
        relevant,
        dims,
        batch_size,
        groups=eval_groups(pairs),
        device=device,
        progress=progress,
        attention_backend=attention_backend,
        serving=serving,
    )


# --- per-query scores on disk ---------------------------------------------------------------------


def per_query_path(metrics_json: str | Path) -> Path:
    """Where the per-query scores go beside a metrics file: ``eval_metrics.json`` -> ``eval_metrics.per_query.parquet``."""
    p = Path(metrics_json)
    return p.with_name(f"{p.stem}.per_query.parquet")


def per_query_frame(scores: Scores, pairs: pd.DataFrame | None = None, prefix: str = "") -> pd.DataFrame:
    """One row per eval query: ``<prefix>ap_dim_<d>`` per dim, plus ``slice`` / ``intent`` when ``pairs`` has them."""
    data: dict[str, Any] = {}
    if pairs is not None:
        for kind in GROUP_KINDS:
            if kind in pairs.columns:
                data[kind] = pairs[kind].astype("string").to_numpy()
    for d, ap in scores.per_query_ap.items():
        data[f"{prefix}ap_dim_{d}"] = np.asarray(ap, dtype=np.float64)
    return pd.DataFrame(data)


def write_per_query(scores: Scores, path: str | Path, pairs: pd.DataFrame | None = None) -> Path:
    from pipelines.io import atomic_path

    target = Path(path)
    with atomic_path(target) as tmp:
        per_query_frame(scores, pairs).to_parquet(tmp, index=False)
    return target


def read_per_query(path: str | Path) -> dict[int, np.ndarray]:
    """``{dim: average precision per query}`` from :func:`write_per_query`'s file."""
    frame = pd.read_parquet(path)
    return {
        int(col[len("ap_dim_") :]): frame[col].to_numpy(dtype=np.float64)
        for col in frame.columns
        if col.startswith("ap_dim_")
    }
