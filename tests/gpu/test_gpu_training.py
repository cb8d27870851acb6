"""On a CUDA device: bf16 + tf32 + fused AdamW training, and evaluation equal to the library's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_gpu_training_uses_card_settings_and_learns(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    from pipelines.config import ModelConfig, TrainingConfig
    from pipelines.training import train

    cfg = TrainingConfig(epochs=3, per_device_batch_size=16, learning_rate=1e-4, logging_steps=1, save_total_limit=1)
    result = train(tiny_dataset_dir, tmp_path / "out", ModelConfig(max_seq_length=32), cfg, progress=False)
    assert result.device == "cuda"
    assert result.settings["optim"] == "adamw_torch_fused"
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert result.settings["precision"] == expected
    losses = pd.DataFrame(result.loss_history)
    assert losses[losses["step"] > 6]["loss"].mean() < losses[losses["step"] <= 3]["loss"].mean()
    assert result.validation_metrics["dim_384_cosine_map@100"] > 0


def test_gpu_evaluation_equals_library(recipe_pairs: pd.DataFrame, bundled_model_path: str) -> None:
    from sentence_transformers import SentenceTransformer

    from pipelines.evaluation import evaluate_pairs, reference_evaluate

    model = SentenceTransformer(bundled_model_path, device="cuda")
    dims = (384, 256, 128, 64)
    ours = evaluate_pairs(model, recipe_pairs, dims, batch_size=32)
    ref = reference_evaluate(model, recipe_pairs, dims, batch_size=32)
    assert set(ref) - set(ours) == {"sequential_score"}
    for key, value in ours.items():
        assert value == pytest.approx(ref[key], abs=1e-6), key
