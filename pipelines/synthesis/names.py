"""Alternate names: the bundled and catalog aliases, plural/singular and short forms, held-out names,
eval-only (``unseen_ingredient``) ingredients, and :class:`Say`, which names a thing in a question."""

from __future__ import annotations

import bisect
import functools
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from pipelines.synthesis.wordings import data_file


def is_heldout_name(canonical: str, alternate: str, fraction: float) -> bool:
    """An alternate name is held out when the hash of ``canonical=alternate`` falls under ``fraction``."""
    return zlib.crc32(f"{canonical}={alternate}".encode()) % 10_000 < fraction * 10_000


@functools.lru_cache(maxsize=1)
def bundled_aliases() -> dict[str, tuple[str, ...]]:
    """Alternate names of the bundled catalog's ingredients (``pipelines/data/aliases.json``)."""
    return {k: tuple(v) for k, v in data_file("aliases.json")["aliases"].items()}


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


def split_names(table: Mapping[str, Iterable[str]], fraction: float, held: Iterable[str] = ()) -> dict[str, Names]:
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


@functools.lru_cache(maxsize=1)
def bundled_glossary() -> tuple[tuple[str, ...], ...]:
    """Everyday names of the same food, one set per food (``pipelines/data/glossary.json``)."""
    return tuple(tuple(names) for names in data_file("glossary.json")["sets"])


def glossary_pairs(fraction: float) -> list[tuple[str, str, str]]:
    """``(name, other name, key)`` for every two names of a glossary set, and of the bundled alias table
    (its held-out names left out by :func:`is_heldout_name`), both ways; ``key`` names the set."""
    out: list[tuple[str, str, str]] = []
    groups = [list(names) for names in bundled_glossary()]
    groups += [
        [canonical, *(a for a in alts if not is_heldout_name(canonical, a, fraction))]
        for canonical, alts in sorted(bundled_aliases().items())
    ]
    for names in groups:
        names = list(dict.fromkeys(n for n in names if n))
        out += [(a, b, names[0]) for a in names for b in names if a != b]
    return out


def replace_names(text: str, renames: Mapping[str, str], names: Iterable[str] = ()) -> str:
    """``text`` with each whole-word name of ``renames`` replaced by its new name, in one pass: a name is
    matched at most once, never inside a longer one of ``renames`` or ``names`` (``butter`` in ``peanut butter``
    stays), and never inside a name just written (``garlic`` -> ``garlic cloves`` leaves ``spring garlic``
    alone, and does not touch the ``garlic`` of a new ``chili garlic sauce``)."""
    if not renames:
        return text
    every = sorted({*renames, *names}, key=lambda n: (-len(n), n))
    pattern = re.compile(r"(?<![\w'-])(" + "|".join(re.escape(n) for n in every) + r")(?![\w'-])")
    return pattern.sub(lambda m: renames.get(m.group(1), m.group(1)), text)


def heldout_forms(table: Mapping[str, Names]) -> set[str]:
    """Every held-out name with its :func:`name_variants` (``aubergines`` as well as ``aubergine``), except
    a form that is a catalog name or a training name (``peanut`` is held out, ``peanuts`` is the catalog's)."""
    held = {n for ns in table.values() for n in ns.unseen}
    usable = set(table) | {n for ns in table.values() for n in ns.seen}
    return (held | {v for n in held for v in name_variants(n)}) - usable


@functools.lru_cache(maxsize=32)
def everyday_weights(n: int) -> tuple[float, ...]:
    """Cumulative weights 1/1, 1/2, ... 1/n over ``n`` names, normalised: the alias table lists the everyday
    name first (``aubergine`` before ``baingan``), so people's names come up as often as people use them."""
    w = np.cumsum(1.0 / np.arange(1, n + 1))
    return tuple((w[:-1] / w[-1]).tolist())


T = TypeVar("T")


class Say:
    """Names a thing in a question: the catalog's name, or an alternate name with probability ``p``.

    ``unseen``: prefer a held-out alternate name (eval's unseen_wording slice); otherwise only the
    names training may use. Uniform draws come from ``rng`` in blocks (scalar draws are slow).
    """

    def __init__(self, rng: np.random.Generator, p: float, unseen: bool, everyday: bool = False) -> None:
        self.rng, self.p, self.unseen, self.everyday = rng, p, unseen, everyday
        self._block: list[float] = []

    def uniform(self) -> float:
        if not self._block:
            self._block = self.rng.random(4096).tolist()
        return self._block.pop()

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.uniform() * len(items))]

    def pick_name(self, names: Sequence[str]) -> str:
        """One of a thing's training names: uniformly, or (``everyday``) by :func:`everyday_weights`.
        One uniform draw either way, so the rows after it are the same."""
        if not self.everyday or len(names) == 1:
            return self.pick(names)
        return names[bisect.bisect_right(everyday_weights(len(names)), self.uniform())]

    def __call__(self, canonical: str, names: Names | None) -> str:
        if names is None:
            return canonical
        if self.unseen and names.unseen:
            return self.pick(names.unseen)
        if names.seen and self.uniform() < self.p:
            return self.pick_name(names.seen)
        return canonical
