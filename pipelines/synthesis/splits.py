"""The grouped split: pairs wanted per split and intent, each family's subjects, and their cut into
disjoint train/validation/eval groups."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipelines.config import SynthesisConfig
from pipelines.schemas import SPLITS
from pipelines.synthesis.catalog_index import CatalogIndex
from pipelines.synthesis.wordings import INTENTS, QUICK_MINUTES

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


# --- group universes ------------------------------------------------------------------------------

FAMILY = {
    "ingredient_pair": "pair",
    "diet_tags": "recipe",
    "recipe_ingredients": "recipe",
    "recipe_card": "recipe",
    "diet_and_ingredient": "diet",
    "quick_recipes": "quick",
}


def family_universe(idx: CatalogIndex, family: str, rng: np.random.Generator) -> list[tuple]:  # type: ignore[type-arg]
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


def pair_universe(idx: CatalogIndex, rng: np.random.Generator, need: int) -> list[tuple[str, str]]:
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


def assign_groups(
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
