"""Mixing the base model's weights back in after fine-tuning, the mix chosen on validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.config import ConfigError, ModelConfig, TrainingConfig, load_config
from pipelines.interpolation import choose_alpha, interpolate_toward_base, mean_primary, mixed_state


def test_the_smallest_alpha_within_the_tolerance_of_the_best_wins() -> None:
    scores = {0.3: 0.9195, 0.5: 0.9355, 0.7: 0.9365, 1.0: 0.924}
    assert choose_alpha(scores, 0.005) == 0.5  # 0.7 is best by 0.001: validation cannot tell them apart
    assert choose_alpha(scores, 0.0) == 0.7
    assert choose_alpha(scores, 0.02) == 0.3
    assert choose_alpha({1.0: 0.5}, 0.005) == 1.0
    with pytest.raises(ValueError, match="no alpha"):
        choose_alpha({}, 0.005)


def test_a_mix_is_linear_in_float_weights_and_keeps_the_rest() -> None:
    base = {"w": torch.zeros(3), "ids": torch.tensor([1, 2, 3])}
    tuned = {"w": torch.ones(3) * 2, "ids": torch.tensor([7, 8, 9])}
    half = mixed_state(base, tuned, 0.5)
    assert torch.equal(half["w"], torch.ones(3)) and torch.equal(half["ids"], tuned["ids"])
    assert torch.equal(mixed_state(base, tuned, 0.0)["w"], base["w"])
    assert torch.equal(mixed_state(base, tuned, 1.0)["w"], tuned["w"])
    with pytest.raises(ValueError, match="differ in their weights"):
        mixed_state({"w": torch.zeros(3)}, tuned, 0.5)


def test_the_score_is_the_mean_map_at_100_over_the_dims() -> None:
    metrics = {"dim_384_cosine_map@100": 0.8, "dim_64_cosine_map@100": 0.6, "dim_384_cosine_ndcg@10": 0.1}
    assert mean_primary(metrics, (384, 64)) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="one map@100 per dim"):
        mean_primary(metrics, (384, 256, 64))


def test_with_slices_the_score_is_their_mean_map_at_100_over_the_dims() -> None:
    """A validation split with slices (synthesized and hand-written): the mean over slices decides, not the
    whole split's map@100, in which the larger slice would weigh more."""
    metrics = {
        "dim_384_cosine_map@100": 0.9,
        "dim_64_cosine_map@100": 0.9,
        "dim_384_cosine_slice_mean_map@100": 0.6,
        "dim_64_cosine_slice_mean_map@100": 0.4,
        "slice_human_dev_dim_384_cosine_map@100": 0.1,
    }
    assert mean_primary(metrics, (384, 64)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one slice_mean_map@100 per dim"):
        mean_primary(metrics, (384, 256, 64))


def test_the_model_is_left_holding_the_chosen_mix() -> None:
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)  # fine-tuned
    base = {"weight": torch.zeros(1, 2)}
    seen: list[float] = []

    def evaluate(m: torch.nn.Module) -> dict[str, float]:  # validation likes weights near 0.6
        w = float(m.weight[0, 0])
        seen.append(w)
        return {"dim_384_cosine_map@100": 1 - abs(w - 0.6)}

    mix = interpolate_toward_base(model, base, evaluate, (384,), (1.0, 0.0, 0.5, 0.7), tolerance=1e-6)
    assert sorted(seen) == pytest.approx([0.0, 0.5, 0.7, 1.0])  # every alpha scored once
    assert mix.alpha == 0.5 and torch.allclose(
        model.weight, torch.full((1, 2), 0.5)
    )  # 0.5 and 0.7 tie: nearer the base
    assert mix.to_dict()["validation_mean_map@100"] == pytest.approx({"0": 0.4, "0.5": 0.9, "0.7": 0.9, "1": 0.6})


def test_alphas_outside_zero_to_one_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="base_interpolation"):
        load_config("smoke", sets=["training.base_interpolation=[0.5,1.5]"])
    assert load_config("cpu").training.base_interpolation[-1] == 1.0  # the fine-tuned model is always a candidate
    assert load_config("smoke").training.base_interpolation == ()


@pytest.mark.slow
def test_training_saves_the_mix_and_records_the_choice(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    """alpha 0 alone: the saved model is the base model, weight for weight; train_result.json says so."""
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from pipelines.models import resolve_base_model
    from pipelines.training import load_train_result, train

    cfg = TrainingConfig(
        epochs=1, per_device_batch_size=16, eval_batch_size=64, learning_rate=1e-3, optim="adamw_torch",
        save_total_limit=1, base_interpolation=(0.0,),
    )  # fmt: skip
    result = train(tiny_dataset_dir, tmp_path / "out", ModelConfig(max_seq_length=32), cfg, progress=False)
    saved = load_file(str(result.model_dir / "model.safetensors"))
    base = SentenceTransformer(resolve_base_model(ModelConfig().base_model), device="cpu")[0].auto_model.state_dict()
    assert saved.keys() <= base.keys() and all(torch.equal(saved[k], base[k]) for k in saved)
    recorded = load_train_result(tmp_path / "out")["settings"]["base_interpolation"]
    assert recorded["alpha"] == 0.0 and set(recorded["validation_mean_map@100"]) == {"0"}
    assert result.validation_metrics and all(k.startswith("dim_") for k in result.validation_metrics)
