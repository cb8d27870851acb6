"""The serving grid (precision x dim from the evaluation's one encode) and its recommendation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import InputError
from pipelines.serving import (
    bytes_per_vector,
    grid_text,
    int8_ranges,
    quantize,
    quantized_scores,
    recommend,
    recommendation_line,
)


def test_bytes_per_vector() -> None:
    assert [bytes_per_vector(384, p) for p in ("float32", "int8", "binary")] == [1536, 384, 48]
    assert bytes_per_vector(64, "binary") == 8
    with pytest.raises(InputError, match="unknown precision"):
        bytes_per_vector(64, "int4")


def test_quantize_matches_the_library_calibration() -> None:
    from sentence_transformers.util.quantization import quantize_embeddings

    rng = np.random.default_rng(0)
    cal, emb = rng.normal(size=(50, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    ours = quantize(emb, "int8", int8_ranges(cal))
    lib = quantize_embeddings(emb, precision="int8", calibration_embeddings=cal)
    np.testing.assert_array_equal(ours, lib)
    assert quantize(emb, "binary").shape == (7, 2)


def test_binary_scores_are_minus_hamming() -> None:
    rng = np.random.default_rng(1)
    q = quantize(rng.normal(size=(3, 24)).astype(np.float32), "binary")
    c = quantize(rng.normal(size=(5, 24)).astype(np.float32), "binary")
    hamming = np.array(
        [
            [bin(int.from_bytes(a.tobytes(), "big") ^ int.from_bytes(b.tobytes(), "big")).count("1") for b in c]
            for a in q
        ]
    )
    np.testing.assert_array_equal(quantized_scores(q, c, "binary"), -hamming)


def _cell(dim: int, precision: str, value: float, unseen: float, rescore: bool = False) -> dict[str, object]:
    return {
        "dim": dim,
        "precision": precision,
        "rescore": rescore,
        "column": precision + ("+rescore" if rescore else ""),
        "bytes_per_vector": bytes_per_vector(dim, precision),
        "map@100": value,
        "slices": {"seen_wording": value, "unseen_ingredient": unseen},
    }


def _grid(cells: list[dict[str, object]]) -> dict[str, object]:
    return {"dims": [384, 128, 64], "columns": ["float32", "int8", "binary", "binary+rescore"], "cells": cells}


def test_recommendation_is_the_smallest_within_the_loss_on_whole_and_unseen_slices() -> None:
    grid = _grid(
        [
            _cell(384, "float32", 0.90, 0.80),
            _cell(128, "int8", 0.89, 0.79),  # 128 B, within 2%
            _cell(64, "int8", 0.89, 0.70),  # 64 B, whole ok but the unseen slice loses 12%
            _cell(384, "binary", 0.85, 0.80),  # 48 B, whole loses 5.6%
            _cell(384, "binary", 0.885, 0.79, rescore=True),  # 48 B with rescoring: within 2%
        ]
    )
    rec = recommend(grid, 0.02)
    assert rec is not None
    assert (rec["dim"], rec["precision"], rec["rescore"], rec["bytes_per_vector"]) == (384, "binary", True, 48)
    assert rec["relative_map"] == pytest.approx(0.885 / 0.90)
    assert rec["unseen_relative_map"] == {"unseen_ingredient": pytest.approx(0.79 / 0.80)}
    tight = recommend(grid, 0.0)
    assert tight is not None and (tight["dim"], tight["precision"]) == (384, "float32")
    assert "48 bytes/vector" in recommendation_line(rec)


def test_grid_from_the_evaluation_reuses_its_encode(tiny_dataset_dir: Path, bundled_model_path: str) -> None:
    from sentence_transformers import SentenceTransformer

    from pipelines.evaluation import ServingGrid, load_pairs, score_pairs

    model = SentenceTransformer(bundled_model_path, device="cpu")
    pairs = load_pairs(tiny_dataset_dir / "eval.parquet")
    cal = pd.read_parquet(tiny_dataset_dir / "train.parquet")["positive"].tolist()[:32]
    calls: list[int] = []
    encode = model.encode

    def counting(*args: object, **kwargs: object) -> object:
        texts = args[0] if args else kwargs.get("inputs", kwargs.get("sentences"))
        calls.append(len(texts))  # type: ignore[arg-type]
        return encode(*args, **kwargs)  # type: ignore[arg-type]

    model.encode = counting  # type: ignore[method-assign]
    scores = score_pairs(model, pairs, (384, 64), 64, serving=ServingGrid(cal, 4))
    assert sum(calls) == len(pairs) + pairs["positive"].nunique() + len(cal)  # eval once, plus calibration
    grid = scores.serving
    assert grid is not None
    cells = {(c["dim"], c["column"]): c for c in grid["cells"]}
    assert set(cells) == {(d, col) for d in (384, 64) for col in grid["columns"]}
    assert len(grid["columns"]) == 5
    for d in (384, 64):  # float32 is the evaluation itself
        assert cells[(d, "float32")]["map@100"] == pytest.approx(scores.metrics[f"dim_{d}_cosine_map@100"])
        assert cells[(d, "binary")]["bytes_per_vector"] == d // 8
    text = "\n".join(grid_text({**grid, "recommendation": recommend(grid, 0.02)}))
    assert "binary+rescore" in text and "serving:" in text
