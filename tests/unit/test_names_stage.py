"""The names stage: one pair of every synonym class a round, no synonym as an in-batch negative, names
pulled together, skipped (and said so) where a dataset has no names file."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import ModelConfig, TrainingConfig
from pipelines.names_stage import NAMES_FILE, cosine_with_warmup, round_batches, train_names


def _names(sizes: list[int]) -> pd.DataFrame:
    rows = [(f"c{c}n{k}", f"c{c}m{k}", f"c{c}") for c, n in enumerate(sizes) for k in range(n)]
    return pd.DataFrame(rows, columns=["anchor", "positive", "group_id"])


def _loss(model: object) -> object:
    """The main stage's loss (MatryoshkaLoss(MNRL)) at two dims, as training builds it."""
    from pipelines.training import _build_loss

    return _build_loss(model, TrainingConfig(matryoshka_dims=(384, 64)))


def test_each_round_takes_one_pair_of_every_class_and_no_batch_two_of_one_class() -> None:
    names = _names([1, 2, 3, 5, 1, 4, 2, 2, 3, 1])
    rounds, batch = 5, 4
    batches = round_batches(names, rounds, batch, seed=0)
    n_classes = names["group_id"].nunique()
    per_round = -(-n_classes // batch)  # ceil
    assert len(batches) == rounds * per_round
    for r in range(rounds):
        taken = [i for b in batches[r * per_round : (r + 1) * per_round] for i in b]
        assert sorted(names["group_id"].iloc[taken]) == sorted(names["group_id"].unique())
    for b in batches:
        assert len(b) <= batch
        assert names["group_id"].iloc[b].is_unique
    # a class cycles through its pairs: five rounds reach every pair of a class of up to five
    assert {i for b in batches for i in b} == set(range(len(names)))
    # rounds are shuffled afresh, and the same seed gives the same batches
    assert batches[:per_round] != batches[per_round : 2 * per_round]
    assert round_batches(names, rounds, batch, seed=0) == batches


def test_learning_rate_warms_up_then_falls_to_zero() -> None:
    f = [cosine_with_warmup(s, 20, 2) for s in range(20)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(f[1:]))
    assert 0 < f[-1] < 0.05


@pytest.mark.slow  # trains a model
def test_the_names_stage_pulls_a_classs_names_together(bundled_model_path: str) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    # made-up names the base model cannot know are synonyms
    pairs = [("blorvish", "tammeline"), ("quenzap", "ridomore"), ("skivvel", "prandoux"), ("ulmetry", "gaskerine")]
    names = pd.DataFrame([(a, b, a) for a, b in pairs], columns=["anchor", "positive", "group_id"])
    model = SentenceTransformer(bundled_model_path, device="cpu")
    model.max_seq_length = 64

    def margin() -> float:
        emb = model.encode([t for p in pairs for t in p], normalize_embeddings=True)
        sims = emb @ emb.T
        own = np.mean([sims[2 * i, 2 * i + 1] for i in range(len(pairs))])
        other = np.mean([sims[2 * i, 2 * j + 1] for i in range(len(pairs)) for j in range(len(pairs)) if i != j])
        return float(own - other)

    before = margin()
    lines: list[str] = []
    result = train_names(
        model, names, _loss(model), rounds=10, batch_size=4, max_seq_length=8, learning_rate=1e-4,
        max_grad_norm=1.0, seed=0, device="cpu", log_every=5, log=lines.append,
    )  # fmt: skip
    assert margin() > before + 0.2
    assert model.max_seq_length == 64 and not model.training
    assert (result.steps, result.rounds, result.classes) == (10, 10, 4)
    assert result.last_loss < result.first_loss
    assert lines[-1].startswith("names stage: step 10/10")
    # seeded: a resumed run repeats it to the same weights, the anchor of its base mix
    again = SentenceTransformer(bundled_model_path, device="cpu")
    train_names(
        again, names, _loss(again), rounds=10, batch_size=4, max_seq_length=8, learning_rate=1e-4,
        max_grad_norm=1.0, seed=0, device="cpu",
    )  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


@pytest.mark.slow  # trains a model
def test_training_runs_the_names_stage_or_says_why_not(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    from pipelines.training import train

    cfg = TrainingConfig(
        max_steps=1, per_device_batch_size=16, eval_batch_size=64, optim="adamw_torch", logging_steps=1,
        save_total_limit=1, base_interpolation=(), name_rounds=2, name_batch_size=4,
    )  # fmt: skip
    model_cfg = ModelConfig(max_seq_length=32)
    missing = train(tiny_dataset_dir, tmp_path / "a", model_cfg, cfg, progress=False)
    assert missing.settings["names_stage"] == {
        "skipped": f"the dataset has no {NAMES_FILE} (synthesized datasets have one)"
    }
    _names([1, 2, 1]).to_parquet(tiny_dataset_dir / NAMES_FILE, index=False)
    ran = train(tiny_dataset_dir, tmp_path / "b", model_cfg, cfg, progress=False)
    stage = ran.settings["names_stage"]
    assert (stage["rounds"], stage["pairs"], stage["classes"], stage["steps"]) == (2, 4, 3, 2)
    off = train(tiny_dataset_dir, tmp_path / "c", model_cfg, cfg.model_copy(update={"name_rounds": 0}), progress=False)
    assert off.settings["names_stage"] is None
