"""The generated model card and the per-dimension plot."""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.config import load_config
from pipelines.modelcard import METRIC_ORDER, fmt, metrics_table, render_model_card
from pipelines.plots import dim_series, plot_dim_metrics

DIMS = (384, 256, 128, 64)


def _metrics(base: float) -> dict[str, float]:
    return {f"dim_{d}_{m}": base + i / 1000 + d / 1e5 for d in DIMS for i, m in enumerate(METRIC_ORDER)}


def test_card_has_hyperparameters_counts_and_per_dim_tables() -> None:
    cfg = load_config("smoke")
    cand, base = _metrics(0.8), _metrics(0.6)
    manifest = {"counts": {"train": 288, "validation": 32, "eval": 120}, "digests": {"train.parquet": "ab" * 32}}
    result = {"loss_history": [{"step": s, "epoch": s / 9, "loss": 1 / s} for s in range(1, 10)], "device": "cpu"}

    card = render_model_card(cfg, cand, base, None, manifest, result)

    assert card.startswith("# recipe-embedder")
    for d in DIMS:
        assert f"* Dataset: `dim_{d}`" in card
    assert card.count("| **cosine_map@100** |") == len(DIMS)
    assert f"- `learning_rate`: {cfg.training.learning_rate:g}" in card
    assert f"- `per_device_train_batch_size`: {cfg.training.per_device_batch_size}" in card
    assert "- `train`: 288" in card and "- `eval`: 120" in card
    assert '"matryoshka_dims": [\n    384,' in card
    assert 'mlflow.sentence_transformers.load_model("models:/recipe-embedder@champion")' in card
    # baseline vs fine-tuned: the delta at 384 is the real difference of the two inputs
    k = "dim_384_cosine_map@100"
    assert f"| 384 | {fmt(base[k])} | {fmt(cand[k])} | {cand[k] - base[k]:+.4f} | - |" in card
    assert "| Epoch | Step | Training Loss |" in card


def test_metrics_table_rows_follow_the_reference_order_and_champion_column_is_optional() -> None:
    table = metrics_table(128, {"base": _metrics(0.1), "fine-tuned": _metrics(0.2), "champion": None})
    lines = table.splitlines()
    assert lines[0] == "| Metric | base | fine-tuned |"
    names = [line.split("|")[1].strip().strip("*") for line in lines[2:]]
    assert names == list(METRIC_ORDER)


def test_fmt_rounds_like_the_reference_card() -> None:
    assert fmt(0.98981234) == "0.9898" and fmt(1.0) == "1" and fmt(None) == "-" and fmt(math.nan) == "nan"


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = plot_dim_metrics({"fine-tuned": _metrics(0.8), "base": _metrics(0.6)}, DIMS, tmp_path / "m.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert dim_series(_metrics(0.5), DIMS, "cosine_map@100")[0] == _metrics(0.5)["dim_384_cosine_map@100"]
    assert math.isnan(dim_series({}, DIMS, "cosine_ndcg@10")[1])
