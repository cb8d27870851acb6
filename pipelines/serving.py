"""Serving choices: map@100 for each (precision, dim) a user could serve, and the smallest one to recommend.

The grid reuses the evaluation's one encode of the eval queries and corpus (see
:func:`pipelines.evaluation.score_ir`): each dim is a slice of the full embedding, renormalized, then
quantized with sentence-transformers' ``quantize_embeddings``:

- ``float32``: the evaluation itself at that dim (4 bytes per value);
- ``int8``: ranges calibrated on train-split document embeddings (never eval), queries and corpus
  quantized with the same ranges, dot product of the int8 values (1 byte per value);
- ``binary``: ``ubinary`` (1 bit per value, packed), ranked by Hamming distance;
- ``int8+rescore`` / ``binary+rescore``: the library's rescoring: retrieve ``k x rescore_multiplier``
  with the small vectors, rescore those with the float32 query against the stored quantized vectors
  (int8 restored to float coordinates, binary as unpacked bits), keep ``k``. The index holds the same
  bytes as without rescoring.

Ties are broken by ascending corpus id, as in the evaluation. The recommendation is the setting with the
fewest bytes per vector whose map@100 is within ``max_relative_loss`` of float32 at the largest dim, on
the whole eval and on every slice whose name starts with ``unseen``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipelines.errors import InputError

if TYPE_CHECKING:
    import torch

    from pipelines.config import ServingConfig
    from pipelines.evaluation import ServingGrid

PRECISIONS = ("float32", "int8", "binary")
"""What ``recipe-embed search --precision`` and the grid accept; ``binary`` is the library's ``ubinary``."""

COLUMNS: tuple[tuple[str, bool], ...] = (
    ("float32", False),
    ("int8", False),
    ("binary", False),
    ("int8", True),
    ("binary", True),
)
"""(precision, rescore) per grid column, in report order."""

UNSEEN_PREFIX = "unseen"
"""Slices whose name starts with this must keep the quality too (any slice list)."""

RECOMMENDATION_TAGS = ("serving_dim", "serving_precision", "serving_bytes_per_vector", "serving_relative_map")

MAP = "map@100"


def column_name(precision: str, rescore: bool) -> str:
    return f"{precision}+rescore" if rescore else precision


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (choose from: {', '.join(PRECISIONS)})")
    return precision


def bytes_per_vector(dim: int, precision: str) -> int:
    """Index bytes for one vector: float32 4 x dim, int8 dim, binary dim / 8 (rounded up)."""
    check_precision(precision)
    if precision == "float32":
        return 4 * dim
    if precision == "int8":
        return dim
    return math.ceil(dim / 8)


def _library_precision(precision: str) -> Literal["int8", "ubinary"]:
    return "ubinary" if precision == "binary" else "int8"


def int8_ranges(calibration: np.ndarray) -> np.ndarray:
    """Per-dim (min, max) of the calibration embeddings: the ranges ``quantize_embeddings`` would derive."""
    return np.vstack((calibration.min(axis=0), calibration.max(axis=0)))


