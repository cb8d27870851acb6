"""The generated model card and the per-dimension plot."""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.config import load_config
from pipelines.modelcard import METRIC_ORDER, fmt, markdown_metrics_table, render_model_card
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
    assert "WiSE-FT" not in card  # no mix recorded

    mixed = {**result, "settings": {"base_interpolation": {"alpha": 0.5, "validation_mean_map@100": {"0.5": 0.94}}}}
    card = render_model_card(cfg, cand, base, None, manifest, mixed)
    assert "- Weights: 0.5 x fine-tuned + 0.5 x base (WiSE-FT), chosen on validation" in card
    assert "over dims, by share" in card and "per slice" not in card

    # a validation split with the hand-written slice: the card says what the mix was chosen on, and shows both
    val = {
        f"{g}dim_{d}_cosine_map@100": v
        for g, v in (("slice_seen_wording_", 0.9), ("slice_human_dev_", 0.4))
        for d in (384, 64)
    }
    card = render_model_card(cfg, cand, base, None, manifest, {**mixed, "validation_metrics": val})
    assert "(map@100 averaged over its slices and dims, by share of fine-tuned weights: 0.5: 0.9400)" in card
    assert (
        "- Validation map@100 at 384 / 64, per slice: `seen_wording` 0.900 / 0.900; `human_dev` 0.400 / 0.400" in card
    )


def test_metrics_table_rows_follow_the_reference_order_and_champion_column_is_optional() -> None:
    table = markdown_metrics_table(128, {"base": _metrics(0.1), "fine-tuned": _metrics(0.2), "champion": None})
    lines = table.splitlines()
    assert lines[0] == "| Metric | base | fine-tuned |"
    names = [line.split("|")[1].strip().strip("*") for line in lines[2:]]
    assert names == list(METRIC_ORDER)


def test_fmt_rounds_like_the_reference_card() -> None:
    assert fmt(0.98981234) == "0.9898" and fmt(1.0) == "1" and fmt(None) == "-" and fmt(math.nan) == "nan"


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = plot_dim_metrics({"candidate": _metrics(0.8), "base": _metrics(0.6)}, DIMS, tmp_path / "m.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert dim_series(_metrics(0.5), DIMS, "map@100")[0] == _metrics(0.5)["dim_384_cosine_map@100"]
    assert math.isnan(dim_series({}, DIMS, "ndcg@10")[1])


def _sliced(level: float) -> dict[str, float]:
    out = _metrics(level)
    for i, s in enumerate(("seen_wording", "unseen_wording", "recipe_card")):
        out[f"slice_{s}_queries"] = 10.0 + i
        for d in DIMS:
            out[f"slice_{s}_dim_{d}_cosine_map@100"] = level - 0.1 * i + d / 1e5
    out["intent_recipe_card_dim_384_cosine_map@100"] = level - 0.2
    out["intent_recipe_card_queries"] = 12.0
    return out


def test_plot_has_a_panel_per_slice(tmp_path: Path) -> None:
    from pipelines.plots import panels

    series = {"candidate": _sliced(0.8), "base": _sliced(0.6), "champion": _sliced(0.7)}
    assert [p[3] for p in panels(series)] == [None, "seen_wording", "unseen_wording", "recipe_card"]
    assert (
        dim_series(series["base"], DIMS, "map@100", "slice", "recipe_card")[0]
        == _sliced(0.6)["slice_recipe_card_dim_384_cosine_map@100"]
    )
    out = plot_dim_metrics(series, DIMS, tmp_path / "s.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_card_shows_slices_intents_and_the_decision_interval() -> None:
    from pipelines.promotion import Decision

    cfg = load_config("smoke")
    d = Decision(
        True,
        "better",
        {384: 0.01},
        "3",
        "2",
        delta=0.0123,
        ci_low=0.0081,
        ci_high=0.017,
        primary_dim=384,
        champion_primary=0.997,
        saturated=True,
        scored_against="2",
    )
    card = render_model_card(cfg, _sliced(0.8), _sliced(0.6), _sliced(0.7), {}, {}, d.to_dict())
    assert "PROMOTED (version 3 over 2): map@100 at 384 +0.0123 [0.0081, 0.0170]: better" in card
    assert "### By eval slice" in card and "| unseen_wording | 11 |" in card
    assert "### By intent (dim 384)" in card and "| recipe_card | 12 |" in card
    assert "eval saturated" in card
