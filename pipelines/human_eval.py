"""The ``human`` eval slice: hand-written search-box questions, judged against the catalog's fields.

``pipelines/data/human_questions.jsonl`` holds one question a line, written by hand, each with the
constraints that a correct recipe must meet (see ``pipelines/data/HUMAN_EVAL.md``):

- ``ing``: ingredients the recipe must have, all of them; ``any_of``: at least one of them;
- ``not``: ingredients it must not have;
- ``cui``: its cuisine; ``tags``: diet tags it must carry (``vegan``, ``nut-free`` ...);
- ``max`` / ``min``: bounds on ``total_time_min``;
- ``dish``: the dish, as the catalog names it after the cook (``"Pad Thai"`` for ``"Aarav's Pad Thai"``).

An ingredient is a catalog name (``eggplant``) or a group (``@tomato``: any of :data:`GROUPS`), so
"tomatoes" accepts cherry, roma and crushed tomatoes. :func:`judge` returns, per question, every
catalog row that meets all its constraints; :func:`write_judged` writes them with the recipe names to
``pipelines/data/human_eval.jsonl`` (``python -m pipelines.human_eval``), the file the eval reads.
Unknown names, groups, cuisines, tags or keys, and a question that no recipe meets, are errors.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import InputError
from pipelines.io import read_jsonl_records
from pipelines.synthesis.recipe_card import dish_of

QUESTIONS_FILE = "human_questions.jsonl"
JUDGED_FILE = "human_eval.jsonl"
DEV_QUESTIONS_FILE = "dev_questions.jsonl"
"""Hand-written questions of the same kind, written apart from ``human``: the ``human_dev`` validation
slice, on which settings are chosen (``human`` never chooses anything)."""
KEYS = frozenset({"q", "ing", "any_of", "not", "cui", "tags", "max", "min", "dish"})

GROUPS: dict[str, tuple[str, ...]] = {
    "tomato": ("tomato", "cherry tomatoes", "roma tomatoes", "crushed tomatoes", "canned tomato puree"),
    "onion": ("yellow onion", "red onion", "white onion", "shallots", "spring onions", "pearl onions"),
    "chili_fresh": ("green chilies", "jalapeno", "serrano pepper", "bird's eye chili", "habanero", "poblano pepper"),
    "rice": ("basmati rice", "jasmine rice", "sushi rice", "sticky rice", "arborio rice", "brown rice", "wild rice"),
    "noodles": (
        "rice noodles",
        "egg noodles",
        "soba noodles",
        "udon noodles",
        "glass noodles",
        "sweet potato noodles",
        "angel hair rice noodles",
        "konjac noodles",
    ),
    "pasta": ("penne pasta", "spaghetti", "fettuccine", "lasagna sheets", "orzo", "gnocchi"),
    "lentils": (
        "red lentils/masoor",
        "brown lentil/black masoor dal",
        "toor dal",
        "yellow moong dal",
        "urad dal",
        "chana dal",
    ),
    "beans": (
        "black beans",
        "kidney beans",
        "cannellini beans",
        "pinto beans",
        "lima beans",
        "refried beans",
        "black-eyed peas",
        "navy beans",
    ),
    "chicken": ("chicken thighs", "chicken breast", "whole chicken", "ground chicken"),
    "beef": ("ground beef", "beef chuck", "flank steak", "sirloin steak"),
    "pork": (
        "pork shoulder",
        "pork belly",
        "pork tenderloin",
        "ground pork",
        "pork ribs",
        "bacon",
        "pancetta",
        "prosciutto",
        "chorizo",
        "ham",
        "chinese sausage",
        "andouille sausage",
        "salami",
    ),
    "lamb": ("ground lamb", "lamb shoulder", "goat meat"),
    "shrimp": ("shrimp", "prawns"),
    "fish": (
        "salmon fillet",
        "tuna steak",
        "canned tuna",
        "cod fillet",
        "mackerel",
        "catfish fillet",
        "halibut",
        "red snapper",
        "sea bass",
        "sardines",
        "smoked salmon",
    ),
    "tofu": ("firm tofu", "silken tofu", "tofu"),
    "mushrooms": ("button mushrooms", "shiitake mushrooms", "enoki mushrooms", "wood ear mushrooms", "dried porcini"),
    "cilantro": ("fresh cilantro", "cilantro stems"),
    "coconut": ("coconut milk", "coconut cream", "coconut", "desiccated coconut"),
    "peppers": ("bell pepper", "red bell pepper", "green bell pepper", "roasted red peppers"),
    "lime": ("lime juice", "lime"),
    "lemon": ("lemon juice", "lemon"),
    "tortillas": ("corn tortillas", "flour tortillas"),
}
"""Everyday words for a family of catalog ingredients (``@name`` in a question's constraints)."""


def _data_path(name: str) -> Path:
    return Path(str(resources.files("pipelines") / "data" / name))


def load_questions(path: Path | None = None) -> list[dict[str, Any]]:
    """The hand-written questions with their constraints."""
    return read_jsonl_records(path or _data_path(QUESTIONS_FILE))


def load_dev_questions(path: Path | None = None) -> list[dict[str, Any]]:
    """The hand-written validation questions (``human_dev``) with their constraints."""
    return read_jsonl_records(path or _data_path(DEV_QUESTIONS_FILE))


def _expand(spec: str, known: set[str], where: str) -> set[str]:
    if spec.startswith("@"):
        members = GROUPS.get(spec[1:])
        if members is None:
            raise InputError(f"{where}: unknown ingredient group {spec!r}")
        present = set(members) & known
        if not present:
            raise InputError(f"{where}: no ingredient of group {spec!r} is in the catalog")
        return present
    if spec not in known:
        raise InputError(f"{where}: unknown ingredient {spec!r}")
    return {spec}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def judge(catalog: pd.DataFrame, questions: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Per question, the catalog rows (in catalog order) that meet every one of its constraints."""
    known = {i for ings in catalog["ingredients"] for i in ings}
    cuisines = set(catalog["cuisine"])
    tags_known = {t for ts in catalog["diet_tags"] for t in ts}
    dishes = {dish_of(n) for n in catalog["name"]}
    rows = [
        (set(ings), cui, set(tags), int(minutes), dish_of(name))
        for ings, cui, tags, minutes, name in zip(
            catalog["ingredients"],
            catalog["cuisine"],
            catalog["diet_tags"],
            catalog["total_time_min"],
            catalog["name"],
            strict=True,
        )
    ]
    out: list[list[int]] = []
    for no, q in enumerate(questions, start=1):
        where = f"question {no} ({q.get('q')!r})"
        extra = set(q) - KEYS
        if extra or not isinstance(q.get("q"), str) or not q["q"].strip():
            raise InputError(f"{where}: needs a text 'q'; unknown key(s) {sorted(extra)}")
        need = [_expand(s, known, where) for s in _as_list(q.get("ing", []))]
        any_of = set().union(*(_expand(s, known, where) for s in _as_list(q.get("any_of", []))))
        banned = set().union(*(_expand(s, known, where) for s in _as_list(q.get("not", []))))
        cui = q.get("cui")
        if cui is not None and cui not in cuisines:
            raise InputError(f"{where}: unknown cuisine {cui!r}")
        tags = set(_as_list(q.get("tags", [])))
        if tags - tags_known:
            raise InputError(f"{where}: unknown diet tag(s) {sorted(tags - tags_known)}")
        dish = set(_as_list(q["dish"])) if "dish" in q else None
        if dish is not None and dish - dishes:
            raise InputError(f"{where}: unknown dish(es) {sorted(dish - dishes)}")
        hi, lo = q.get("max"), q.get("min")
        hits = [
            i
            for i, (ings, c, ts, minutes, d) in enumerate(rows)
            if all(ings & alts for alts in need)
            and (not any_of or ings & any_of)
            and not ings & banned
            and (cui is None or c == cui)
            and tags <= ts
            and (hi is None or minutes <= hi)
            and (lo is None or minutes >= lo)
            and (dish is None or d in dish)
        ]
        if not hits:
            raise InputError(f"{where}: no catalog recipe meets it")
        out.append(hits)
    return out


def judged_records(catalog: pd.DataFrame, questions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    names = list(catalog["name"])
    return [
        {"question": q["q"], "answers": [names[i] for i in hits]}
        for q, hits in zip(questions, judge(catalog, questions), strict=True)
    ]


def dump_jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_judged(catalog: pd.DataFrame, path: Path | None = None) -> Path:
    """Judge the bundled questions against ``catalog`` and write ``human_eval.jsonl``."""
    path = path or _data_path(JUDGED_FILE)
    path.write_text(dump_jsonl(judged_records(catalog, load_questions())), encoding="utf-8")
    return path


def load_judged(path: Path | None = None) -> list[dict[str, Any]]:
    """``[{"question": ..., "answers": [recipe name, ...]}, ...]`` as the eval reads them."""
    return read_jsonl_records(path or _data_path(JUDGED_FILE))


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.catalog import load_catalog
    from pipelines.config import CatalogConfig

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        path = write_judged(load_catalog(CatalogConfig()), Path(args[0]) if args else None)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    judged = load_judged(path)
    n_answers = [len(r["answers"]) for r in judged]
    print(f"wrote {path}: {len(judged)} questions, {sum(n_answers)} answers (1..{max(n_answers)} per question)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