def quantize(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """The library's ``quantize_embeddings`` (``binary`` -> ``ubinary``); float32 unchanged."""
    from sentence_transformers.util.quantization import quantize_embeddings

    if check_precision(precision) == "float32":
        return np.asarray(embeddings, dtype=np.float32)
    if precision == "int8" and ranges is None:
        raise InputError("int8 needs calibration ranges")
    return np.asarray(quantize_embeddings(embeddings, precision=_library_precision(precision), ranges=ranges))


def quantized_scores(query: np.ndarray, corpus: np.ndarray, precision: str) -> np.ndarray:
    """Higher is better. float32/int8: dot product (exact in float32 for int8 up to 1,000 dims);
    binary (packed ubinary): minus the Hamming distance."""
    if precision == "binary":
        qb = np.unpackbits(query, axis=1).astype(np.float32)
        cb = np.unpackbits(corpus, axis=1).astype(np.float32)
        # hamming = |q| + |c| - 2 q.c
        return 2.0 * (qb @ cb.T) - qb.sum(axis=1, keepdims=True) - cb.sum(axis=1)[None, :]
    return query.astype(np.float32) @ corpus.astype(np.float32).T


def rescore_values(corpus: np.ndarray, precision: str, ranges: np.ndarray | None, dim: int) -> np.ndarray:
    """What the library multiplies the float32 query with when rescoring: the int8 values restored to
    the float coordinates (its ``_dequantize_embeddings``), or the unpacked bits (padding trimmed)."""
    if precision == "binary":
        return np.unpackbits(corpus, axis=1)[:, :dim].astype(np.float32)
    if precision == "int8":
        if ranges is None:
            raise InputError("int8 needs calibration ranges")
        steps = (ranges[1] - ranges[0]) / 255
        steps = np.where(steps == 0, 1, steps)
        return ((corpus.astype(np.float64) + 128) * steps + ranges[0]).astype(np.float32)
    return corpus.astype(np.float32)


def _rescored(query_fp32: np.ndarray, coarse: np.ndarray, stored: np.ndarray, k: int, multiplier: int) -> np.ndarray:
    """Scores where only the top ``k x multiplier`` coarse candidates keep a (rescored) score, others -inf.

    The rescored value of a candidate is ``query_fp32 @ stored[candidate]``, as in the library's einsum;
    one matrix product over the whole corpus then a mask is cheaper here than gathering the candidates."""
    n = coarse.shape[1]
    take = min(n, k * multiplier)
    full = query_fp32 @ stored.T
    if take >= n:
        return full.astype(np.float32)
    cand = np.argpartition(-coarse, take - 1, axis=1)[:, :take]
    out = np.full(coarse.shape, -np.inf, dtype=np.float32)
    np.put_along_axis(out, cand, np.take_along_axis(full, cand, axis=1).astype(np.float32), axis=1)
    return out


def _break_ties(scores: np.ndarray) -> np.ndarray:
    """Integer-valued scores (int8 dot products, minus Hamming distances) minus ``column / n``: the same
    order, with ties broken by ascending column (corpus id) as the evaluation does, so its ranking never
    falls back to a full sort of tied rows. In float64, where ``1 / n`` stays exact next to the scores."""
    n = scores.shape[1]
    return scores.astype(np.float64) - np.arange(n, dtype=np.float64) / n


def serving_grid(
    q_full: torch.Tensor,
    c_full: torch.Tensor,
    calibration_full: torch.Tensor | None,
    dims: Sequence[int],
    hits_of: Callable[[Any], np.ndarray],
    average_precision: Callable[[np.ndarray], np.ndarray],
    slices: Mapping[str, np.ndarray],
    *,
    normalize: bool,
    k: int,
    rescore_multiplier: int = 4,
    float32_ap: Mapping[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The grid from the evaluation's full-dimension embeddings.

    ``hits_of(scores)``: the evaluation's ranking (ties by corpus order) of a score matrix (a torch
    tensor, queries x corpus) into its hit matrix; ``average_precision(hits)``: per-query map@100.
    ``slices``: query masks per eval slice. Without ``calibration_full`` the int8 columns are left out.
    ``float32_ap``: the evaluation's own per-query map@100 per dim (the float32 column), not ranked again.
    """
    import torch
    import torch.nn.functional as F

    cells: list[dict[str, Any]] = []
    for d in dims:
        q = q_full[:, :d].float()
        c = c_full[:, :d].float()
        cal = calibration_full[:, :d].float() if calibration_full is not None else None
        if normalize:
            q, c = F.normalize(q, p=2, dim=-1), F.normalize(c, p=2, dim=-1)
            cal = F.normalize(cal, p=2, dim=-1) if cal is not None else None
        qn, cn = q.cpu().numpy(), c.cpu().numpy()
        ranges = int8_ranges(cal.cpu().numpy()) if cal is not None else None
        for precision, rescore in COLUMNS:
            if precision == "int8" and ranges is None:
                continue
            if precision == "float32" and float32_ap is not None and d in float32_ap:
                ap = np.asarray(float32_ap[d])
            else:
                if precision == "float32":
                    scores = qn @ cn.T
                else:
                    qq, cq = quantize(qn, precision, ranges), quantize(cn, precision, ranges)
                    scores = quantized_scores(qq, cq, precision)
                    if rescore:
                        scores = _rescored(qn, scores, rescore_values(cq, precision, ranges, d), k, rescore_multiplier)
                    else:
                        scores = _break_ties(scores)
                ap = average_precision(hits_of(torch.from_numpy(np.ascontiguousarray(scores))))
            cells.append(
                {
                    "dim": int(d),
                    "precision": precision,
                    "rescore": rescore,
                    "column": column_name(precision, rescore),
                    "bytes_per_vector": bytes_per_vector(int(d), precision),
                    MAP: float(np.mean(ap)),
                    "slices": {name: float(np.mean(ap[mask])) for name, mask in slices.items() if mask.any()},
                }
            )
    return {
        "dims": [int(d) for d in dims],
        "columns": [column_name(p, r) for p, r in COLUMNS if not (p == "int8" and calibration_full is None)],
        "k": int(k),
        "rescore_multiplier": int(rescore_multiplier),
        "calibration_texts": int(calibration_full.shape[0]) if calibration_full is not None else 0,
        "cells": cells,
    }


def _relative(value: float, reference: float) -> float:
    if reference <= 0:
        return 1.0 if value >= reference else 0.0
    return value / reference


def recommend(grid: Mapping[str, Any], max_relative_loss: float) -> dict[str, Any] | None:
    """The cell with the fewest bytes per vector (then no rescoring, then the best map@100) whose map@100
    is at least ``1 - max_relative_loss`` of float32 at the largest dim on the whole eval and on every
    ``unseen*`` slice. None when the grid has no float32 reference."""
    cells = list(grid.get("cells") or [])
    ref = next(
        (c for c in cells if c["precision"] == "float32" and not c["rescore"] and c["dim"] == max(grid["dims"])), None
    )
    if ref is None:
        return None
    floor = 1.0 - max_relative_loss
    unseen = [s for s in ref["slices"] if s.startswith(UNSEEN_PREFIX)]

    def keeps(cell: Mapping[str, Any]) -> bool:
        if _relative(cell[MAP], ref[MAP]) < floor:
            return False
        return all(_relative(cell["slices"].get(s, 0.0), ref["slices"][s]) >= floor for s in unseen)

    ok = sorted((c for c in cells if keeps(c)), key=lambda c: (c["bytes_per_vector"], c["rescore"], -c[MAP]))
    best = ok[0] if ok else ref
    return {
        "dim": best["dim"],
        "precision": best["precision"],
        "rescore": best["rescore"],
        "column": best["column"],
        "bytes_per_vector": best["bytes_per_vector"],
        MAP: best[MAP],
        "relative_map": _relative(best[MAP], ref[MAP]),
        "unseen_relative_map": {s: _relative(best["slices"].get(s, 0.0), ref["slices"][s]) for s in unseen},
        "reference_map": ref[MAP],
        "reference_bytes_per_vector": ref["bytes_per_vector"],
        "max_relative_loss": max_relative_loss,
    }


def with_recommendation(grid: Mapping[str, Any], max_relative_loss: float) -> dict[str, Any]:
    return {**grid, "recommendation": recommend(grid, max_relative_loss)}


# --- text -----------------------------------------------------------------------------------------


def recommendation_line(rec: Mapping[str, Any] | None) -> str:
    """``serve 128 dims int8: 128 bytes/vector (12x less than 1536), 99.1% of float32 384's map@100 ...``."""
    if not rec:
        return "serving: no recommendation (no serving grid)"
    how = rec["precision"] + (" with rescoring" if rec.get("rescore") else "")
    shrink = rec["reference_bytes_per_vector"] / max(1, rec["bytes_per_vector"])
    unseen = rec.get("unseen_relative_map") or {}
    extra = "".join(f", {s} {v:.1%}" for s, v in unseen.items())
    return (
        f"serving: {rec['dim']} dims {how}: {rec['bytes_per_vector']} bytes/vector "
        f"({shrink:.0f}x less than {rec['reference_bytes_per_vector']}), {rec['relative_map']:.1%} of "
        f"float32's map@100 (within {rec['max_relative_loss']:.0%}{extra})"
    )


def grid_rows(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per cell: dim, column, bytes_per_vector, map@100, relative, then one column per slice."""
    cells = list(grid.get("cells") or [])
    ref = next((c for c in cells if c["column"] == "float32" and c["dim"] == max(grid.get("dims") or [0])), None)
    rows = []
    for c in cells:
        row = {
            "dim": c["dim"],
            "column": c["column"],
            "bytes_per_vector": c["bytes_per_vector"],
            MAP: c[MAP],
            "relative_map": _relative(c[MAP], ref[MAP]) if ref else None,
        }
        row.update({f"{MAP} {s}": v for s, v in c["slices"].items()})
        rows.append(row)
    return rows


def grid_text(grid: Mapping[str, Any] | None, markdown: bool = False) -> list[str]:
    """map@100 (bytes/vector) per dim x column, then the recommendation."""
    if not grid or not grid.get("cells"):
        return []
    cols = list(grid["columns"])
    by = {(c["dim"], c["column"]): c for c in grid["cells"]}

    def cell(d: int, col: str) -> str:
        c = by.get((d, col))
        return "–" if c is None else f"{c[MAP]:.4f} ({c['bytes_per_vector']} B)"

    rec = grid.get("recommendation")
    if markdown:
        out = ["", f"Serving grid: {MAP} (bytes per vector) on the whole eval:", ""]
        out += ["| dim | " + " | ".join(cols) + " |", "|---:|" + "---:|" * len(cols)]
        out += [f"| {d} | " + " | ".join(cell(d, col) for col in cols) + " |" for d in grid["dims"]]
        return [*out, "", f"**{recommendation_line(rec)}**"]
    w = 18
    out = [f"serving grid ({MAP}, bytes/vector)", f"{'dim':>4}  " + "  ".join(f"{c:>{w}}" for c in cols)]
    out += [f"{d:>4}  " + "  ".join(f"{cell(d, col):>{w}}" for col in cols) for d in grid["dims"]]
    return [*out, recommendation_line(rec), ""]


# --- the evaluation's side ------------------------------------------------------------------------


def grid_path(metrics_json: str | Path) -> Path:
    """Where the grid goes beside a metrics file: ``eval_metrics.json`` -> ``eval_metrics.serving.json``."""
    p = Path(metrics_json)
    return p.with_name(f"{p.stem}.serving.json")


def read_grid(metrics_json: str | Path) -> dict[str, Any] | None:
    import json

    path = grid_path(metrics_json)
    if not path.exists():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


def calibration_texts(data_dir: Path, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct train positives (documents), a seeded sample: what int8 ranges are calibrated on."""
    import pandas as pd

    path = Path(data_dir) / "train.parquet"
    if not path.exists():
        return []
    texts = pd.read_parquet(path, columns=["positive"])["positive"].dropna().astype(str).drop_duplicates()
    if len(texts) > n:
        texts = texts.sample(n=n, random_state=seed)
    return texts.tolist()


def serving_request(cfg: ServingConfig, data_dir: Path) -> ServingGrid | None:
    """What :func:`pipelines.evaluation.score_pairs` needs for the grid of an eval set in ``data_dir``."""
    from pipelines.evaluation import ServingGrid

    if not cfg.grid:
        return None
    return ServingGrid(calibration_texts(data_dir, cfg.calibration_texts), cfg.rescore_multiplier)


def serving_card_lines(grid: Mapping[str, Any] | None) -> list[str]:
    """The model card's section: the grid and the recommended setting, with how to serve it."""
    if not grid or not grid.get("cells"):
        return []
    rec = grid.get("recommendation")
    out = ["### Serving: precision x dimension", *grid_text(grid, markdown=True)[1:]]
    if rec:
        out += [
            "",
            f'Search the bundled catalog at this setting: `recipe-embed search "QUERY"` '
            f"(`--dim {rec['dim']} --precision {rec['precision']}` by default for the champion).",
        ]
    return [*out, ""]
