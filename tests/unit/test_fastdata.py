"""The fast training input equals the library's: same features, same batches, no duplicates, same loss."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")


def _with_negatives(pairs: pd.DataFrame) -> pd.DataFrame:
    """anchor, positive, negative: the negative is another row's positive (so texts repeat across
    columns, as mined hard negatives do), plus one very long text to exercise truncation."""
    out = pairs[["anchor", "positive"]].astype(str).reset_index(drop=True).copy()
    out["negative"] = out["positive"].shift(5).fillna(out["positive"].iloc[-1])
    out.loc[3, "negative"] = "a very long negative answer " * 40
    return out


@pytest.fixture(scope="module")
def model(bundled_model_path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(bundled_model_path, device="cpu")
    m.max_seq_length = 24  # short enough that the long texts truncate
    return m


def _assert_features_equal(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    assert list(ours) == list(ref)  # same keys, same order
    for key, value in ref.items():
        if isinstance(value, torch.Tensor):
            assert isinstance(ours[key], torch.Tensor), key
            assert ours[key].dtype == value.dtype, key
            assert torch.equal(ours[key], value), key
        else:
            assert ours[key] == value, key


@pytest.mark.parametrize("negatives", [False, True], ids=["pairs", "triplets"])
def test_collator_features_equal_the_library_collator(model: Any, recipe_pairs: pd.DataFrame, negatives: bool) -> None:
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    from pipelines.fastdata import prepare_train_input

    frame = _with_negatives(recipe_pairs) if negatives else recipe_pairs[["anchor", "positive"]].astype(str)
    fast = prepare_train_input(model, frame)
    library = SentenceTransformerDataCollator(preprocess_fn=model.preprocess)
    rows = frame.to_dict("records")
    for batch in ([0, 1, 2, 3], [3], list(range(len(frame)))[::-1], [7, 30, 12, 44, 3, 19]):
        _assert_features_equal(fast.collator(batch), library([rows[i] for i in batch]))


def test_token_cache_is_reused_and_keyed_by_max_seq_length(
    tmp_path: Path, model: Any, recipe_pairs: pd.DataFrame
) -> None:
    from pipelines.fastdata import prepare_train_input
    from pipelines.tokencache import CACHE_DIR

    frame = recipe_pairs[["anchor", "positive"]].astype(str)
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    first = prepare_train_input(model, frame, data_dir=tmp_path)
    caches = sorted(p.name for p in (tmp_path / CACHE_DIR).iterdir())
    assert len(caches) == 1 and caches[0].startswith("train-")
    again = prepare_train_input(model, frame, data_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / CACHE_DIR).iterdir()) == caches  # reused, not rewritten
    _assert_features_equal(again.collator([0, 5, 9]), first.collator([0, 5, 9]))

    old = model.max_seq_length
    try:
        model.max_seq_length = 8
        prepare_train_input(model, frame, data_dir=tmp_path)
    finally:
        model.max_seq_length = old
    assert len(list((tmp_path / CACHE_DIR).iterdir())) == 2  # another tokenizer limit, another cache


def _duplicated_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Rows whose texts repeat within and across columns (positives shared, negatives reused as anchors)."""
    rng = np.random.default_rng(seed)
    anchors = [f"question {i % 180}" for i in range(n)]
    positives = [f"answer {int(rng.integers(0, 60))}" for _ in range(n)]
    negatives = [f"question {int(rng.integers(0, 180))}" if i % 3 == 0 else f"answer {i % 97}" for i in range(n)]
    return pd.DataFrame({"anchor": anchors, "positive": positives, "negative": negatives})


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("columns", [["anchor", "positive"], ["anchor", "positive", "negative"]])
def test_sampler_gives_the_library_no_duplicates_batches(drop_last: bool, columns: list[str]) -> None:
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    from pipelines.fastdata import NoDuplicatesIdBatchSampler, RowIndices, text_ids

    frame = _duplicated_frame()[columns]
    ds = datasets.Dataset.from_pandas(frame, preserve_index=False)
    g_lib, g_ours = torch.Generator(), torch.Generator()
    g_lib.manual_seed(7)
    g_ours.manual_seed(7)
    lib = NoDuplicatesBatchSampler(ds, batch_size=32, drop_last=drop_last, generator=g_lib, seed=7)
    ours = NoDuplicatesIdBatchSampler(
        RowIndices(len(frame)), 32, drop_last, generator=g_ours, seed=7, row_ids=text_ids([frame[c] for c in columns])
    )
    assert len(ours) == len(lib)
    for epoch in (0, 1, 2):
        lib.set_epoch(epoch)
        ours.set_epoch(epoch)
        assert list(ours) == list(lib), f"epoch {epoch}"
    # Built from the datasets.Dataset (as a trainer `batch_sampler` class), it computes the same ids.
    from_dataset = NoDuplicatesIdBatchSampler(ds, 32, drop_last, generator=torch.Generator(), seed=7)
    from_dataset.set_epoch(2)
    assert list(from_dataset) == list(lib)


