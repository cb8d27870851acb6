"""The recipe-card intent: the need a question describes, the recipes that meet it, its phrase and the card."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipelines.synthesis.catalog_index import CatalogIndex
from pipelines.synthesis.names import Say
from pipelines.synthesis.wordings import QUICK_MINUTES, Template, fit_list, wording_data

CARD_DIET_ORDER = ("vegan", "vegetarian", "pescatarian", "gluten-free", "dairy-free")
"""Diet tags a recipe-card need may name, most specific first."""


@dataclass(frozen=True)
class Need:
    """What a recipe-card question asks for; fixed per group."""

    recipe: int
    ingredients: tuple[str, ...]
    cuisine: str | None
    tag: str | None
    minutes: int | None
    meal: str
    dish: str | None = None
    """The dish asked for by name ("gazpacho", "pad thai with shrimp"); every recipe of that dish meets it."""


def dish_of(name: str) -> str:
    """``"Aarav's Pad Thai"`` -> ``"Pad Thai"`` (the bundled catalog names each recipe after its cook)."""
    return name.split("'s ", 1)[1] if "'s " in name else name


def card_need(idx: CatalogIndex, i: int, rng: np.random.Generator, dish_probability: float = 0.0) -> Need:
    """The need a recipe-card question describes, drawn for recipe ``i``. With ``dish_probability`` it names
    the recipe's dish, as people type a dish into a search box: the dish alone or with one of its ingredients,
    a diet or a time (never a cuisine: the dish says it); the other draws are the same either way."""
    data = wording_data()
    n_recipes = len(idx.names)
    core = [x for x in idx.ingredient_lists[i][:4] if len(idx.by_ingredient[x]) <= max(3, n_recipes // 20)]
    core = core or idx.ingredient_lists[i][:1]
    tags = [t for t in CARD_DIET_ORDER if t in idx.tag_lists[i]][:2]
    tag = tags[int(rng.integers(len(tags)))] if tags and rng.random() < 0.5 else None
    cuisine = idx.cuisine_of[i] if rng.random() < 0.6 else None
    fits = [m for m in QUICK_MINUTES if m >= idx.times[i]]
    minutes = fits[0] if fits and idx.times[i] <= 45 and rng.random() < 0.5 else None
    # Ingredients alone say little: name two of them when nothing else narrows the need.
    k = min(len(core), 2 if not (tag or cuisine or minutes) else int(rng.integers(1, 3)))
    ings = tuple(core[j] for j in sorted(rng.choice(len(core), size=k, replace=False)))
    meals = data["card_meals"]
    meal = meals[int(rng.integers(len(meals)))]
    if dish_probability and rng.random() < dish_probability:
        return Need(i, ings[: int(rng.integers(0, 2))], None, tag, minutes, meal, dish_of(idx.names[i]))
    return Need(i, ings, cuisine, tag, minutes, meal)


def correct_recipes(idx: CatalogIndex, need: Need) -> list[int]:
    """Every recipe that meets the need (the need's own recipe among them)."""
    mask = np.ones(len(idx.names), dtype=bool)
    for ing in need.ingredients:
        hit = np.zeros(len(idx.names), dtype=bool)
        hit[idx.by_ingredient.get(ing, [])] = True
        mask &= hit
    if need.cuisine:
        mask &= idx.cuisine_of == need.cuisine
    if need.tag:
        mask &= idx.has_tag[need.tag]
    if need.minutes:
        mask &= idx.times <= need.minutes
    if need.dish:
        mask &= np.array([dish_of(n) == need.dish for n in idx.names], dtype=bool)
    return [int(j) for j in np.flatnonzero(mask)]


def need_phrase(idx: CatalogIndex, need: Need, say: Say) -> str:
    data = wording_data()
    ings = " and ".join(say(x, idx.aliases.get(x)) for x in need.ingredients)
    if need.dish:
        tag = say(need.tag, idx.diets.get(need.tag)) if need.tag else None
        phrase = " ".join(w for w in (tag, need.dish.lower()) if w) + (f" with {ings}" if ings else "")
        if need.minutes:
            t = say(f"{need.minutes} minutes", idx.time_names.get(need.minutes))
            phrase += say.pick((" ready in {t}", " in under {t}")).format(t=t)
        return phrase
    if not (need.cuisine or need.tag or need.minutes):
        phrases = data["card_ingredient_phrases"]
        return f"{need.meal} " + say.pick(phrases).format(ings=ings)
    tag = say(need.tag, idx.diets.get(need.tag)) if need.tag else None
    words = [tag, need.cuisine, need.meal]
    if need.minutes and need.minutes <= 30 and say.uniform() < 0.4:
        words.insert(0, say.pick(data["card_quick_words"]))
    phrase = " ".join(w for w in words if w) + f" with {ings}"
    if need.minutes:
        t = say(f"{need.minutes} minutes", idx.time_names.get(need.minutes))
        phrase += say.pick((" ready in {t}", " in under {t}", " that takes {t} or less")).format(t=t)
    return phrase


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def fix_articles(question: str) -> str:
    """``a`` before a vowel becomes ``an`` (``a Italian dinner`` -> ``an Italian dinner``)."""
    return _A_BEFORE_VOWEL.sub(r"\1n ", question)


def card_question(idx: CatalogIndex, need: Need, template: Template, say: Say) -> str:
    """A recipe-card question: ``template`` filled with the need's phrase."""
    return fix_articles(template.fill(need=need_phrase(idx, need, say)))


CARD_BUDGET_FACTOR = 1.4
"""Cards may use 1.4x the answer budget (``2 x model.max_seq_length`` characters): their words are common, a
token covers about 3.2 characters of a card's ingredients. With the bundled catalog, 428 of the 429 cards are
whole at 96 tokens (218 characters, 66 tokens at the median) and none passes the limit at 48, 64 or 96 tokens;
1.5x would put 5% of the cards past it at 48 and 64."""


def card_answer(idx: CatalogIndex, i: int, budget: int) -> str:
    """``Name: cuisine, N min, tags. Ingredients: ...``: the recipe's one document, the same whatever the
    question asks, with every ingredient the budget holds in the recipe's own order, as the search document
    (:func:`pipelines.search.card_text`) lists them all. A card that put the asked ingredients first would
    teach the model to look for them there, which no search document does; one that named only some
    ingredients would be judged correct for a question about one it does not show."""
    budget = int(budget * CARD_BUDGET_FACTOR)
    tags = idx.tag_lists[i]
    tag_text = fit_list("", tags, "", budget // 3) if tags else "no diet tags"
    head = f"{idx.names[i]}: {idx.cuisine_of[i]}, {idx.times[i]} min, {tag_text}. Ingredients: "
    if len(head) + 12 > budget:  # a tight budget: the diet tags go first
        head = f"{idx.names[i]}: {idx.cuisine_of[i]}, {idx.times[i]} min. Ingredients: "
    ingredients = list(dict.fromkeys(idx.ingredient_lists[i]))
    return fit_list(head, ingredients, ".", budget)
