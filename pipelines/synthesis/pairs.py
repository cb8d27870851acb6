""":func:`synthesize`: every split's pairs, family by family, then the alias-definition pairs and the
extra eval slices."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import SynthesisConfig
from pipelines.errors import InputError
from pipelines.schemas import SPLITS, normalize_text
from pipelines.synthesis.catalog_index import CatalogIndex, build_index
from pipelines.synthesis.names import Say, glossary_pairs, heldout_forms, replace_names
from pipelines.synthesis.recipe_card import Need, card_need, correct_recipes
from pipelines.synthesis.render import answer_for, group_id_for, question_for
from pipelines.synthesis.slices import (
    HAND_SLICES,
    VALIDATION_SLICE,
    human_rows,
    other_catalog_rows,
    unseen_ingredient_rows,
)
from pipelines.synthesis.splits import FAMILY, assign_groups, family_universe, margin_for, pair_universe, split_targets
from pipelines.synthesis.wordings import INTENTS, templates, wordings

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
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants)
    if len(idx.names) < 2 or len(idx.by_ingredient) < 2:
        raise InputError("catalog too small: need at least 2 recipes and 2 ingredients")

    frames: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for fam_no, family in enumerate(("pair", "recipe", "diet", "quick")):
        intents = [k for k in INTENTS if FAMILY[k] == family]
        fam_need = {s: sum(need[s][k] for k in intents) for s in SPLITS}
        total = sum(fam_need.values())
        if total == 0:
            continue
        if progress:
            progress(f"synthesizing {', '.join(intents)}")
        rng = np.random.default_rng([seed, fam_no])
        universe = pair_universe(idx, rng, total) if family == "pair" else family_universe(idx, family, rng)
        groups = assign_groups(universe, fam_need, intents, need)
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
                for slice_name, heldout, count in plan:
                    if count:
                        out += _rows(
                            idx, intent, split_groups, count, heldout, slice_name, cfg, rng, answer_budget_chars,
                            training=split != "eval",
                        )  # fmt: skip
    if cfg.alias_pairs > 0:
        frames[("train", ALIAS_INTENT)] = _alias_rows(idx, cfg, np.random.default_rng([seed, 11]))

    if need["eval"]["ingredient_pair"] and cfg.other_catalog:
        taken = {row[2] for (_, intent), rows in frames.items() if intent == "ingredient_pair" for row in rows}
        frames[("eval", "ingredient_pair")] += other_catalog_rows(
            idx, cfg, np.random.default_rng([seed, 13]), taken, answer_budget_chars
        )
    if need["eval"]["recipe_card"]:
        extra = frames.setdefault(("eval", "extra"), [])
        if progress:
            progress("adding the unseen_ingredient and human eval slices")
        extra += unseen_ingredient_rows(idx, cfg, np.random.default_rng([seed, 7]), answer_budget_chars)
        if cfg.human_eval:
            extra += human_rows(catalog, idx, answer_budget_chars)
    if cfg.human_dev and any(need["validation"].values()):
        if progress:
            progress("adding the human_dev validation slice")
        frames[("validation", "extra")] = human_rows(catalog, idx, answer_budget_chars, VALIDATION_SLICE)

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
    return _without_human_questions(pd.concat(parts, ignore_index=True)[[*COLUMNS, *ANSWER_COLUMNS]])


def _without_human_questions(pairs: pd.DataFrame) -> pd.DataFrame:
    """Synthesized rows that ask a hand-written question (``human`` or ``human_dev``, normalized:
    "bibimbap") are dropped: in train it would leak into validation or eval, and in validation or eval the
    validator would keep the first of the two rows and drop the hand-written one. The spares fill their
    place."""
    hand = pairs["slice"].isin(HAND_SLICES)
    if not hand.any():
        return pairs
    keys = normalize_text(pairs["anchor"])
    clash = ~hand & keys.isin(set(keys[hand]))
    return pairs[~clash].reset_index(drop=True) if clash.any() else pairs


def _rows(
    idx: CatalogIndex,
    intent: str,
    groups: list[tuple],  # type: ignore[type-arg]
    n: int,
    heldout: bool | None,
    slice_name: str,
    cfg: SynthesisConfig,
    rng: np.random.Generator,
    budget: int,
    training: bool = False,
) -> list[tuple[Any, ...]]:
    """``n`` rows cycling over ``groups``; each round gives every group its next wording.

    ``training`` (train and validation rows; eval's draws stay the same): a group's answer names its
    ingredients by alternate names with ``answer_alias_probability`` (the names run both ways: a user's
    catalog may call ``spring onions`` ``scallions``), and with ``everyday_names`` alternate names are
    picked by :func:`~pipelines.synthesis.names.everyday_weights`.

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
    say = Say(rng, cfg.alias_probability, unseen=bool(heldout), everyday=training and cfg.everyday_names)
    rename = cfg.answer_alias_probability if training else 0.0
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
            text, named = answer_for(idx, intent, subject, budget)
            correct = named
            if intent == "recipe_card":
                needs[g] = card_need(
                    idx, subject[0], np.random.default_rng([cfg.seed, 99, subject[0]]), cfg.card_dish_probability
                )
                correct = tuple(correct_recipes(idx, needs[g]))
            if rename and say.uniform() < rename:
                text = _rename_answer(text, _answer_ingredients(idx, intent, subject), idx, say)
            known[g] = (text, group_id_for(idx, intent, subject), named, correct)
        shown = subject[::-1] if swap[g] else subject
        question = question_for(idx, intent, shown, pool[t], say, needs.get(g))
        text, group_id, named, correct = known[g]
        out.append((question, text, group_id, slice_name, named, correct, ()))
    return out


def _answer_ingredients(idx: CatalogIndex, intent: str, subject: tuple) -> list[str]:  # type: ignore[type-arg]
    if intent == "ingredient_pair":
        return list(subject)
    if intent == "diet_and_ingredient":
        return [subject[1]]
    if intent in ("recipe_ingredients", "recipe_card"):
        return idx.ingredient_lists[subject[0]]
    return []


def _rename_answer(text: str, ingredients: Iterable[str], idx: CatalogIndex, say: Say) -> str:
    """Each ingredient that has training names, with probability 1/2, by one of them (whole words only, in one
    pass: :func:`~pipelines.synthesis.names.replace_names`)."""
    # longest first, then by name: the same order in every process (a set's order depends on the hash seed)
    every = sorted(set(ingredients), key=lambda name: (-len(name), name))
    renames: dict[str, str] = {}
    for ing in every:
        names = idx.aliases.get(ing)
        if names is None or not names.seen or say.uniform() >= 0.5:
            continue
        renames[ing] = say.pick_name(names.seen)
    return replace_names(text, renames, every)


SYNTHESIS_FORMAT = 2
"""The synthesized texts' format, in every dataset key: raised when the same config writes different texts
(2: a recipe card is the recipe's one document, every ingredient in its own order), so a cached dataset of an
older format is made again rather than reused."""

ALIAS_INTENT = "alias_definition"
"""Train pairs ``alternate name -> catalog name`` (``aubergine`` -> ``eggplant``); never in validation or eval."""


def _alias_rows(idx: CatalogIndex, cfg: SynthesisConfig, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """``alias_pairs * n_train`` train pairs drawn from :func:`name_pool`. None in validation: it scores
    the questions that checkpoints and the base mix are chosen on, and a name pair is not one."""
    n = round(cfg.alias_pairs * cfg.n_train)
    pairs = name_pool(idx, cfg)
    order = rng.permutation(len(pairs))
    return [(pairs[k][0], pairs[k][1], f"alias:{pairs[k][2]}", "seen_wording", (), (), ()) for k in order[:n]]


def name_pool(idx: CatalogIndex, cfg: SynthesisConfig) -> list[tuple[str, str, str]]:
    """Every training name pair ``(name, other name, synonym class)``: the catalog's alternate names to
    its ingredients (``aubergine`` -> ``eggplant``) and, with ``glossary``, the same pairs the other way
    and every pair of names in the bundled glossary and alias table, both ways, beyond the catalog's
    ingredients. No pair holds a held-out name (nor its plural/singular form), nor two spellings that
    normalize to one text (``confectioners' sugar``, ``confectioners sugar``). The class
    (:func:`synonym_classes`) joins every name linked by a chain of pairs."""
    pairs = [(alt, ing) for ing, names in sorted(idx.aliases.items()) for alt in names.seen]
    if cfg.glossary:
        pairs += [(ing, alt) for alt, ing in pairs]
        held = heldout_forms(idx.aliases)
        pairs += [(a, b) for a, b, _ in glossary_pairs(cfg.heldout_fraction) if a not in held and b not in held]
        pairs = list(dict.fromkeys(pairs))
    same = normalize_text(pd.Series([a for a, _ in pairs], dtype=object)) == normalize_text(
        pd.Series([b for _, b in pairs], dtype=object)
    )
    pairs = [p for p, drop in zip(pairs, same.tolist(), strict=True) if not drop]  # "confectioners' sugar"
    kind = synonym_classes(pairs)
    return [(a, b, kind[a]) for a, b in pairs]


def name_pairs(catalog: pd.DataFrame, cfg: SynthesisConfig) -> pd.DataFrame:
    """:func:`name_pool` as a table (``anchor``, ``positive``, ``group_id`` = the synonym class): the
    names stage's pairs (:mod:`pipelines.names_stage`), written beside the splits as ``names.parquet``."""
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants)
    return pd.DataFrame(name_pool(idx, cfg), columns=["anchor", "positive", "group_id"])


def synonym_classes(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each name of ``pairs`` -> the first name (in sorted order) of the names it is linked to by any chain
    of pairs. An alias row's ``group_id`` is its class, so the miner never takes a synonym of the anchor
    (nor the anchor itself, the other way round) as its negative."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: root(x) for x in parent}
