"""Hard negatives: mined with the base model, never a correct answer, cached; file contracts with the
new columns (``negative`` in train/validation, ``intent`` and ``slice`` in eval)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest

from pipelines import negatives as neg
from pipelines.catalog import load_catalog
from pipelines.config import load_config
from pipelines.datasets import build_dataset
from pipelines.metrics import SLICES
from pipelines.schemas import EvalFileSchema, TrainFileSchema
from pipelines.synthesis import ALIAS_INTENT, EXTRA_EVAL_SLICES, is_correct_answer, synthesize
from pipelines.synthesis.pairs import synonym_classes


@pytest.fixture(scope="module")
def mined(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, object]:
    home = tmp_path_factory.mktemp("home")
    cfg = load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(home)},
            "synthesis": {"hard_negatives": True, "n_train": 240, "n_eval": 60},
        },
    )
    out = home / "ds"
    return out, build_dataset(cfg, out), cfg


def test_train_and_validation_have_a_negative_that_is_never_a_correct_answer(mined: tuple) -> None:
    out, manifest, cfg = mined
    pairs = synthesize(load_catalog(cfg.catalog), cfg.synthesis, margin=0.01, answer_budget_chars=96)
    named = {}
    for text, intent, recipes in zip(pairs["positive"], pairs["intent"], pairs["answer_recipes"], strict=True):
        named.setdefault(text, (intent, recipes))
    correct = {q: c for q, c in zip(pairs["anchor"], pairs["correct_recipes"], strict=True)}
    for split in ("train", "validation"):
        df = pd.read_parquet(out / f"{split}.parquet")
        extra = ["slice", "relevant"] if split == "validation" else []
        assert list(df.columns) == ["anchor", "positive", "negative", "intent", "group_id", *extra]
        assert df["negative"].notna().all() and (df["negative"] != df["positive"]).all()
        # negatives come from the same split's answers
        assert set(df["negative"]) <= set(df["positive"])
        for q, intent, negative in zip(df["anchor"], df["intent"], df["negative"], strict=True):
            other_intent, recipes = named[negative]
            assert not is_correct_answer(intent, correct[q], other_intent, recipes), (q, negative)
    report = manifest["hard_negatives"]
    assert report["by_split"]["train"]["rows"] == manifest["counts"]["train"]["total"]
    assert manifest["counts"]["train"]["with_negative"] == manifest["counts"]["train"]["total"]
    assert "mine_negatives_s" in manifest["timings"]


@pytest.fixture(scope="module")
def with_alias_pairs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    home = tmp_path_factory.mktemp("home")
    cfg = load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(home)},
            "synthesis": {"hard_negatives": True, "n_train": 240, "n_eval": 60, "alias_pairs": 0.5, "glossary": True},
        },
    )
    build_dataset(cfg, home / "ds")
    return pd.read_parquet(home / "ds" / "train.parquet")


def test_a_question_never_takes_a_bare_name_as_its_negative(with_alias_pairs: pd.DataFrame) -> None:
    df = with_alias_pairs
    alias = df["intent"] == ALIAS_INTENT
    assert alias.sum() > 100 and (~alias).sum() > 100
    names = set(df.loc[alias, "anchor"]) | set(df.loc[alias, "positive"])
    answers = set(df.loc[~alias, "positive"])
    assert df.loc[~alias, "negative"].isin(answers).all()
    assert not df.loc[~alias, "negative"].isin(names - answers).any()


def test_an_alias_pair_takes_a_name_outside_its_synonym_class(with_alias_pairs: pd.DataFrame) -> None:
    df = with_alias_pairs[with_alias_pairs["intent"] == ALIAS_INTENT]
    assert df["negative"].isin(set(df["positive"])).all()
    cls = synonym_classes(zip(df["anchor"], df["positive"], strict=True))
    for anchor, positive, negative, group in zip(df["anchor"], df["positive"], df["negative"], df["group_id"]):
        assert negative.casefold() != anchor.casefold(), (anchor, negative)
        # within the rows drawn, and within the whole table the rows were drawn from (group_id)
        assert cls[negative] != cls[anchor], (anchor, positive, negative)
        assert negative not in set(df.loc[df["group_id"] == group, "positive"]), (anchor, negative, group)


def test_synonym_classes_follow_chains_of_pairs() -> None:
    cls = synonym_classes([("aubergine", "eggplant"), ("brinjal", "aubergine"), ("shrimp", "prawns"), ("x", "x")])
    assert cls["brinjal"] == cls["eggplant"] == cls["aubergine"] == "aubergine"
    assert cls["prawns"] == cls["shrimp"] == "prawns" != cls["eggplant"]
    assert cls["x"] == "x"


def test_mining_is_cached_by_dataset_and_base_model(mined: tuple, tmp_path: Path) -> None:
    out, manifest, cfg = mined
    again = build_dataset(cfg, tmp_path / "again")
    assert all(r["cached"] for r in again["hard_negatives"]["by_split"].values())
    assert not any(r["cached"] for r in manifest["hard_negatives"]["by_split"].values())
    assert again["digests"] == manifest["digests"]
    other = neg.cache_key(["q"], ["a"], "other-model", 10)
    assert other != neg.cache_key(["q"], ["a"], cfg.model.base_model, 10)


def test_a_correct_candidate_is_skipped_and_a_random_answer_fills_in(monkeypatch: pytest.MonkeyPatch) -> None:
    split = pd.DataFrame({"anchor": ["q0", "q1", "q2"], "positive": ["a0", "a1", "a2"]})
    monkeypatch.setattr(neg, "mine_candidates", lambda *a, **k: [["a1", "a2"], ["a0"], []])
    correct = {(0, "a1"), (1, "a0")}  # a1 also answers q0; a0 also answers q1
    negatives, report = neg.add_negatives(
        split, lambda row, text: (row, text) in correct, base_model="m", model=lambda: None, candidates=2, seed=1
    )
    assert negatives[0] == "a2"  # the first candidate that is not a correct answer
    assert negatives[1] == "a2"  # every candidate correct: a random answer that is not
    assert negatives[2] in ("a0", "a1")
    assert report["fallback_random"] == 2 and report["rows"] == 3


def test_eval_has_intent_and_the_three_slices(mined: tuple) -> None:
    out, manifest, _ = mined
    ev = pd.read_parquet(out / "eval.parquet")
    EvalFileSchema.validate(ev)
    assert list(ev.columns) == ["anchor", "positive", "intent", "group_id", "slice", "relevant"]
    assert set(ev["slice"]) == set(SLICES) - set(EXTRA_EVAL_SLICES)  # smoke leaves the extra slices out
    assert manifest["counts"]["eval"]["by_slice"] == ev["slice"].value_counts().sort_index().to_dict()
    assert ((ev["slice"] == "recipe_card") == (ev["intent"] == "recipe_card")).all()


def test_file_contracts_reject_with_their_reasons() -> None:
    ok = pd.DataFrame({"anchor": ["q"], "positive": ["a"], "negative": ["b"], "intent": ["i"], "group_id": ["g"]})
    TrainFileSchema.validate(ok)
    TrainFileSchema.validate(ok.drop(columns=["negative"]))
    for bad, reason in [
        (ok.assign(negative=["A!"]), "negative_is_positive"),
        (ok.assign(negative=["  "]), "blank"),
        (ok.assign(negative=[3]), "blank"),
    ]:
        with pytest.raises(pa.errors.SchemaErrors) as exc:
            TrainFileSchema.validate(bad, lazy=True)
        assert reason in set(exc.value.failure_cases["check"].astype(str))
    ev = pd.DataFrame({"anchor": ["q"], "positive": ["a"], "intent": ["i"], "group_id": ["g"], "slice": [""]})
    with pytest.raises(pa.errors.SchemaErrors, match="blank"):
        EvalFileSchema.validate(ev, lazy=True)
    with pytest.raises(pa.errors.SchemaErrors):
        EvalFileSchema.validate(ev.assign(extra=[1]), lazy=True)  # strict: no unknown column
