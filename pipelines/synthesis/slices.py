"""The extra eval slices (``unseen_ingredient``, ``human``, ``other_catalog``), the hand-written validation slice
(``human_dev``), the recipe cards relevant to each row of a question with many answers,
and which answers are correct for a question."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import SynthesisConfig
from pipelines.errors import InputError
from pipelines.synthesis.catalog_index import CatalogIndex
from pipelines.synthesis.names import Say, heldout_forms, name_variants, replace_names
from pipelines.synthesis.recipe_card import card_answer, fix_articles
from pipelines.synthesis.render import answer_for, group_id_for
from pipelines.synthesis.wordings import templates, wording_data, wordings

EXTRA_EVAL_SLICES = ("unseen_ingredient", "human", "other_catalog")
"""Eval slices outside the per-intent targets: written in full, after every targeted eval row."""
VALIDATION_SLICE = "human_dev"
"""The hand-written validation questions: written in full into the validation split."""
HAND_SLICES = ("human", VALIDATION_SLICE)
"""The slices of hand-written questions; no synthesized row asks one of their questions."""


def unseen_ingredient_rows(
    idx: CatalogIndex, cfg: SynthesisConfig, rng: np.random.Generator, budget: int
) -> list[tuple[Any, ...]]:
    """Recipe-card questions that name an ``unseen_ingredient`` by each of its alternate names, alone and
    with a cuisine; correct: every recipe with the ingredient (and the cuisine)."""
    held = idx.unseen_ingredients
    pool = list(templates("recipe_card", cfg.heldout_fraction))
    data = wording_data()
    say = Say(rng, 0.0, unseen=False)
    out: list[tuple[Any, ...]] = []
    for ing in sorted(held):
        recipes = idx.by_ingredient[ing]
        cuisines = sorted({idx.cuisine_of[i] for i in recipes})
        for alt in idx.aliases[ing].unseen:
            for cuisine in (None, say.pick(cuisines)):
                correct = [i for i in recipes if cuisine is None or idx.cuisine_of[i] == cuisine]
                meal = say.pick(data["card_meals"])
                if cuisine is None:
                    need = f"{meal} " + say.pick(data["card_ingredient_phrases"]).format(ings=alt)
                else:
                    need = f"{cuisine} {meal} with {alt}"
                question = fix_articles(say.pick(pool).fill(need=need))
                group = f"unseen_ingredient:{ing}|{alt}|{cuisine or 'any'}"
                cards = tuple(card_answer(idx, i, budget) for i in correct)
                out.append((question, cards[0], group, "unseen_ingredient", (correct[0],), tuple(correct), cards))
    return out


def other_catalog_rows(
    idx: CatalogIndex, cfg: SynthesisConfig, rng: np.random.Generator, taken: set[str], budget: int
) -> list[tuple[Any, ...]]:
    """Ingredient-pair questions asked of a catalog that names things its own way, in a dense corpus.

    Every pair among ``n = cfg.other_catalog`` ingredients, so each answer has ``2 * (n - 2)`` near-twins
    that share one of its ingredients. The answers name each ingredient by one fixed alternate name, as
    another catalog would ("No recipes found with these aubergine and scallions!"); each question names
    it by any other of its names, ours included ("eggplant and spring onion ideas"), in held-out
    wordings. So a model that learned a one-way rewrite into our catalog's names, rather than that the
    names are the same thing, ranks a twin first. The ingredients are ones with an alternate name other
    than a plural or singular form; a pair already used by any split (``taken`` group ids) is skipped."""
    pool = wordings("ingredient_pair", True, cfg.heldout_fraction)
    others = {ing: names for ing in sorted(idx.by_ingredient) if (names := _other_names(idx, ing))}
    named = list(others)
    if not pool or len(named) < 3:
        return []
    say = Say(rng, 0.0, unseen=False)
    picked = sorted(named[int(k)] for k in rng.permutation(len(named))[: cfg.other_catalog])
    theirs: dict[str, str] = {}
    asked: dict[str, list[str]] = {}
    for ing in picked:
        theirs[ing] = say.pick(others[ing])
        asked[ing] = [n for n in (ing, *idx.aliases[ing].seen, *idx.aliases[ing].unseen) if n != theirs[ing]]
    out: list[tuple[Any, ...]] = []
    for n, a in enumerate(picked):
        for b in picked[n + 1 :]:
            gid = group_id_for(idx, "ingredient_pair", (a, b))
            if gid in taken:
                continue
            text, recipes = answer_for(idx, "ingredient_pair", (a, b), budget)
            text = replace_names(text, {a: theirs[a], b: theirs[b]})
            first, second = (b, a) if say.uniform() < 0.5 else (a, b)
            question = say.pick(pool).fill(a=say.pick(asked[first]), b=say.pick(asked[second]))
            out.append((question, text, gid, "other_catalog", recipes, recipes, ()))
    return out


def _other_names(idx: CatalogIndex, ing: str) -> list[str]:
    """An ingredient's alternate names, without its plural/singular forms (a catalog writes "khumani" for
    "apricots", never "mirins" for "mirin")."""
    names = idx.aliases.get(ing)
    forms = set(name_variants(ing))
    return [n for n in (*names.seen, *names.unseen) if n not in forms] if names else []


def human_rows(
    catalog: pd.DataFrame, idx: CatalogIndex, budget: int, slice_name: str = "human"
) -> list[tuple[Any, ...]]:
    """The hand-written questions judged against this catalog: ``human`` (eval,
    ``pipelines/data/human_questions.jsonl``) or ``human_dev`` (validation, ``dev_questions.jsonl``). A
    question the catalog cannot judge (a name it lacks, no recipe meets it) is left out."""
    from pipelines.human_eval import judge, load_dev_questions, load_questions

    if slice_name not in HAND_SLICES:
        raise ValueError(f"no hand-written slice {slice_name!r}: {', '.join(HAND_SLICES)}")
    eval_only = names_eval_only(idx) if slice_name == VALIDATION_SLICE else None
    out: list[tuple[Any, ...]] = []
    for no, q in enumerate(load_questions() if slice_name == "human" else load_dev_questions()):
        if eval_only is not None and eval_only(q["q"]):
            continue  # held-out names are eval's alone: validation never asks by one
        try:
            (correct,) = judge(catalog, [q])
        except InputError:
            continue
        cards = tuple(card_answer(idx, i, budget) for i in correct)
        out.append((q["q"], cards[0], f"{slice_name}:{no}", slice_name, (correct[0],), tuple(correct), cards))
    return out


def names_eval_only(idx: CatalogIndex) -> Callable[[str], bool]:
    """Whether a text names an ingredient by a held-out (eval-only) name, as a word, once every name that
    training may use (catalog names, training alternates, recipe names) is taken out: "lady finger with
    onions" does when "lady finger" is held out; "fresh coriander" does not when "coriander" is a training
    name. A validation question that does is left out, so choices made on validation never see those names."""
    held = heldout_forms(idx.aliases)
    allowed = {n.lower() for ing, names in idx.aliases.items() for n in (ing, *names.seen)} | set(idx.by_ingredient)
    allowed |= {n.lower() for n in idx.names}
    if not held:
        return lambda text: False
    strip = re.compile("|".join(re.escape(n) for n in sorted(allowed, key=len, reverse=True)))
    named = re.compile(
        "|".join(rf"(?<![\w-]){re.escape(n.lower())}(?![\w-])" for n in sorted(held, key=len, reverse=True))
    )
    return lambda text: bool(named.search(strip.sub(" ", text.lower())))


def relevant_cards(
    intents: Sequence[str],
    positives: Sequence[str],
    answers: Sequence[Any],
    correct: Sequence[Any],
    correct_cards: Sequence[Any],
) -> list[list[str]]:
    """Per eval row: every recipe card in the eval (a positive, or the card of a correct recipe of an extra
    slice's question) whose recipe meets a recipe-card question's need; ``[]`` for other intents (their
    positive only). The cards of every correct recipe join the eval corpus, so it is as dense as the
    catalog around each answer."""
    cards: dict[int, list[str]] = defaultdict(list)
    for intent, text, named, ok, texts in zip(intents, positives, answers, correct, correct_cards, strict=True):
        found = [(int(named[0]), text)] if intent == "recipe_card" and len(named) == 1 else []
        for i, card in [*found, *zip(ok, texts, strict=False)]:
            if card not in cards[int(i)]:
                cards[int(i)].append(card)
    out: list[list[str]] = []
    for intent, text, ok in zip(intents, positives, correct, strict=True):
        if intent != "recipe_card":
            out.append([])
            continue
        texts = [text, *(t for i in ok for t in cards.get(int(i), ()))]
        out.append(list(dict.fromkeys(texts)))
    return out


def is_correct_answer(
    question_intent: str, correct: Sequence[int], answer_intent: str, answer_recipes: Sequence[int]
) -> bool:
    """Whether an answer (of another question) also answers this question correctly.

    Listing answers (ingredient pairs, diet + ingredient, quick recipes) are correct for a listing
    question when they name exactly its recipes, and for a recipe-card question when they name one of
    the recipes that meet its need; a recipe card is correct when its recipe meets the need (or is one
    of the recipes a listing question asks for). Per-recipe facts (diet tags, ingredient lists) and
    "no recipes" answers are correct only as the question's own answer (same text).
    """
    if not correct or not answer_recipes:
        return False
    ok = set(correct)
    if question_intent == "recipe_card":
        return bool(ok & set(answer_recipes))
    if answer_intent == "recipe_card":
        return set(answer_recipes) <= ok
    return set(answer_recipes) == ok
