"""Build the bundled recipe catalog ``pipelines/data/recipes.jsonl`` (deterministic).

Usage: ``python scripts/build_catalog.py [--seed 7] [--out pipelines/data/recipes.jsonl]``

Each recipe is a person's name + a real dish ("Sneha's Aloo Baingan"), a cuisine, the dish's core
ingredients plus a few pantry extras of the same cuisine, diet tags derived from the ingredients
(so they are always consistent) and a total time in minutes. Every ingredient of the pool is used
by at least one recipe. The source lists live in ``pipelines/data/catalog_source.json``. The output
is committed: it ships with the package.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "pipelines" / "data" / "catalog_source.json"


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


_SRC = json.loads(SOURCE.read_text(encoding="utf-8"))

# Ingredients by diet-relevant category: meat, seafood, dairy, egg, honey, nuts, gluten, plant.
CATEGORIES: dict[str, list[str]] = _SRC["categories"]
CATEGORY_OF: dict[str, str] = {ing: cat for cat, items in CATEGORIES.items() for ing in items}
# A few pantry items that belong to a second category as well.
ALSO: dict[str, set[str]] = {k: set(v) for k, v in _SRC["also"].items()}
# (dish, cuisine, core ingredients, typical minutes)
DISHES: list[tuple[str, str, str, int]] = [(d, c, core, int(m)) for d, c, core, m in _SRC["dishes"]]
# Spellings in the dish and pantry lists -> the pool's name.
ALIASES: dict[str, str] = _SRC["normalize"]
PEOPLE: list[str] = _SRC["people"]
TIME_JITTER: tuple[int, ...] = tuple(_SRC["time_jitter"])


def _pantry(cuisine: str) -> list[str]:
    """Pantry extras that a cook of this cuisine plausibly adds."""
    common: list[str] = _SRC["pantry_common"]
    by_cuisine: dict[str, list[str]] = _SRC["pantry_by_cuisine"]
    return [ALIASES.get(i, i) for i in common + by_cuisine.get(cuisine, []) if ALIASES.get(i, i) in CATEGORY_OF]


def diet_tags(ingredients: list[str]) -> list[str]:
    cats: set[str] = set()
    for ing in ingredients:
        cats.add(CATEGORY_OF[ing])
        cats |= ALSO.get(ing, set())
    tags = []
    animal = cats & {"meat", "seafood"}
    if not animal:
        tags.append("vegetarian")
        if not cats & {"dairy", "egg", "honey"}:
            tags.append("vegan")
    elif animal == {"seafood"}:
        tags.append("pescatarian")
    if "gluten" not in cats:
        tags.append("gluten-free")
    if "dairy" not in cats:
        tags.append("dairy-free")
    if "nuts" not in cats:
        tags.append("nut-free")
    if "egg" not in cats:
        tags.append("egg-free")
    return tags


def _compatible(ing: str, core_cats: set[str]) -> bool:
    """Extras never turn a vegetarian dish into a meat or fish dish, nor a vegan one non-vegan."""
    cat = CATEGORY_OF[ing]
    if cat in {"meat", "seafood"} and not core_cats & {"meat", "seafood"}:
        return False
    vegan_core = not core_cats & {"meat", "seafood", "dairy", "egg", "honey"}
    return not (vegan_core and cat in {"dairy", "egg", "honey"})


def build(seed: int, per_dish: int = 3) -> list[dict[str, object]]:
    rng = random.Random(seed)
    pool = sorted(CATEGORY_OF)
    unused = [i for i in pool]
    rng.shuffle(unused)
    people = list(PEOPLE)
    recipes: list[dict[str, object]] = []
    names: set[str] = set()
    for dish, cuisine, core_text, minutes in DISHES:
        core = [ALIASES.get(i, i) for i in _split(core_text)]
        missing = [i for i in core if i not in CATEGORY_OF]
        if missing:
            raise SystemExit(f"{dish}: unknown ingredients {missing}")
        core_cats = {CATEGORY_OF[i] for i in core}
        pantry = [i for i in _pantry(cuisine) if i not in core and _compatible(i, core_cats)]
        for person in rng.sample(people, per_dish):
            name = f"{person}'s {dish}"
            if name in names:
                continue
            names.add(name)
            extras = rng.sample(pantry, k=min(len(pantry), rng.randint(2, 4)))
            # Spread the whole pool over the catalog: one not-yet-used compatible ingredient per recipe.
            for j, cand in enumerate(unused):
                if cand not in core and cand not in extras and _compatible(cand, core_cats):
                    extras.append(unused.pop(j))
                    break
            ingredients = list(dict.fromkeys(core + extras))
            recipes.append(
                {
                    "name": name,
                    "cuisine": cuisine,
                    "ingredients": ingredients,
                    "diet_tags": diet_tags(ingredients),
                    "total_time_min": max(5, minutes + rng.choice(TIME_JITTER)),
                }
            )
    recipes.sort(key=lambda r: str(r["name"]))
    return recipes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "pipelines/data/recipes.jsonl")
    args = ap.parse_args()
    recipes = build(args.seed)
    used = {i for r in recipes for i in r["ingredients"]}  # type: ignore[attr-defined]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recipes), encoding="utf-8")
    print(f"{args.out}: {len(recipes)} recipes, {len(used)} distinct ingredients (pool {len(CATEGORY_OF)})")


if __name__ == "__main__":
    main()
