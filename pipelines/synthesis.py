"""Seeded question/response synthesis from a recipe catalog, split by group.

Every pair has a *subject* -- its ``group_id``:

===================  ====================================  =======================================
intent               group_id (the subject)                 answer
===================  ====================================  =======================================
ingredient_pair      ``pair:<a>|<b>`` (sorted ingredients)  matching recipes, or "No recipes found
                                                            with these A and B!"
diet_tags            ``recipe:<name>``                      the recipe's diet tags, naming the recipe
recipe_ingredients   ``recipe:<name>``                      the recipe's ingredients
diet_and_ingredient  ``diet:<tag>|<ingredient>``            matching recipes or "No <tag> recipes ..."
quick_recipes        ``quick:<minutes>|<cuisine>|<tag>``    recipes ready in time, or "No ... !"
===================  ====================================  =======================================

Groups are assigned to exactly one split (train, validation or eval) *before* any question is
written, so no subject is shared between splits; a group yields several questions only through
different wordings (each intent has at least 20), and every question of a group has the same answer.

Sizes: ``n_train`` pairs (train + the validation slice) and ``n_eval`` pairs, mixed by
``intent_weights`` (largest-remainder rounding). ``synthesize(..., margin=...)`` writes a few extra
pairs per (split, intent) *after* the targeted ones so that rows rejected by validation can be
replaced by :func:`pipelines.datasets.build_dataset` without a second pass.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import SynthesisConfig
from pipelines.errors import InputError
from pipelines.schemas import SPLITS

INTENTS: tuple[str, ...] = (
    "ingredient_pair",
    "diet_tags",
    "recipe_ingredients",
    "diet_and_ingredient",
    "quick_recipes",
)

# --- wordings -------------------------------------------------------------------------------------

PAIR_QUESTIONS = (
    "What recipes can be made using {a} and {b}?",
    "Can you provide recipe ideas with {a} and {b}?",
    "What are some recipes that utilize {a} and {b} effectively?",
    "What recipes incorporate {a} and {b} into meals?",
    "What dishes can be created with {a} and {b}?",
    "Can you suggest dishes where {a} and {b} are key?",
    "Can you provide me with meal ideas using {a} and {b}?",
    "What are the culinary uses of {a} and {b}?",
    "What are some ways to use {a} and {b} in recipes?",
    "What recipes are there with {a} and {b}?",
    "What are some ideas for dishes with {a} and {b}?",
    "What culinary preparations can be made with {a} and {b}?",
    "Can you provide meal suggestions involving {a} and {b}?",
    "What recipes incorporate {a} and {b} in their ingredients?",
    "I have {a} and {b} at home. What can I cook?",
    "Which recipes call for both {a} and {b}?",
    "Any dish ideas that combine {a} and {b}?",
    "What can I make with {a} and {b}?",
    "Suggest a recipe that uses {a} together with {b}.",
    "How can I cook a meal with {a} and {b}?",
    "Which dishes feature {a} alongside {b}?",
    "Got {a} and {b} in the kitchen - any recipes?",
)
DIET_TAG_QUESTIONS = (
    "What diet tags are relevant to {name} ?",
    "Which diets does {name} fit?",
    "Is {name} vegetarian, vegan or gluten-free?",
    "What dietary labels apply to {name}?",
    "Can someone on a special diet eat {name}?",
    "Tell me the diet tags for {name}.",
    "What diets is {name} suitable for?",
    "Which dietary restrictions does {name} meet?",
    "Is {name} suitable for vegans or vegetarians?",
    "What are the diet tags of {name}?",
    "Does {name} fit a gluten-free or dairy-free diet?",
    "Which dietary categories does {name} belong to?",
    "What kind of diets work with {name}?",
    "List the dietary tags for {name}.",
    "Is {name} okay for someone avoiding meat, dairy or gluten?",
    "What diet labels should I know about for {name}?",
    "For which diets would {name} be a good choice?",
    "Could you tell me which diets {name} is compatible with?",
    "How is {name} tagged for diets?",
    "Which diet labels does the recipe {name} carry?",
    "Diet-wise, what is {name} suitable for?",
)
INGREDIENT_QUESTIONS = (
    "What ingredients are in {name}?",
    "What goes into {name}?",
    "What do I need to make {name}?",
    "List the ingredients for {name}.",
    "Which ingredients does {name} use?",
    "What is {name} made of?",
    "What should I buy to cook {name}?",
    "Can you give me the ingredient list for {name}?",
    "What are the main ingredients of {name}?",
    "Which ingredients are needed for {name}?",
    "What's in {name}?",
    "What do I need from the store for {name}?",
    "Tell me what ingredients {name} calls for.",
    "What are the components of {name}?",
    "Which items go into making {name}?",
    "What ingredients does the recipe {name} require?",
    "How is {name} put together - what ingredients?",
    "What should be in my pantry to prepare {name}?",
    "Could you list what {name} contains?",
    "Give me the shopping list for {name}.",
    "What does {name} include?",
)
DIET_INGREDIENT_QUESTIONS = (
    "What {tag} recipes can I make with {ing}?",
    "Can you suggest a {tag} dish using {ing}?",
    "Are there any {tag} recipes that include {ing}?",
    "I eat {tag}. What can I cook with {ing}?",
    "Which {tag} meals use {ing}?",
    "Give me {tag} recipe ideas with {ing}.",
    "What {tag} dishes feature {ing}?",
    "Any {tag} options that use {ing}?",
    "Which recipes with {ing} are {tag}?",
    "What can I cook with {ing} that is {tag}?",
    "Show me {tag} recipes containing {ing}.",
    "I need a {tag} recipe with {ing}. Any ideas?",
    "What {tag} food can be made from {ing}?",
    "Which dishes are {tag} and use {ing}?",
    "Suggest {tag} cooking ideas for {ing}.",
    "Is there a {tag} recipe that calls for {ing}?",
    "What are some {tag} ways to cook with {ing}?",
    "Recommend a {tag} meal built around {ing}.",
    "Do you have {tag} recipes featuring {ing}?",
    "Looking for {tag} dishes with {ing} - what do you have?",
    "What {tag} recipes include {ing} as an ingredient?",
)
QUICK_QUESTIONS = (
    "What {kind}recipes can I make in {m} minutes or less?",
    "Give me quick {kind}recipes ready within {m} minutes.",
    "Which {kind}dishes take at most {m} minutes?",
    "I only have {m} minutes. What {kind}recipes can I cook?",
    "Any fast {kind}meals I can finish in {m} minutes?",
    "What {kind}food can be on the table within {m} minutes?",
    "Suggest {kind}recipes that take no more than {m} minutes.",
    "Which {kind}recipes are done in {m} minutes?",
    "What can I cook in {m} minutes? Looking for {kind}recipes.",
    "List {kind}dishes with a total time of {m} minutes or less.",
    "Show me {kind}recipes I can prepare in under {m1} minutes.",
    "What are some speedy {kind}recipes within {m} minutes?",
    "I am in a hurry: {kind}recipes ready in {m} minutes?",
    "Which quick {kind}meals need {m} minutes at most?",
    "Recommend {kind}dishes that cook in {m} minutes or less.",
    "What {kind}recipes fit into {m} minutes?",
    "Can you find {kind}recipes that take {m} minutes max?",
    "Need a {kind}meal in {m} minutes - what are my options?",
    "What weeknight {kind}recipes take {m} minutes or less?",
    "Which {kind}recipes have a total time within {m} minutes?",
    "Short on time: which {kind}dishes are ready within {m} minutes?",
)

WORDINGS: dict[str, tuple[str, ...]] = {
    "ingredient_pair": PAIR_QUESTIONS,
    "diet_tags": DIET_TAG_QUESTIONS,
    "recipe_ingredients": INGREDIENT_QUESTIONS,
    "diet_and_ingredient": DIET_INGREDIENT_QUESTIONS,
    "quick_recipes": QUICK_QUESTIONS,
}
QUICK_MINUTES = (10, 15, 20, 25, 30, 40, 45, 60, 90)
MATCHING_PAIR_SHARE = 0.3
"""Share of ingredient-pair questions whose answer lists recipes (the rest: "No recipes found ...")."""


# --- targets --------------------------------------------------------------------------------------


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    s = sum(weights.values())
    raw = {k: total * w / s for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (out[k] - raw[k], INTENTS.index(k)))[: total - sum(out.values())]:
        out[k] += 1
    return out


def split_targets(cfg: SynthesisConfig) -> dict[str, dict[str, int]]:
    """Pairs wanted per split and intent: train + validation == n_train, eval == n_eval."""
    given: dict[str, float] = {str(k): float(v) for k, v in cfg.intent_weights.items()}
    weights = {k: float(given.get(k, 0.0)) for k in INTENTS}
    train_all = _largest_remainder(cfg.n_train, weights)
    evals = _largest_remainder(cfg.n_eval, weights)
    val = {k: round(n * cfg.validation_fraction) if weights[k] > 0 else 0 for k, n in train_all.items()}
    return {
        "train": {k: train_all[k] - val[k] for k in INTENTS},
        "validation": val,
        "eval": evals,
    }


def margin_for(target: int, margin: float) -> int:
    return 0 if target == 0 or margin <= 0 else math.ceil(target * margin) + 2


# --- rendering ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """Lookup tables built once from the catalog."""

    names: list[str]
    by_ingredient: dict[str, list[int]]
    tags: list[str]
    cuisines: list[str]
    catalog: pd.DataFrame
    times: np.ndarray
    cuisine_of: np.ndarray
    has_tag: dict[str, np.ndarray]
    tag_lists: list[list[str]]
    ingredient_lists: list[list[str]]
    pair_hits: dict[tuple[str, str], list[int]]


def _index(catalog: pd.DataFrame) -> _Index:
    by_ing: dict[str, list[int]] = defaultdict(list)
    for i, ings in enumerate(catalog["ingredients"]):
        for ing in dict.fromkeys(ings):
            by_ing[ing].append(i)
    tags = sorted({t for ts in catalog["diet_tags"] for t in ts})
    pair_hits: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, ings in enumerate(catalog["ingredients"]):
        uniq = sorted(set(ings))
        for k, a in enumerate(uniq):
            for b in uniq[k + 1 :]:
                pair_hits[(a, b)].append(i)
    return _Index(
        names=list(catalog["name"]),
        by_ingredient=dict(by_ing),
        tags=tags,
        cuisines=sorted(set(catalog["cuisine"])),
        catalog=catalog,
        times=catalog["total_time_min"].to_numpy(dtype=np.int64),
        cuisine_of=catalog["cuisine"].to_numpy(dtype=object),
        has_tag={t: catalog["diet_tags"].map(lambda ts, t=t: t in ts).to_numpy(dtype=bool) for t in tags},
        tag_lists=[list(ts) for ts in catalog["diet_tags"]],
        ingredient_lists=[list(xs) for xs in catalog["ingredients"]],
        pair_hits=dict(pair_hits),
    )


def _fit_list(prefix: str, items: Sequence[str], suffix: str, budget: int) -> str:
    """``prefix + "a, b and c" + suffix`` with as many items as fit ``budget`` characters (at least one)."""
    if len(items) == 1:
        return prefix + items[0] + suffix
    full = prefix + ", ".join(items[:-1]) + " and " + items[-1] + suffix
    if len(full) <= budget:
        return full
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        tail = f" and {rest} more" if rest else ""
        trial = ", ".join([*shown, item]) + tail
        if shown and len(prefix) + len(trial) + len(suffix) > budget:
            break
        shown.append(item)
    rest = len(items) - len(shown)
    if rest:
        body = ", ".join(shown) + f" and {rest} more"
    elif len(shown) > 1:
        body = ", ".join(shown[:-1]) + " and " + shown[-1]
    else:
        body = shown[0]
    return prefix + body + suffix


def _kind_phrase(cuisine: str | None, tag: str | None) -> str:
    words = [w for w in (tag, cuisine.title() if cuisine else None) if w]
    return (" ".join(words) + " ") if words else ""


def answer_for(idx: _Index, intent: str, subject: tuple, order: int, budget: int) -> str:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        a, b = subject if order == 0 else subject[::-1]
        hits = idx.pair_hits.get((min(a, b), max(a, b)), [])
        if not hits:
            return f"No recipes found with these {a} and {b}!"
        return _fit_list(f"Recipes with {a} and {b}: ", [idx.names[i] for i in hits], ".", budget)
    if intent == "diet_tags":
        (i,) = subject
        tags = idx.tag_lists[i]
        if not tags:
            return f"{idx.names[i]} has no special diet tags."
        return _fit_list(f"{idx.names[i]} is ", list(tags), ".", budget)
    if intent == "recipe_ingredients":
        (i,) = subject
        return _fit_list(f"{idx.names[i]} uses ", idx.ingredient_lists[i], ".", budget)
    if intent == "diet_and_ingredient":
        tag, ing = subject
        hits = [i for i in idx.by_ingredient.get(ing, ()) if idx.has_tag[tag][i]]
        if not hits:
            return f"No {tag} recipes found with {ing}!"
        return _fit_list(f"{tag.capitalize()} recipes with {ing}: ", [idx.names[i] for i in hits], ".", budget)
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
            return f"No {kind}recipes ready in {minutes} minutes or less!"
        items = [f"{idx.names[i]} ({idx.times[i]} min)" for i in hit_rows]
        lead = f"{kind}recipes ready in {minutes} minutes or less: "
        return _fit_list(lead[0].upper() + lead[1:], items, ".", budget)
    raise ValueError(f"unknown intent {intent!r}")


def question_for(idx: _Index, intent: str, subject: tuple, order: int, wording: int) -> str:  # type: ignore[type-arg]
    template = WORDINGS[intent][wording]
    if intent == "ingredient_pair":
        a, b = subject if order == 0 else subject[::-1]
        return template.format(a=a, b=b)
    if intent in ("diet_tags", "recipe_ingredients"):
        return template.format(name=idx.names[subject[0]])
    if intent == "diet_and_ingredient":
        tag, ing = subject
        return template.format(tag=tag, ing=ing)
    minutes, cuisine, tag = subject
    q = template.format(kind=_kind_phrase(cuisine, tag), m=minutes, m1=minutes + 1)
    return q[0].upper() + q[1:]


def group_id_for(idx: _Index, intent: str, subject: tuple) -> str:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        return f"pair:{subject[0]}|{subject[1]}"
    if intent in ("diet_tags", "recipe_ingredients"):
        return f"recipe:{idx.names[subject[0]]}"
    if intent == "diet_and_ingredient":
        return f"diet:{subject[0]}|{subject[1]}"
    return "quick:{}|{}|{}".format(*(s or "any" for s in subject))


# --- group universes ------------------------------------------------------------------------------

_FAMILY = {
    "ingredient_pair": "pair",
    "diet_tags": "recipe",
    "recipe_ingredients": "recipe",
    "diet_and_ingredient": "diet",
    "quick_recipes": "quick",
}


def _universe(idx: _Index, family: str, rng: np.random.Generator) -> list[tuple]:  # type: ignore[type-arg]
    """All subjects of a family, in a seeded random order."""
    if family == "recipe":
        subjects: list[tuple] = [(i,) for i in range(len(idx.names))]  # type: ignore[type-arg]
    elif family == "diet":
        subjects = [(t, ing) for t in idx.tags for ing in sorted(idx.by_ingredient)]
    elif family == "quick":
        subjects = [(m, c, t) for m in QUICK_MINUTES for c in [None, *idx.cuisines] for t in [None, *idx.tags]]
    else:
        raise ValueError(family)
    order = rng.permutation(len(subjects))
    return [subjects[i] for i in order]


def _pair_universe(idx: _Index, rng: np.random.Generator, need: int) -> list[tuple[str, str]]:
    """Ingredient pairs: ``MATCHING_PAIR_SHARE`` that co-occur in a recipe, the rest that do not."""
    ings = sorted(idx.by_ingredient)
    matching = idx.pair_hits
    match_list = sorted(matching)
    rng.shuffle(match_list)  # type: ignore[arg-type]
    n_match = min(len(match_list), round(need * MATCHING_PAIR_SHARE))
    iu, ju = np.triu_indices(len(ings), k=1)
    perm = rng.permutation(len(iu))
    others: list[tuple[str, str]] = []
    for p in perm:
        pair = (ings[iu[p]], ings[ju[p]])
        if pair not in matching:
            others.append(pair)
            if len(others) >= need - n_match:
                break
    picked = match_list[:n_match] + others
    order = rng.permutation(len(picked))
    return [picked[i] for i in order]


# --- synthesis ------------------------------------------------------------------------------------


def synthesize(
    catalog: pd.DataFrame,
    cfg: SynthesisConfig,
    *,
    margin: float = 0.0,
    answer_budget_chars: int = 320,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Pairs for every (split, intent): ``target`` rows, then ``margin_for(target, margin)`` spares.

    Columns: ``anchor``, ``positive``, ``intent``, ``group_id``, ``split`` -- train rows first, then
    validation, then eval. Raises :class:`InputError` when the catalog is too small for the sizes.
    """
    seed = cfg.seed if seed is None else seed
    targets = split_targets(cfg)
    need = {s: {k: n + margin_for(n, margin) for k, n in targets[s].items()} for s in SPLITS}
    idx = _index(catalog)
    if len(idx.names) < 2 or len(idx.by_ingredient) < 2:
        raise InputError("catalog too small: need at least 2 recipes and 2 ingredients")

    rows: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for fam_no, family in enumerate(("pair", "recipe", "diet", "quick")):
        intents = [k for k in INTENTS if _FAMILY[k] == family]
        fam_need = {s: sum(need[s][k] for k in intents) for s in SPLITS}
        total = sum(fam_need.values())
        if total == 0:
            continue
        if progress:
            progress(f"synthesizing {', '.join(intents)}")
        rng = np.random.default_rng([seed, fam_no])
        universe = _pair_universe(idx, rng, total) if family == "pair" else _universe(idx, family, rng)
        groups = _assign_groups(universe, fam_need, intents, need)
        for intent in intents:
            n_words = len(WORDINGS[intent])
            for split in SPLITS:
                n = need[split][intent]
                split_groups = groups[split]
                if n and not split_groups:
                    raise InputError(f"catalog too small: no {family} subjects left for {split} {intent}")
                if n > len(split_groups) * n_words:
                    raise InputError(
                        f"catalog too small for {n} {intent} pairs in {split}: "
                        f"{len(split_groups)} subjects x {n_words} wordings"
                    )
                offsets = rng.integers(0, n_words, size=len(split_groups))
                orders = rng.integers(0, 2, size=len(split_groups))
                if intent == "ingredient_pair":
                    rows[(split, intent)] = _pair_rows(idx, split_groups, n, offsets, orders, answer_budget_chars)
                    continue
                out: list[tuple[str, str, str]] = []
                answers: dict[int, str] = {}
                for k in range(n):
                    g, rnd = k % len(split_groups), k // len(split_groups)
                    subject = split_groups[g]
                    order = int(orders[g]) if intent == "ingredient_pair" else 0
                    wording = int((offsets[g] + rnd) % n_words)
                    if g not in answers:
                        answers[g] = answer_for(idx, intent, subject, order, answer_budget_chars)
                    out.append(
                        (
                            question_for(idx, intent, subject, order, wording),
                            answers[g],
                            group_id_for(idx, intent, subject),
                        )
                    )
                rows[(split, intent)] = out

    frames = []
    for split in SPLITS:
        for intent in INTENTS:
            part = rows.get((split, intent), [])
            if part:
                f = pd.DataFrame(part, columns=["anchor", "positive", "group_id"])
                f["intent"] = intent
                f["split"] = split
                frames.append(f)
    cols = ["anchor", "positive", "intent", "group_id", "split"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    return pd.concat(frames, ignore_index=True)[cols]


def _template_parts(templates: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``pre{a}mid{b}post`` templates into three object arrays for vectorized formatting."""
    parts = []
    for t in templates:
        pre, rest = t.split("{a}")
        mid, post = rest.split("{b}")
        parts.append((pre, mid, post))
    pre_a, mid_a, post_a = (np.array(col, dtype=object) for col in zip(*parts, strict=True))
    return pre_a, mid_a, post_a


def _pair_rows(
    idx: _Index,
    groups: list[tuple],  # type: ignore[type-arg]
    n: int,
    offsets: np.ndarray,
    orders: np.ndarray,
    budget: int,
) -> list[tuple[str, str, str]]:
    """Vectorized :func:`question_for` / :func:`answer_for` for ingredient pairs (the bulk of the data)."""
    n_words = len(PAIR_QUESTIONS)
    k = np.arange(n)
    g = k % len(groups)
    wording = (offsets[g] + k // len(groups)) % n_words
    first = np.array([s[0] for s in groups], dtype=object)[g]
    second = np.array([s[1] for s in groups], dtype=object)[g]
    swap = orders[g] == 1
    a = np.where(swap, second, first)
    b = np.where(swap, first, second)
    pre, mid, post = _template_parts(PAIR_QUESTIONS)
    anchors = pre[wording] + a + mid[wording] + b + post[wording]
    positives = "No recipes found with these " + a + " and " + b + "!"
    for i in np.flatnonzero([(f, s) in idx.pair_hits for f, s in zip(first, second, strict=True)]):
        names = [idx.names[r] for r in idx.pair_hits[(first[i], second[i])]]
        positives[i] = _fit_list(f"Recipes with {a[i]} and {b[i]}: ", names, ".", budget)
    group_ids = "pair:" + first + "|" + second
    return list(zip(anchors.tolist(), positives.tolist(), group_ids.tolist(), strict=True))


def _assign_groups(
    universe: list[tuple],  # type: ignore[type-arg]
    fam_need: dict[str, int],
    intents: Sequence[str],
    need: dict[str, dict[str, int]],
) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Cut the shuffled universe into disjoint per-split slices, proportional to each split's need.

    A split never takes more subjects than its largest per-intent need (one question per subject is
    best: more distinct subjects, fewer repeated answers).
    """
    total = sum(fam_need.values())
    out: dict[str, list[tuple]] = {}  # type: ignore[type-arg]
    start = 0
    for split in SPLITS:
        if fam_need[split] == 0:
            out[split] = []
            continue
        share = max(1, math.floor(len(universe) * fam_need[split] / total))
        take = min(share, max(need[split][k] for k in intents))
        out[split] = universe[start : start + take]
        start += take
    return out
