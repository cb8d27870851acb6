"""One pair's text per intent: the answer (and the recipes it names), the question and the group id."""

from __future__ import annotations

import numpy as np

from pipelines.synthesis.catalog_index import CatalogIndex
from pipelines.synthesis.names import Say
from pipelines.synthesis.recipe_card import Need, card_answer, card_question
from pipelines.synthesis.wordings import Template, fit_list


def _kind_phrase(cuisine: str | None, tag: str | None) -> str:
    words = [w for w in (tag, cuisine.title() if cuisine else None) if w]
    return (" ".join(words) + " ") if words else ""


def answer_for(
    idx: CatalogIndex,
    intent: str,
    subject: tuple,  # type: ignore[type-arg]
    budget: int,
) -> tuple[str, tuple[int, ...]]:
    """The answer and the recipes it names (``()`` for "no recipes" and per-recipe facts)."""
    if intent == "ingredient_pair":
        a, b = subject
        hits = idx.pair_hits.get((a, b), [])
        if not hits:
            return f"No recipes found with these {a} and {b}!", ()
        return fit_list(f"Recipes with {a} and {b}: ", [idx.names[i] for i in hits], ".", budget), tuple(hits)
    if intent == "diet_tags":
        (i,) = subject
        tags = idx.tag_lists[i]
        if not tags:
            return f"{idx.names[i]} has no special diet tags.", ()
        return fit_list(f"{idx.names[i]} is ", list(tags), ".", budget), ()
    if intent == "recipe_ingredients":
        (i,) = subject
        return fit_list(f"{idx.names[i]} uses ", idx.ingredient_lists[i], ".", budget), ()
    if intent == "diet_and_ingredient":
        tag, ing = subject
        hits = [i for i in idx.by_ingredient.get(ing, ()) if idx.has_tag[tag][i]]
        if not hits:
            return f"No {tag} recipes found with {ing}!", ()
        text = fit_list(f"{tag.capitalize()} recipes with {ing}: ", [idx.names[i] for i in hits], ".", budget)
        return text, tuple(hits)
    if intent == "quick_recipes":
        minutes, cuisine, tag = subject
        mask = idx.times <= minutes
        if cuisine:
            mask &= idx.cuisine_of == cuisine
        if tag:
            mask &= idx.has_tag[tag]
        hit_rows = sorted(np.flatnonzero(mask), key=lambda i: (idx.times[i], idx.names[i]))
        kind = _kind_phrase(cuisine, tag)
        if not hit_rows:
            return f"No {kind}recipes ready in {minutes} minutes or less!", ()
        items = [f"{idx.names[i]} ({idx.times[i]} min)" for i in hit_rows]
        lead = f"{kind}recipes ready in {minutes} minutes or less: "
        return fit_list(lead[0].upper() + lead[1:], items, ".", budget), tuple(int(i) for i in hit_rows)
    if intent == "recipe_card":
        (i,) = subject
        return card_answer(idx, i, budget), (i,)
    raise ValueError(f"unknown intent {intent!r}")


def question_for(
    idx: CatalogIndex, intent: str, subject: tuple, template: Template, say: Say, need: Need | None = None
) -> str:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        a, b = subject
        return template.fill(a=say(a, idx.aliases.get(a)), b=say(b, idx.aliases.get(b)))
    if intent in ("diet_tags", "recipe_ingredients"):
        return template.fill(name=idx.names[subject[0]])
    if intent == "diet_and_ingredient":
        tag, ing = subject
        return template.fill(tag=say(tag, idx.diets.get(tag)), ing=say(ing, idx.aliases.get(ing)))
    if intent == "quick_recipes":
        minutes, cuisine, tag = subject
        kind = _kind_phrase(cuisine, say(tag, idx.diets.get(tag)) if tag else None)
        return template.fill(kind=kind, time=say(f"{minutes} minutes", idx.time_names.get(minutes)))
    if intent == "recipe_card":
        assert need is not None
        return card_question(idx, need, template, say)
    raise ValueError(f"unknown intent {intent!r}")


def group_id_for(idx: CatalogIndex, intent: str, subject: tuple) -> str:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        return f"pair:{subject[0]}|{subject[1]}"
    if intent in ("diet_tags", "recipe_ingredients"):
        return f"recipe:{idx.names[subject[0]]}"
    if intent == "recipe_card":
        return f"card:{idx.names[subject[0]]}"
    if intent == "diet_and_ingredient":
        return f"diet:{subject[0]}|{subject[1]}"
    return "quick:{}|{}|{}".format(*(s or "any" for s in subject))
