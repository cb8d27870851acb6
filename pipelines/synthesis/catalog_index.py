"""Lookup tables built once from a catalog: recipes by ingredient, tags, times, pairs and names."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.synthesis.names import Names, catalog_aliases, split_names, unseen_ingredients, with_variants
from pipelines.synthesis.wordings import wording_data


@dataclass(frozen=True)
class CatalogIndex:
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


def build_index(
    catalog: pd.DataFrame, fraction: float, ingredient_fraction: float = 0.0, variants: bool = False
) -> CatalogIndex:
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
    return CatalogIndex(
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
        aliases=split_names(table, fraction, held),
        unseen_ingredients=frozenset(held),
        diets=split_names(data["diet_paraphrases"], fraction),
        time_names={int(m): n for m, n in split_names(data["time_phrases"], fraction).items()},
    )
