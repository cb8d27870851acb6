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
recipe_card          ``card:<name>``                        a short recipe card (name, cuisine,
                                                            minutes, diet tags, main ingredients)
===================  ====================================  =======================================

Groups are assigned to exactly one split (train, validation or eval) *before* any question is
written, so no subject is shared between splits; a group yields several questions only through
different wordings, and every question of a group has the same answer. A recipe card's question
describes a need (ingredients, and maybe a cuisine, a diet and a time) fixed per group; several
recipes may meet it, and :func:`correct_recipes` says which.

Wordings and alternate names live in ``pipelines/data/wordings.json`` (at least 60 wordings per
intent, in registers: plain and chatty questions, terse search-box queries, lower case without
punctuation, common misspellings) and ``pipelines/data/aliases.json`` (alternate names of catalog
ingredients; a catalog's ``aliases`` column adds its own). Questions name an ingredient, diet or time
by an alternate name with probability ``alias_probability``; answers keep the catalog's names.

Held out: per intent, ``heldout_fraction`` of the wordings (a fixed choice by text hash) and of the
alternate names are never used in train or validation. Eval rows carry a ``slice``:
``seen_wording`` (training wordings and names, new subjects), ``unseen_wording`` (held-out wordings,
and held-out names where the subject has one), ``recipe_card`` (the recipe-card intent),
``unseen_ingredient`` (recipe-card questions naming an ingredient, chosen by ``unseen_ingredient_fraction``,
by an alternate name; every alternate name of those ingredients is eval-only) and ``human`` (the
hand-written questions of ``pipelines/data/human_questions.jsonl``, judged against the catalog). The last
two are written in full, beside the ``n_eval`` targeted pairs; their answers are recipe cards, and the
card of every correct recipe joins the eval corpus (see :func:`relevant_cards`).

Names run both ways (all train/validation only): ``answer_alias_probability`` renames ingredients in
answers too, ``name_variants`` adds plural/singular and short forms as alternate names, and
``alias_pairs`` adds alias-definition pairs (``aubergine`` -> ``eggplant``) as a share of ``n_train``.

Sizes: ``n_train`` pairs (train + the validation slice) and ``n_eval`` pairs, mixed by
``intent_weights`` (largest-remainder rounding). ``synthesize(..., margin=...)`` writes a few extra
pairs per (split, intent) *after* the targeted ones so that rows rejected by validation can be
replaced by :func:`pipelines.datasets.build_dataset` without a second pass.
"""

from __future__ import annotations

import functools
import json
import math
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import SynthesisConfig
from pipelines.errors import InputError
from pipelines.schemas import SLICES, SPLITS

__all__ = ["INTENTS", "SLICES", "is_correct_answer", "split_targets", "synthesize"]

INTENTS: tuple[str, ...] = (
    "ingredient_pair",
    "diet_tags",
    "recipe_ingredients",
    "diet_and_ingredient",
    "quick_recipes",
    "recipe_card",
)
REGISTERS: tuple[str, ...] = ("plain", "chatty", "terse", "lower", "misspelled")
QUICK_MINUTES = (10, 15, 20, 25, 30, 40, 45, 60, 90)
MATCHING_PAIR_SHARE = 0.3
"""Share of ingredient-pair questions whose answer lists recipes (the rest: "No recipes found ...")."""
CARD_DIET_ORDER = ("vegan", "vegetarian", "pescatarian", "gluten-free", "dairy-free")
"""Diet tags a recipe-card need may name, most specific first."""

# --- wordings and alternate names (data files beside the catalog) ---------------------------------


def _data_file(name: str) -> dict[str, Any]:
    path = resources.files("pipelines") / "data" / name
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    return data


@dataclass(frozen=True)
class Template:
    text: str
    register: str
    heldout: bool

    def fill(self, **values: str) -> str:
        q = self.text.format(**values)
        return q.lower() if self.register in LOWERED_REGISTERS else q[0].upper() + q[1:]


def heldout_choice(texts: Sequence[str], fraction: float) -> set[str]:
    """Exactly ``round(len(texts) * fraction)`` texts, fixed by their crc32 (independent of order)."""
    ranked = sorted(texts, key=lambda t: (zlib.crc32(t.encode("utf-8")), t))
    return set(ranked[: round(len(texts) * fraction)])


def is_heldout_name(canonical: str, alternate: str, fraction: float) -> bool:
    """An alternate name is held out when the hash of ``canonical=alternate`` falls under ``fraction``."""
    return zlib.crc32(f"{canonical}={alternate}".encode()) % 10_000 < fraction * 10_000


@functools.lru_cache(maxsize=1)
def wording_data() -> dict[str, Any]:
    return _data_file("wordings.json")


@functools.lru_cache(maxsize=1)
def bundled_aliases() -> dict[str, tuple[str, ...]]:
    """Alternate names of the bundled catalog's ingredients (``pipelines/data/aliases.json``)."""
    return {k: tuple(v) for k, v in _data_file("aliases.json")["aliases"].items()}


LOWERED_REGISTERS = frozenset(wording_data()["lowered_registers"])


@functools.lru_cache(maxsize=8)
def templates(intent: str, fraction: float) -> tuple[Template, ...]:
    """All wordings of an intent, each marked held out (eval only) or not."""
    by_register: dict[str, list[str]] = wording_data()["wordings"][intent]
    texts = [t for reg in REGISTERS for t in by_register.get(reg, [])]
    held = heldout_choice(texts, fraction)
    return tuple(Template(t, reg, t in held) for reg in REGISTERS for t in by_register.get(reg, []))


def wordings(intent: str, heldout: bool, fraction: float) -> list[Template]:
    return [t for t in templates(intent, fraction) if t.heldout == heldout]


@dataclass(frozen=True)
class Names:
    """Alternate names of one thing, split into the ones training may use and the held-out ones."""

    seen: tuple[str, ...] = ()
    unseen: tuple[str, ...] = ()


UNSEEN_INGREDIENT_MIN_RECIPES = 3
"""An ``unseen_ingredient`` has at least this many recipes, so its questions have near-twins to beat."""


def unseen_ingredients(
    table: Mapping[str, Iterable[str]], by_ingredient: Mapping[str, Sequence[int]], fraction: float
) -> set[str]:
    """Ingredients whose every alternate name is eval-only: a fixed choice by the hash of the name,
    among those with alternate names and at least :data:`UNSEEN_INGREDIENT_MIN_RECIPES` recipes."""
    return {
        ing
        for ing, alts in table.items()
        if any(a and a != ing for a in alts)
        and len(by_ingredient.get(ing, ())) >= UNSEEN_INGREDIENT_MIN_RECIPES
        and zlib.crc32(f"ingredient:{ing}".encode()) % 10_000 < fraction * 10_000
    }


_VARIANT_PREFIXES = ("fresh ", "dried ", "canned ")
_MASS_NOUNS = frozenset(
    [
        "sauce",
        "oil",
        "milk",
        "flour",
        "sugar",
        "rice",
        "salt",
        "paste",
        "powder",
        "juice",
        "stock",
        "cream",
        "cheese",
        "butter",
        "yogurt",
        "vinegar",
        "wine",
        "water",
        "syrup",
        "seasoning",
        "masala",
        "dal",
        "meal",
        "bread",
        "garlic",
        "ginger",
        "turmeric",
        "cumin",
        "spinach",
        "basil",
        "mint",
        "dill",
        "thyme",
        "oregano",
        "cilantro",
        "parsley",
        "sage",
        "rosemary",
        "tarragon",
        "tofu",
        "miso",
        "kimchi",
        "ghee",
        "honey",
        "tahini",
        "sumac",
        "saffron",
        "couscous",
        "quinoa",
        "polenta",
        "cornmeal",
        "semolina",
        "gelatin",
        "lard",
        "mayonnaise",
        "ketchup",
        "mustard",
        "harissa",
        "jaggery",
        "molasses",
        "okra",
        "kale",
    ]
)


def _toggle_plural(word: str) -> str | None:
    if word in _MASS_NOUNS or len(word) < 3:
        return None
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("oes"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("o", "ch", "sh", "x")):
        return word + "es"
    return word + "s"


def name_variants(name: str) -> list[str]:
    """Everyday spellings of a catalog name: plural or singular (``potato`` <-> ``potatoes``), without
    ``fresh``/``dried``/``canned`` (``fresh cilantro`` -> ``cilantro``), each part of ``a (b)`` and ``a/b``."""
    out: list[str] = []
    if "(" in name:
        head, _, rest = name.partition("(")
        out += [head.strip(), rest.rstrip(")").strip()]
    elif "/" in name:
        out += [part.strip() for part in name.split("/")]
    for prefix in _VARIANT_PREFIXES:
        if name.startswith(prefix):
            out.append(name[len(prefix) :])
    words = name.split(" ")
    toggled = _toggle_plural(words[-1]) if "(" not in name and "/" not in name else None
    if toggled:
        out.append(" ".join([*words[:-1], toggled]))
    return [v for v in dict.fromkeys(out) if v and v != name]


def with_variants(table: Mapping[str, Iterable[str]], ingredients: Iterable[str]) -> dict[str, list[str]]:
    """``table`` plus :func:`name_variants` of every ingredient, except a variant that is itself a catalog
    ingredient or a variant of two ingredients (``fresh thyme``/``dried thyme`` -> ``thyme``)."""
    known = set(ingredients)
    variants = {ing: name_variants(ing) for ing in sorted(known)}
    count: dict[str, int] = defaultdict(int)
    for vs in variants.values():
        for v in vs:
            count[v] += 1
    out = {k: list(v) for k, v in table.items()}
    for ing, vs in variants.items():
        keep = [v for v in vs if v not in known and count[v] == 1]
        if keep:
            out.setdefault(ing, []).extend(keep)
    return out


def _names(table: Mapping[str, Iterable[str]], fraction: float, held: Iterable[str] = ()) -> dict[str, Names]:
    held = set(held)
    out = {}
    for canonical, alts in table.items():
        alts = [a for a in dict.fromkeys(alts) if a and a != canonical]
        if canonical in held:
            out[canonical] = Names(seen=(), unseen=tuple(alts))
            continue
        out[canonical] = Names(
            seen=tuple(a for a in alts if not is_heldout_name(canonical, a, fraction)),
            unseen=tuple(a for a in alts if is_heldout_name(canonical, a, fraction)),
        )
    return out


def catalog_aliases(catalog: pd.DataFrame) -> dict[str, list[str]]:
    """Alternate names of the catalog's ingredients: the bundled table, then the ``aliases`` column."""
    ingredients = {i for ings in catalog["ingredients"] for i in ings}
    table: dict[str, list[str]] = {k: list(v) for k, v in bundled_aliases().items() if k in ingredients}
    if "aliases" in catalog.columns:
        for entries in catalog["aliases"]:
            for entry in entries or ():
                canonical, _, alternate = str(entry).partition("=")
                table.setdefault(canonical.strip().lower(), []).append(alternate.strip())
    return table


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
    times: np.ndarray
    cuisine_of: np.ndarray
    has_tag: dict[str, np.ndarray]
    tag_lists: list[list[str]]
    ingredient_lists: list[list[str]]
    pair_hits: dict[tuple[str, str], list[int]]
    aliases: dict[str, Names]
    diets: dict[str, Names]
    time_names: dict[int, Names]
    unseen_ingredients: frozenset[str] = frozenset()


def _index(catalog: pd.DataFrame, fraction: float, ingredient_fraction: float = 0.0, variants: bool = False) -> _Index:
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
    data = wording_data()
    table: dict[str, list[str]] = catalog_aliases(catalog)
    held = unseen_ingredients(table, by_ing, ingredient_fraction)
    if variants:
        table = with_variants(table, by_ing)
    return _Index(
        names=list(catalog["name"]),
        by_ingredient=dict(by_ing),
        tags=tags,
        cuisines=sorted(set(catalog["cuisine"])),
        times=catalog["total_time_min"].to_numpy(dtype=np.int64),
        cuisine_of=catalog["cuisine"].to_numpy(dtype=object),
        has_tag={t: catalog["diet_tags"].map(lambda ts, t=t: t in ts).to_numpy(dtype=bool) for t in tags},
        tag_lists=[list(ts) for ts in catalog["diet_tags"]],
        ingredient_lists=[list(xs) for xs in catalog["ingredients"]],
        pair_hits=dict(pair_hits),
        aliases=_names(table, fraction, held),
        unseen_ingredients=frozenset(held),
        diets=_names(data["diet_paraphrases"], fraction),
        time_names={int(m): n for m, n in _names(data["time_phrases"], fraction).items()},
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


class _Say:
    """Names a thing in a question: the catalog's name, or an alternate name with probability ``p``.

    ``unseen``: prefer a held-out alternate name (eval's unseen_wording slice); otherwise only the
    names training may use. Uniform draws come from ``rng`` in blocks (scalar draws are slow).
    """

    def __init__(self, rng: np.random.Generator, p: float, unseen: bool) -> None:
        self.rng, self.p, self.unseen = rng, p, unseen
        self._block: list[float] = []

    def uniform(self) -> float:
        if not self._block:
            self._block = self.rng.random(4096).tolist()
        return self._block.pop()

    def pick(self, items: Sequence[str]) -> str:
        return items[int(self.uniform() * len(items))]

    def __call__(self, canonical: str, names: Names | None) -> str:
        if names is None:
            return canonical
        if self.unseen and names.unseen:
            return self.pick(names.unseen)
        if names.seen and self.uniform() < self.p:
            return self.pick(names.seen)
        return canonical


@dataclass(frozen=True)
class Need:
    """What a recipe-card question asks for; fixed per group."""

    recipe: int
    ingredients: tuple[str, ...]
    cuisine: str | None
    tag: str | None
    minutes: int | None
    meal: str


def _card_need(idx: _Index, i: int, rng: np.random.Generator) -> Need:
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
    return Need(i, ings, cuisine, tag, minutes, meals[int(rng.integers(len(meals)))])


def correct_recipes(idx: _Index, need: Need) -> list[int]:
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
    return [int(j) for j in np.flatnonzero(mask)]


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def _need_phrase(idx: _Index, need: Need, say: _Say) -> str:
    data = wording_data()
    ings = " and ".join(say(x, idx.aliases.get(x)) for x in need.ingredients)
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


CARD_BUDGET_FACTOR = 1.2
"""Cards may use 1.2x the answer budget: their words are common, a token covers several characters."""


def card_answer(idx: _Index, i: int, budget: int, first: Sequence[str] = ()) -> str:
    """``Name: cuisine, N min, tags. Main ingredients: ...`` (``first`` ingredients listed first)."""
    budget = int(budget * CARD_BUDGET_FACTOR)
    tags = idx.tag_lists[i]
    tag_text = _fit_list("", tags, "", budget // 3) if tags else "no diet tags"
    head = f"{idx.names[i]}: {idx.cuisine_of[i]}, {idx.times[i]} min, {tag_text}. Main ingredients: "
    if len(head) + 12 > budget:  # a tight budget: the diet tags go first
        head = f"{idx.names[i]}: {idx.cuisine_of[i]}, {idx.times[i]} min. Main ingredients: "
    main = list(dict.fromkeys([*first, *idx.ingredient_lists[i][:5]]))
    return _fit_list(head, main, ".", budget)


def answer_for(
    idx: _Index,
    intent: str,
    subject: tuple,  # type: ignore[type-arg]
    budget: int,
    first: Sequence[str] = (),
) -> tuple[str, tuple[int, ...]]:
    """The answer and the recipes it names (``()`` for "no recipes" and per-recipe facts).

    ``first``: for a recipe card, the ingredients its question names (listed first on the card).
    """
    if intent == "ingredient_pair":
        a, b = subject
        hits = idx.pair_hits.get((a, b), [])
        if not hits:
            return f"No recipes found with these {a} and {b}!", ()
        return _fit_list(f"Recipes with {a} and {b}: ", [idx.names[i] for i in hits], ".", budget), tuple(hits)
    if intent == "diet_tags":
        (i,) = subject
        tags = idx.tag_lists[i]
        if not tags:
            return f"{idx.names[i]} has no special diet tags.", ()
        return _fit_list(f"{idx.names[i]} is ", list(tags), ".", budget), ()
    if intent == "recipe_ingredients":
        (i,) = subject
        return _fit_list(f"{idx.names[i]} uses ", idx.ingredient_lists[i], ".", budget), ()
    if intent == "diet_and_ingredient":
        tag, ing = subject
        hits = [i for i in idx.by_ingredient.get(ing, ()) if idx.has_tag[tag][i]]
        if not hits:
            return f"No {tag} recipes found with {ing}!", ()
        text = _fit_list(f"{tag.capitalize()} recipes with {ing}: ", [idx.names[i] for i in hits], ".", budget)
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
        return _fit_list(lead[0].upper() + lead[1:], items, ".", budget), tuple(int(i) for i in hit_rows)
    if intent == "recipe_card":
        (i,) = subject
        return card_answer(idx, i, budget, first), (i,)
    raise ValueError(f"unknown intent {intent!r}")


def question_for(
    idx: _Index, intent: str, subject: tuple, template: Template, say: _Say, need: Need | None = None
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
        return _A_BEFORE_VOWEL.sub(r"\1n ", template.fill(need=_need_phrase(idx, need, say)))
    raise ValueError(f"unknown intent {intent!r}")


def group_id_for(idx: _Index, intent: str, subject: tuple) -> str:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        return f"pair:{subject[0]}|{subject[1]}"
    if intent in ("diet_tags", "recipe_ingredients"):
        return f"recipe:{idx.names[subject[0]]}"
    if intent == "recipe_card":
        return f"card:{idx.names[subject[0]]}"
    if intent == "diet_and_ingredient":
        return f"diet:{subject[0]}|{subject[1]}"
    return "quick:{}|{}|{}".format(*(s or "any" for s in subject))


# --- group universes ------------------------------------------------------------------------------

_FAMILY = {
    "ingredient_pair": "pair",
    "diet_tags": "recipe",
    "recipe_ingredients": "recipe",
    "recipe_card": "recipe",
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
    """Ingredient pairs (sorted): ``MATCHING_PAIR_SHARE`` that co-occur in a recipe, the rest that do not."""
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

COLUMNS = ["anchor", "positive", "intent", "group_id", "split", "slice"]
ANSWER_COLUMNS = ["answer_recipes", "correct_recipes", "correct_cards"]
"""Working columns (not written): recipes each answer names, recipes that correctly answer each question,
and (extra eval slices) the recipe card of every correct recipe."""


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

    Columns: ``anchor``, ``positive``, ``intent``, ``group_id``, ``split``, ``slice`` and the working
    columns ``answer_recipes`` / ``correct_recipes`` (tuples of catalog row numbers, see
    :func:`is_correct_answer`) -- train rows first, then validation, then eval. Train and validation
    rows have the slice ``seen_wording``. Raises :class:`InputError` when the catalog is too small.
    """
    seed = cfg.seed if seed is None else seed
    targets = split_targets(cfg)
    need = {s: {k: n + margin_for(n, margin) for k, n in targets[s].items()} for s in SPLITS}
    idx = _index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants)
    if len(idx.names) < 2 or len(idx.by_ingredient) < 2:
        raise InputError("catalog too small: need at least 2 recipes and 2 ingredients")

    frames: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
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
            for split in SPLITS:
                n = need[split][intent]
                split_groups = groups[split]
                if n and not split_groups:
                    raise InputError(f"catalog too small: no {family} subjects left for {split} {intent}")
                plan: list[tuple[str, bool | None, int]]
                if split != "eval":
                    plan = [("seen_wording", False, n)]
                elif intent == "recipe_card":
                    plan = [("recipe_card", None, n)]
                else:
                    has_unseen = bool(wordings(intent, True, cfg.heldout_fraction))
                    n_unseen = round(n * cfg.unseen_eval_fraction) if has_unseen else 0
                    plan = [("seen_wording", False, n - n_unseen), ("unseen_wording", True, n_unseen)]
                out = frames.setdefault((split, intent), [])
                rename = cfg.answer_alias_probability if split != "eval" else 0.0
                for slice_name, heldout, count in plan:
                    if count:
                        out += _rows(
                            idx, intent, split_groups, count, heldout, slice_name, cfg, rng, answer_budget_chars, rename
                        )
    if cfg.alias_pairs > 0:
        for split, rows in _alias_rows(idx, cfg, np.random.default_rng([seed, 11])).items():
            frames[(split, ALIAS_INTENT)] = rows

    if need["eval"]["recipe_card"]:
        extra = frames.setdefault(("eval", "extra"), [])
        if progress:
            progress("adding the unseen_ingredient and human eval slices")
        extra += _unseen_ingredient_rows(idx, cfg, np.random.default_rng([seed, 7]), answer_budget_chars)
        if cfg.human_eval:
            extra += human_rows(catalog, idx, answer_budget_chars)

    parts = []
    for split in SPLITS:
        for intent in (*INTENTS, ALIAS_INTENT, "extra"):
            rows = frames.get((split, intent), [])
            if rows:
                f = pd.DataFrame(rows, columns=["anchor", "positive", "group_id", "slice", *ANSWER_COLUMNS])
                f["intent"] = "recipe_card" if intent == "extra" else intent
                f["split"] = split
                parts.append(f)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in [*COLUMNS, *ANSWER_COLUMNS]})
    return pd.concat(parts, ignore_index=True)[[*COLUMNS, *ANSWER_COLUMNS]]


def _rows(
    idx: _Index,
    intent: str,
    groups: list[tuple],  # type: ignore[type-arg]
    n: int,
    heldout: bool | None,
    slice_name: str,
    cfg: SynthesisConfig,
    rng: np.random.Generator,
    budget: int,
    rename: float = 0.0,
) -> list[tuple[Any, ...]]:
    """``n`` rows cycling over ``groups``; each round gives every group its next wording.

    ``rename``: the chance that a group's answer names its ingredients by alternate names (the names
    run both ways: a user's catalog may call ``spring onions`` ``scallions``).

    ``heldout``: False = training wordings and names, True = held-out wordings (and held-out names
    where there are any), None = every wording (the recipe-card slice).
    """
    fraction = cfg.heldout_fraction
    pool = list(templates(intent, fraction)) if heldout is None else wordings(intent, heldout, fraction)
    if not pool:
        raise InputError(f"no {'held-out ' if heldout else ''}wordings for {intent}: check synthesis.heldout_fraction")
    if n > len(groups) * len(pool):
        raise InputError(
            f"catalog too small for {n} {intent} pairs ({slice_name}): {len(groups)} subjects x {len(pool)} wordings"
        )
    say = _Say(rng, cfg.alias_probability, unseen=bool(heldout))
    offsets = rng.integers(0, len(pool), size=len(groups))
    swap = (
        (rng.integers(0, 2, size=len(groups)) == 1).tolist() if intent == "ingredient_pair" else [False] * len(groups)
    )
    known: dict[int, tuple[str, str, tuple[int, ...], tuple[int, ...]]] = {}
    needs: dict[int, Need] = {}
    k = np.arange(n)
    g_of = (k % len(groups)).tolist()
    t_of = ((offsets[k % len(groups)] + k // len(groups)) % len(pool)).tolist()
    out: list[tuple[Any, ...]] = []
    for g, t in zip(g_of, t_of, strict=True):
        subject = groups[g]
        if g not in known:
            if intent == "recipe_card":
                needs[g] = _card_need(idx, subject[0], np.random.default_rng([cfg.seed, 99, subject[0]]))
                text, named = answer_for(idx, intent, subject, budget, needs[g].ingredients)
                correct = tuple(correct_recipes(idx, needs[g]))
            else:
                text, named = answer_for(idx, intent, subject, budget)
                correct = named
            if rename and say.uniform() < rename:
                text = _rename_answer(text, _answer_ingredients(idx, intent, subject), idx, say)
            known[g] = (text, group_id_for(idx, intent, subject), named, correct)
        shown = subject[::-1] if swap[g] else subject
        question = question_for(idx, intent, shown, pool[t], say, needs.get(g))
        text, group_id, named, correct = known[g]
        out.append((question, text, group_id, slice_name, named, correct, ()))
    return out


def _answer_ingredients(idx: _Index, intent: str, subject: tuple) -> list[str]:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        return list(subject)
    if intent == "diet_and_ingredient":
        return [subject[1]]
    if intent in ("recipe_ingredients", "recipe_card"):
        return idx.ingredient_lists[subject[0]]
    return []


def _rename_answer(text: str, ingredients: Iterable[str], idx: _Index, say: _Say) -> str:
    """Each ingredient that has training names, with probability 1/2, by one of them (whole words only)."""
    for ing in sorted(set(ingredients), key=len, reverse=True):
        names = idx.aliases.get(ing)
        if names is None or not names.seen or say.uniform() >= 0.5:
            continue
        alt = say.pick(names.seen)
        text = re.sub(rf"(?<![\w'-]){re.escape(ing)}(?![\w'-])", alt.replace("\\", "\\\\"), text)
    return text


ALIAS_INTENT = "alias_definition"
"""Train/validation pairs ``alternate name -> catalog name`` (``aubergine`` -> ``eggplant``); never in eval."""


def _alias_rows(idx: _Index, cfg: SynthesisConfig, rng: np.random.Generator) -> dict[str, list[tuple[Any, ...]]]:
    """``alias_pairs * n_train`` pairs over the training names, split by ingredient like train/validation."""
    n = round(cfg.alias_pairs * cfg.n_train)
    pairs = [(alt, ing) for ing, names in sorted(idx.aliases.items()) for alt in names.seen]
    order = rng.permutation(len(pairs))
    out: dict[str, list[tuple[Any, ...]]] = {"train": [], "validation": []}
    for k in order[:n]:
        alt, ing = pairs[k]
        split = (
            "validation" if zlib.crc32(f"alias:{ing}".encode()) % 10_000 < cfg.validation_fraction * 10_000 else "train"
        )
        out[split].append((alt, ing, f"alias:{ing}", "seen_wording", (), (), ()))
    return out


EXTRA_EVAL_SLICES = ("unseen_ingredient", "human")
"""Eval slices outside the per-intent targets: written in full, after every targeted eval row."""


def _unseen_ingredient_rows(
    idx: _Index, cfg: SynthesisConfig, rng: np.random.Generator, budget: int
) -> list[tuple[Any, ...]]:
    """Recipe-card questions that name an ``unseen_ingredient`` by each of its alternate names, alone and
    with a cuisine; correct: every recipe with the ingredient (and the cuisine)."""
    held = idx.unseen_ingredients
    pool = list(templates("recipe_card", cfg.heldout_fraction))
    data = wording_data()
    say = _Say(rng, 0.0, unseen=False)
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
                template = pool[int(say.uniform() * len(pool))]
                question = _A_BEFORE_VOWEL.sub(r"\1n ", template.fill(need=need))
                group = f"unseen_ingredient:{ing}|{alt}|{cuisine or 'any'}"
                cards = tuple(card_answer(idx, i, budget) for i in correct)
                out.append((question, cards[0], group, "unseen_ingredient", (correct[0],), tuple(correct), cards))
    return out


def human_rows(catalog: pd.DataFrame, idx: _Index, budget: int) -> list[tuple[Any, ...]]:
    """The hand-written questions (``pipelines/data/human_questions.jsonl``) judged against this catalog;
    a question the catalog cannot judge (a name it lacks, no recipe meets it) is left out."""
    from pipelines.human_eval import judge, load_questions

    out: list[tuple[Any, ...]] = []
    for no, q in enumerate(load_questions()):
        try:
            (correct,) = judge(catalog, [q])
        except InputError:
            continue
        cards = tuple(card_answer(idx, i, budget) for i in correct)
        out.append((q["q"], cards[0], f"human:{no}", "human", (correct[0],), tuple(correct), cards))
    return out


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