@pytest.mark.parametrize("batch_size", [8, 32, 64])
def test_sampler_batches_hold_no_text_twice_across_all_columns(batch_size: int) -> None:
    from pipelines.fastdata import NoDuplicatesIdBatchSampler, RowIndices, text_ids

    frame = _duplicated_frame(n=400, seed=batch_size)
    cols = ["anchor", "positive", "negative"]
    sampler = NoDuplicatesIdBatchSampler(
        RowIndices(len(frame)),
        batch_size,
        False,
        generator=torch.Generator(),
        seed=1,
        row_ids=text_ids([frame[c] for c in cols]),
    )
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(itertools.chain.from_iterable(batches)) == list(range(len(frame)))  # every row once
        for batch in batches:
            seen: dict[str, int] = {}
            for row in batch:
                for text in set(frame.loc[row, cols]):
                    assert text not in seen, f"{text!r} in rows {seen.get(text)} and {row} of one batch"
                    seen[text] = row


def test_text_ids_equal_exactly_where_the_texts_are_equal() -> None:
    from pipelines.fastdata import text_ids

    ids = text_ids([["a", "b", "c"], ["b", "x", "a"]])
    assert ids.shape == (3, 2)
    assert ids[0, 0] == ids[2, 1] and ids[1, 0] == ids[0, 1]
    assert len({ids[0, 0], ids[1, 0], ids[2, 0], ids[1, 1]}) == 4


def test_dataloader_yields_the_library_features_for_the_library_batches(model: Any, recipe_pairs: pd.DataFrame) -> None:
    """The whole train input (sampler + collator through a DataLoader) against the library's."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator
    from torch.utils.data import DataLoader

    from pipelines.fastdata import prepare_train_input

    frame = _with_negatives(recipe_pairs)
    fast = prepare_train_input(model, frame)
    ds = datasets.Dataset.from_pandas(frame, preserve_index=False)
    generator = torch.Generator()
    generator.manual_seed(3)
    lib_loader = DataLoader(
        ds,
        batch_sampler=NoDuplicatesBatchSampler(ds, batch_size=16, drop_last=False, generator=generator, seed=3),
        collate_fn=SentenceTransformerDataCollator(preprocess_fn=model.preprocess),
    )
    ours = list(fast.dataloader(16, seed=3))
    ref = list(lib_loader)
    assert len(ours) == len(ref) >= 3
    for a, b in zip(ours, ref, strict=True):
        _assert_features_equal(a, b)


@pytest.mark.slow
def test_fast_and_library_paths_train_the_same_first_steps(
    tmp_path: Path, tiny_dataset_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same batches and features -> the same loss at each of the first steps (CPU is deterministic)."""
    from pipelines.config import ModelConfig, TrainingConfig
    from pipelines.training import train

    common = {
        "max_steps": 3,
        "per_device_batch_size": 16,
        "learning_rate": 1e-4,
        "optim": "adamw_torch",
        "logging_steps": 1,
        "eval_strategy": "no",
        "save_total_limit": 1,
    }
    model_cfg = ModelConfig(max_seq_length=32)
    library = train(
        tiny_dataset_dir,
        tmp_path / "library",
        model_cfg,
        TrainingConfig(**common, input_pipeline="library"),
        progress=False,
    )
    capsys.readouterr()
    fast = train(tiny_dataset_dir, tmp_path / "fast", model_cfg, TrainingConfig(**common), progress=True)
    out = capsys.readouterr().out

    assert library.settings["input_pipeline"] == "library"
    assert fast.settings["input_pipeline"] == "fast"
    assert fast.settings["attention_backend"] == "auto"
    assert fast.settings["attention_kernels"] == "torch-default"  # auto leaves CPU attention alone
    assert fast.settings["attn_implementation"] == "sdpa"
    assert fast.settings["pairs_seen"] == library.settings["pairs_seen"]
    assert [e["step"] for e in fast.loss_history] == [e["step"] for e in library.loss_history] == [1, 2, 3]
    for ours, ref in zip(fast.loss_history, library.loss_history, strict=True):
        assert ours["loss"] == pytest.approx(ref["loss"], abs=1e-6), ours["step"]

    # One progress line per logging step, no tqdm redraws, no raw log dicts.
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" |")[0] for line in lines] == ["step 1/3", "step 2/3", "step 3/3"]
    assert all("pairs/s" in line and "ETA" in line and "loss" in line for line in lines)
    assert "\r" not in out and "{'loss'" not in out
