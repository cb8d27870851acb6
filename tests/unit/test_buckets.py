"""Length buckets: the cut that pads least, the same embeddings and gradients as one padded batch, and the
trainer encoding a column in groups when ``training.length_buckets`` asks for it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipelines import buckets
from pipelines.buckets import BucketedForward, cut_points, length_buckets


def _cost(lengths: list[int], cuts: list[int], overhead: int) -> int:
    bounds = list(zip([0, *cuts], [*cuts, len(lengths)], strict=True))
    return sum((hi - lo) * lengths[hi - 1] + overhead for lo, hi in bounds)


@pytest.mark.parametrize("seed", range(6))
def test_the_cut_pads_least(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = sorted(rng.integers(3, 90, size=int(rng.integers(1, 12))).tolist())
    for k, overhead in itertools.product((1, 2, 3), (0, 40)):
        cuts = cut_points(lengths, k, overhead)
        assert len(cuts) <= k - 1 and cuts == sorted(set(cuts)) and all(0 < c < len(lengths) for c in cuts)
        every = [
            list(c) for g in range(k) for c in itertools.combinations(range(1, len(lengths)), g)
        ]  # all ways of cutting into at most k groups
        assert _cost(lengths, cuts, overhead) == min(_cost(lengths, c, overhead) for c in every)


def test_short_and_long_texts_are_cut_apart_and_one_length_is_not() -> None:
    assert cut_points([10] * 50 + [80] * 4, 2, overhead=0) == [50]
    assert cut_points([10] * 50 + [80] * 4, 3, overhead=0) == [50]  # a third group saves nothing
    assert cut_points([20] * 64, 3, overhead=0) == []
    assert cut_points([10] * 3 + [12], 2, overhead=256) == []  # saving 6 tokens is not worth a pass
    with pytest.raises(ValueError, match="ascending"):
        cut_points([5, 3], 2)


@pytest.fixture(scope="module")
def model(bundled_model_path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(bundled_model_path, device="cpu")
    m.max_seq_length = 96
    return m


TEXTS = [
    "aubergine",
    "vegan thai dinner",
    "Ananya's Mango Sticky Rice: thai, 45 min, vegetarian, vegan, gluten-free, dairy-free, nut-free and egg-free. "
    "Ingredients: sticky rice, mango, coconut cream, palm sugar, sesame seeds, lemon juice and white sugar.",
    "No recipes found with these curry leaf and rice cakes!",
    "prawns",
    "Recipes with eggplant and tomato: Mei's Eggplant Parmigiana, Wei's Caponata.",
    "Min-jun's Garlic Bok Choy: chinese, 25 min, pescatarian, dairy-free and nut-free. Ingredients: bok choy, "
    "garlic, oyster sauce, shaoxing wine, cornstarch, vegetable oil and white pepper.",
    "quick dal",
]


def test_grouped_embeddings_and_gradients_are_the_padded_batchs(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[int]] = []
    real = buckets.cut_points

    def spy(lengths: Any, k: int, overhead: int = 0) -> list[int]:
        cuts = real(lengths, k, 0)
        seen.append(cuts)
        return cuts

    monkeypatch.setattr(buckets, "cut_points", spy)
    weight = model[0].auto_model.embeddings.word_embeddings.weight

    def run(forward: Any) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        emb = forward(dict(model.tokenize(TEXTS)))["sentence_embedding"]
        (emb * torch.linspace(-1, 1, emb.shape[1])).sum().backward()
        return emb.detach(), weight.grad.detach().clone()

    plain, plain_grad = run(model.forward)
    grouped, grouped_grad = run(BucketedForward(model.forward, 3))
    assert seen and len(seen[0]) == 2  # three groups: the cards, the listings, the names
    torch.testing.assert_close(grouped, plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grouped_grad, plain_grad, atol=1e-5, rtol=1e-3)


def test_left_padding_and_one_group_take_one_plain_call() -> None:
    calls: list[dict[str, Any]] = []

    def forward(features: dict[str, Any]) -> dict[str, Any]:
        calls.append(features)
        return {"sentence_embedding": torch.zeros(features["attention_mask"].shape[0], 4)}

    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]] * 20)
    BucketedForward(forward, 3)({"input_ids": left, "attention_mask": left})
    same = torch.ones(40, 4, dtype=torch.long)
    BucketedForward(forward, 3)({"input_ids": same, "attention_mask": same})
    assert len(calls) == 2 and [c["attention_mask"].shape for c in calls] == [(40, 4), (40, 4)]


def test_the_block_puts_the_models_forward_back(model: Any) -> None:
    class_forward = type(model).forward
    with length_buckets(model, 3):
        assert isinstance(model.forward, BucketedForward)
    assert "forward" not in vars(model) and type(model).forward is class_forward
    own = model.forward
    model.forward = own  # an instance attribute, as MatryoshkaLoss sets one
    try:
        with length_buckets(model, 2):
            assert isinstance(model.forward, BucketedForward)
        assert vars(model)["forward"] is own
    finally:
        del model.forward
    with length_buckets(model, 1):
        assert "forward" not in vars(model)
    with length_buckets(None, 3):
        pass


def test_training_encodes_columns_in_groups_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.config import ModelConfig, TrainingConfig
    from pipelines.training import train
    from tests.conftest import make_recipe_pairs, write_dataset_dir

    groups: list[int] = []
    real = buckets.cut_points

    def spy(lengths: Any, k: int, overhead: int = 0) -> list[int]:
        cuts = real(lengths, k, 0)
        groups.append(len(cuts) + 1)
        return cuts

    monkeypatch.setattr(buckets, "cut_points", spy)
    pairs = make_recipe_pairs()
    data = write_dataset_dir(tmp_path / "data", pairs.assign(intent="t", group_id="g"), pairs, pairs)
    cfg = TrainingConfig(
        max_steps=1, per_device_batch_size=16, eval_strategy="no", base_interpolation=(), length_buckets=3
    )
    train(data, tmp_path / "out", ModelConfig(max_seq_length=32), cfg, progress=False)
    assert len(groups) == 2  # anchors and positives of the one step, not the saving or anything after
    assert max(groups) > 1
