"""Recipe-card questions that name a dish ("gazpacho", "vegan pad thai with tofu"), and the hand-written
``human`` questions kept whole against synthesized rows that ask the same thing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.catalog import load_catalog
from pipelines.config import CatalogConfig, load_config
from pipelines.human_eval import load_questions
from pipelines.schemas import PAIR_COLUMNS, normalize_text
from pipelines.synthesis import synthesize
from pipelines.synthesis.catalog_index import build_index
from pipelines.synthesis.names import Say
from pipelines.synthesis.recipe_card import card_need, correct_recipes, dish_of, need_phrase
from pipelines.validation import load_tokenizer, validate_pairs


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return load_catalog(CatalogConfig())


def test_dish_of_strips_the_cook() -> None:
    assert dish_of("Aarav's Pad Thai") == "Pad Thai"
    assert dish_of("Pad Thai") == "Pad Thai"


def test_a_dish_need_keeps_the_other_draws_and_every_recipe_of_the_dish_meets_it(catalog: pd.DataFrame) -> None:
    idx = build_index(catalog, 0.25)
    dishes = np.array([dish_of(n) for n in idx.names], dtype=object)
    seen_sizes = set()
    for i in range(0, len(idx.names), 7):
        plain = card_need(idx, i, np.random.default_rng([1, i]))
        named = card_need(idx, i, np.random.default_rng([1, i]), dish_probability=1.0)
        assert plain.dish is None and named.dish == dish_of(idx.names[i])
        # the same tag, time and meal; no cuisine (the dish says it); at most one of the plain need's ingredients
        assert (named.tag, named.minutes, named.meal) == (plain.tag, plain.minutes, plain.meal)
        assert named.cuisine is None and len(named.ingredients) <= 1
        assert set(named.ingredients) <= set(plain.ingredients)
        seen_sizes.add(len(named.ingredients))
        correct = correct_recipes(idx, named)
        assert i in correct and all(dishes[j] == named.dish for j in correct)
        # a dish alone: every recipe of the dish, its siblings by other cooks too
        if not (named.ingredients or named.tag or named.minutes):
            assert correct == [int(j) for j in np.flatnonzero(dishes == named.dish)] and len(correct) > 1
        phrase = need_phrase(idx, named, Say(np.random.default_rng(i), 0.0, unseen=False))
        head = f"{named.tag} {named.dish.lower()}" if named.tag else named.dish.lower()
        assert phrase.startswith(head), phrase
        assert all(ing in phrase for ing in named.ingredients), phrase
    assert seen_sizes == {0, 1}
    # probability 0 draws nothing more: the needs of a dataset without dish questions are unchanged
    assert card_need(idx, 3, np.random.default_rng(5), 0.0) == card_need(idx, 3, np.random.default_rng(5))


def test_synthesized_dish_questions_name_the_dish_and_count_its_siblings(catalog: pd.DataFrame) -> None:
    cfg = load_config("cpu").synthesis.model_copy(update={"card_dish_probability": 0.5})
    pairs = synthesize(catalog, cfg)
    cards = pairs[(pairs["intent"] == "recipe_card") & (pairs["slice"] != "human")]
    cards = cards[cards["group_id"].str.startswith("card:")]
    names = list(catalog["name"])
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants)
    by_dish = []
    for q, gid, correct in zip(cards["anchor"], cards["group_id"], cards["correct_recipes"], strict=True):
        i = names.index(gid.removeprefix("card:"))
        need = card_need(idx, i, np.random.default_rng([cfg.seed, 99, i]), cfg.card_dish_probability)
        if need.dish:
            assert need.dish.lower() in q.lower(), q
            by_dish.append((q, correct))
    # about half the recipes are asked for by dish, each with several wordings
    assert 0.3 < len(by_dish) / len(cards) < 0.7
    # some dish questions have more than one correct card: the same dish by another cook
    assert sum(len(c) > 1 for _, c in by_dish) > len(by_dish) // 4
    for q, correct in by_dish:
        assert len({dish_of(names[j]) for j in correct}) == 1, q


def test_no_synthesized_row_asks_a_human_question_and_the_human_slice_stays_whole(catalog: pd.DataFrame) -> None:
    """ "bibimbap" is a hand-written question and a dish question: the synthesized one goes, in every split."""
    full = load_config("cpu")
    cfg = full.synthesis.model_copy(update={"card_dish_probability": 1.0})
    pairs = synthesize(catalog, cfg, margin=0.1, answer_budget_chars=2 * full.model.max_seq_length)
    human = pairs["slice"] == "human"
    keys = normalize_text(pairs["anchor"])
    assert not (keys[~human].isin(set(keys[human]))).any()
    result = validate_pairs(
        pairs[[*PAIR_COLUMNS, "split"]],
        max_tokens=full.model.max_seq_length,
        tokenizer=load_tokenizer(full.model.base_model),
    )
    kept_human = pairs["slice"].to_numpy()[result.accepted_rows] == "human"
    assert kept_human.sum() == human.sum() == len(load_questions())
