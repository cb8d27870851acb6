"""Seeded synthesis: sizes, intent mix, wordings, alternate names, held-out wordings, recipe cards,
answers true to the catalog, grouped split, eval slices."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from pipelines.catalog import load_catalog
from pipelines.config import CatalogConfig, SynthesisConfig, load_config
from pipelines.errors import InputError
from pipelines.schemas import SPLITS, normalize_text
from pipelines.synthesis import (
    ALIAS_INTENT,
    EXTRA_EVAL_SLICES,
    INTENTS,
    REGISTERS,
    SLICES,
    bundled_aliases,
    is_correct_answer,
    margin_for,
    name_variants,
    relevant_cards,
    split_targets,
    synthesize,
    templates,
)
from pipelines.synthesis import wordings as synthesis_wordings
from pipelines.synthesis.catalog_index import build_index
from pipelines.synthesis.names import bundled_glossary, catalog_aliases, heldout_forms, replace_names, with_variants
from pipelines.synthesis.slices import HAND_SLICES, VALIDATION_SLICE, names_eval_only


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return load_catalog(CatalogConfig())


@pytest.fixture(scope="module")
def smoke_pairs(catalog: pd.DataFrame) -> pd.DataFrame:
    return synthesize(catalog, load_config("smoke").synthesis)


@pytest.fixture(scope="module")
def cpu_pairs(catalog: pd.DataFrame) -> pd.DataFrame:
    return synthesize(catalog, load_config("cpu").synthesis)


@pytest.fixture(scope="module")
def default_pairs(catalog: pd.DataFrame) -> pd.DataFrame:
    return synthesize(catalog, load_config("default").synthesis)


@pytest.mark.parametrize("profile", ["default", "smoke", "cpu"])
def test_targets_add_up_to_the_configured_sizes(profile: str) -> None:
    cfg = load_config(profile).synthesis
    t = split_targets(cfg)
    assert sum(t["train"].values()) + sum(t["validation"].values()) == cfg.n_train
    assert sum(t["eval"].values()) == cfg.n_eval
    assert all(n >= 0 for s in t.values() for n in s.values())


def test_targets_follow_the_intent_weights() -> None:
    cfg = SynthesisConfig(n_train=1000, n_eval=100, intent_weights={"diet_tags": 3, "quick_recipes": 1})
    t = split_targets(cfg)
    train_all = {k: t["train"][k] + t["validation"][k] for k in INTENTS}
    assert train_all == {"ingredient_pair": 0, "diet_tags": 750, "recipe_ingredients": 0,
                         "diet_and_ingredient": 0, "quick_recipes": 250, "recipe_card": 0}  # fmt: skip
    assert t["eval"]["diet_tags"] == 75 and t["eval"]["quick_recipes"] == 25


def test_default_size_is_the_seed_scale(default_pairs: pd.DataFrame) -> None:
    counts = default_pairs["split"].value_counts()
    hand = default_pairs["slice"] == VALIDATION_SLICE  # the hand-written validation questions, beside the targets
    assert hand.sum() > 200 and (default_pairs.loc[hand, "split"] == "validation").all()
    assert counts["train"] + counts["validation"] - hand.sum() == 60_323
    extra = default_pairs["slice"].isin(EXTRA_EVAL_SLICES)
    assert counts["eval"] - extra.sum() == 6_703
    assert (default_pairs.loc[extra, "split"] == "eval").all()
    # every intent present in the configured mix
    share = default_pairs["intent"].value_counts(normalize=True)
    assert set(share.index) == set(INTENTS)
    weights = load_config("default").synthesis.intent_weights
    for intent in INTENTS:
        assert share[intent] == pytest.approx(weights[intent] / sum(weights.values()), abs=0.01)


def test_margin_adds_spares_per_split_and_intent(catalog: pd.DataFrame) -> None:
    cfg = load_config("smoke").synthesis
    pairs = synthesize(catalog, cfg, margin=0.05)
    t = split_targets(cfg)
    got = pairs[~pairs["slice"].isin(EXTRA_EVAL_SLICES)].groupby(["split", "intent"]).size()
    for s in SPLITS:
        for k in INTENTS:
            assert got.get((s, k), 0) == t[s][k] + margin_for(t[s][k], 0.05)


def test_grouped_split_has_no_shared_subject_or_question(default_pairs: pd.DataFrame) -> None:
    per_group = default_pairs.groupby("group_id")["split"].nunique()
    assert per_group.max() == 1
    norm = default_pairs["anchor"].str.lower().str.replace(r"\W+", " ", regex=True).str.strip()
    per_question = default_pairs.assign(q=norm).groupby("q")["split"].nunique()
    assert per_question.max() == 1
    # a recipe is one subject for both recipe intents
    recipe_groups = default_pairs[default_pairs["intent"].isin(["diet_tags", "recipe_ingredients"])]
    assert recipe_groups.groupby("group_id")["split"].nunique().max() == 1
    assert recipe_groups["group_id"].str.startswith("recipe:").all()


def test_questions_are_unique_and_answers_constant_per_group(default_pairs: pd.DataFrame) -> None:
    assert not default_pairs.duplicated(["anchor", "positive"]).any()
    assert default_pairs.groupby(["group_id", "intent"])["positive"].nunique().max() == 1


def _pattern(text: str) -> re.Pattern[str]:
    body = re.sub(r"\\\{\w+\\\}", ".+", re.escape(text).replace("\\{kind\\}", ".*"))
    return re.compile("^" + body.replace("a\\ .+", "an?\\ .+") + "$", re.IGNORECASE)


@pytest.mark.parametrize("intent", INTENTS)
def test_at_least_60_wordings_per_intent_in_every_register(intent: str) -> None:
    all_t = templates(intent, 0.2)
    assert len(all_t) >= 60 and len({t.text for t in all_t}) == len(all_t)
    by_register = {r: [t for t in all_t if t.register == r] for r in REGISTERS}
    assert all(len(ts) >= 8 for ts in by_register.values()), {r: len(ts) for r, ts in by_register.items()}
    # the lower-case register has no capitals or final punctuation; misspellings are not the plain words
    assert all(t.text == t.text.lower() and not t.text.endswith(("?", ".")) for t in by_register["lower"])
    held = [t for t in all_t if t.heldout]
    assert len(held) == round(len(all_t) * 0.2)
    assert len({t.register for t in held}) >= 2


@pytest.mark.parametrize("intent", INTENTS)
def test_no_wording_dominates_and_all_training_wordings_are_used(intent: str, cpu_pairs: pd.DataFrame) -> None:
    rows = cpu_pairs[(cpu_pairs["intent"] == intent) & (cpu_pairs["split"] == "train")]
    pool = [t for t in templates(intent, 0.2) if not t.heldout]
    # the most generic wordings ("{need}") match everything: count each row once, most specific first
    order = sorted(pool, key=lambda t: -len(re.sub(r"\{\w+\}", "", t.text)))
    hits: dict[str, int] = {}
    for q in rows["anchor"]:
        for t in order:
            if _pattern(t.text).match(q):
                hits[t.text] = hits.get(t.text, 0) + 1
                break
    assert sum(hits.values()) == len(rows)
    assert max(hits.values()) / len(rows) <= 3 / len(pool)
    assert len(hits) >= 0.8 * len(pool)


def test_ingredient_pair_answers_are_true_to_the_catalog(catalog: pd.DataFrame, default_pairs: pd.DataFrame) -> None:
    asked = default_pairs[(default_pairs["intent"] == "ingredient_pair") & (default_pairs["slice"] != "other_catalog")]
    pairs = asked.sample(3000, random_state=0)  # other_catalog answers name things as another catalog would
    by_ing: dict[str, set[str]] = {}
    for name, ings in zip(catalog["name"], catalog["ingredients"], strict=True):
        for i in ings:
            by_ing.setdefault(i, set()).add(name)
    n_found = 0
    for gid, pos in zip(pairs["group_id"], pairs["positive"], strict=True):
        a, b = gid.removeprefix("pair:").split("|")
        both = by_ing.get(a, set()) & by_ing.get(b, set())
        if both:
            n_found += 1
            listed = pos.split(": ", 1)[1]
            assert any(name in listed for name in both)
            assert a in pos and b in pos
        else:
            assert pos in (f"No recipes found with these {a} and {b}!", f"No recipes found with these {b} and {a}!")
    assert 0.15 < n_found / len(pairs) < 0.5  # both kinds of answer are well represented


def test_diet_tag_answers_name_the_recipe_and_its_tags(catalog: pd.DataFrame, smoke_pairs: pd.DataFrame) -> None:
    tags_of = dict(zip(catalog["name"], catalog["diet_tags"], strict=True))
    rows = smoke_pairs[smoke_pairs["intent"] == "diet_tags"]
    assert len(rows) > 0
    for gid, q, pos in zip(rows["group_id"], rows["anchor"], rows["positive"], strict=True):
        name = gid.removeprefix("recipe:")
        assert name.lower() in q.lower() and pos.startswith(name)
        for tag in tags_of[name]:
            assert tag in pos


def test_quick_recipe_answers_respect_the_time_limit(catalog: pd.DataFrame, smoke_pairs: pd.DataFrame) -> None:
    time_of = dict(zip(catalog["name"], catalog["total_time_min"], strict=True))
    rows = smoke_pairs[smoke_pairs["intent"] == "quick_recipes"]
    for gid, pos in zip(rows["group_id"], rows["positive"], strict=True):
        minutes = int(gid.split(":")[1].split("|")[0])
        for name, t in re.findall(r"([A-Z][^,:]*?'s [^,(]+) \((\d+) min\)", pos):
            assert int(t) <= minutes and time_of[name.strip()] == int(t)


def test_same_seed_same_pairs_other_seed_different(catalog: pd.DataFrame) -> None:
    cfg = load_config("smoke").synthesis
    a = synthesize(catalog, cfg)
    b = synthesize(catalog, cfg)
    c = synthesize(catalog, cfg, seed=cfg.seed + 1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_catalog_too_small_is_a_clear_error(catalog: pd.DataFrame) -> None:
    cfg = SynthesisConfig(n_train=5000, n_eval=500, intent_weights={"diet_tags": 1})
    with pytest.raises(InputError, match=r"catalog too small for \d+ diet_tags pairs"):
        synthesize(catalog.head(20), cfg)
    with pytest.raises(InputError, match="catalog too small"):
        synthesize(catalog.head(1), load_config("smoke").synthesis)


def test_long_answers_are_cut_to_the_budget(catalog: pd.DataFrame) -> None:
    cfg = SynthesisConfig(n_train=200, n_eval=40, intent_weights={"recipe_ingredients": 1, "quick_recipes": 1})
    short = synthesize(catalog, cfg, answer_budget_chars=80)
    long = synthesize(catalog, cfg, answer_budget_chars=2000)
    assert short["positive"].str.len().max() < long["positive"].str.len().max()
    assert short["positive"].str.contains(r" and \d+ more\.$").any()


# --- alternate names, held-out wordings, eval slices, recipe cards ---------------------------------


def test_bundled_aliases_are_real_catalog_ingredients_and_unambiguous(catalog: pd.DataFrame) -> None:
    table = bundled_aliases()
    ingredients = {i for ings in catalog["ingredients"] for i in ings}
    assert len(table) >= 200
    assert set(table) <= ingredients
    owners: dict[str, str] = {}
    for canonical, alts in table.items():
        assert alts, canonical
        for alt in alts:
            assert alt not in ingredients, f"{alt!r} ({canonical}) is itself a catalog ingredient"
            assert owners.setdefault(alt, canonical) == canonical, f"{alt!r} names two ingredients"
    for canonical, alt in [("eggplant", "aubergine"), ("eggplant", "brinjal"), ("green zucchini", "courgette"),
                           ("fresh cilantro", "coriander leaves"), ("chickpeas", "garbanzo beans"),
                           ("bell pepper", "capsicum"), ("arugula", "rocket")]:  # fmt: skip
        assert alt in table[canonical]


def _mentions(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(question, ingredient) for every ingredient of the ingredient-pair rows."""
    out = []
    for gid, q in zip(rows["group_id"], rows["anchor"], strict=True):
        for ing in gid.removeprefix("pair:").split("|"):
            out.append((q.lower(), ing))
    return out


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_alias_probability_is_honoured_and_answers_keep_catalog_names(catalog: pd.DataFrame, p: float) -> None:
    cfg = SynthesisConfig(n_train=1500, n_eval=100, alias_probability=p, intent_weights={"ingredient_pair": 1})
    pairs = synthesize(catalog, cfg)
    train = pairs[pairs["split"] == "train"]
    table = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction).aliases
    named = [(q, ing) for q, ing in _mentions(train) if table.get(ing) and table[ing].seen]
    used_alias = [any(a.lower() in q for a in table[ing].seen) and ing not in q for q, ing in named]
    share = sum(used_alias) / len(used_alias)
    assert share == pytest.approx(p, abs=0.06)
    for gid, pos in zip(train["group_id"], train["positive"], strict=True):
        a, b = gid.removeprefix("pair:").split("|")
        assert a in pos and b in pos  # the catalog's names, never an alias


def test_heldout_wordings_and_names_never_reach_train_or_validation(
    catalog: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    data = copy.deepcopy(synthesis_wordings.wording_data())
    ids: dict[str, str] = {}
    for by_register in data["wordings"].values():
        for register, texts in by_register.items():
            tagged = []
            for text in texts:
                tag = f"wq{len(ids)}x"
                ids[tag] = text
                tagged.append(f"{text} {tag}")
            by_register[register] = tagged
    monkeypatch.setattr(synthesis_wordings, "wording_data", lambda: data)
    templates.cache_clear()
    try:
        cfg = load_config("cpu").synthesis
        pairs = synthesize(catalog, cfg)
        held = {t.text.rsplit(" ", 1)[1] for k in INTENTS for t in templates(k, cfg.heldout_fraction) if t.heldout}
    finally:
        templates.cache_clear()
    # hand-written questions and alias-definition pairs do not come from the wordings
    pairs = pairs[~pairs["slice"].isin(HAND_SLICES) & (pairs["intent"] != ALIAS_INTENT)]
    tag_of = pairs["anchor"].str.extract(r"(wq\d+x)$")[0]
    assert tag_of.notna().all()
    train_val = pairs["split"] != "eval"
    assert not tag_of[train_val].isin(held).any()
    unseen = pairs["slice"] == "unseen_wording"
    assert tag_of[unseen].isin(held).all() and unseen.sum() > 0
    assert not tag_of[pairs["slice"] == "seen_wording"].isin(held).any()

    # held-out alternate names: none in a training question (after removing the names training may use)
    table = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction).aliases
    assert sum(len(n.unseen) for n in table.values()) >= 50
    rows = pairs[train_val & (pairs["intent"] == "ingredient_pair")]
    for q, ing in _mentions(rows):
        names = table.get(ing)
        if not names or not names.unseen:
            continue
        rest = q
        for allowed in sorted([ing, *names.seen], key=len, reverse=True):
            rest = rest.replace(allowed.lower(), " ")
        for alt in names.unseen:
            assert not re.search(rf"(?<!\w){re.escape(alt.lower())}(?!\w)", rest), (q, alt)


def test_eval_has_every_slice_and_train_only_seen_wordings(cpu_pairs: pd.DataFrame) -> None:
    ev = cpu_pairs[cpu_pairs["split"] == "eval"]
    assert set(ev["slice"]) == set(SLICES)
    assert (ev["slice"].isin(["recipe_card", "human", "unseen_ingredient"]) == (ev["intent"] == "recipe_card")).all()
    assert (ev.loc[ev["slice"] == "other_catalog", "intent"] == "ingredient_pair").all()
    targeted = ev[~ev["slice"].isin(EXTRA_EVAL_SLICES)]
    share = (targeted.loc[targeted["intent"] != "recipe_card", "slice"] == "unseen_wording").mean()
    assert share == pytest.approx(load_config("cpu").synthesis.unseen_eval_fraction, abs=0.05)
    hand = cpu_pairs["slice"] == VALIDATION_SLICE
    assert hand.sum() > 200 and (cpu_pairs.loc[hand, "split"] == "validation").all()
    assert (cpu_pairs.loc[(cpu_pairs["split"] != "eval") & ~hand, "slice"] == "seen_wording").all()


def test_recipe_cards_answer_their_need(catalog: pd.DataFrame, cpu_pairs: pd.DataFrame) -> None:
    rows = cpu_pairs[
        (cpu_pairs["intent"] == "recipe_card") & ~cpu_pairs["slice"].isin([*EXTRA_EVAL_SLICES, *HAND_SLICES])
    ]
    assert len(rows) > 50
    by_name = {n: i for i, n in enumerate(catalog["name"])}
    ingredients = {i for ings in catalog["ingredients"] for i in ings}
    # train/validation answers may name an ingredient by an alternate name (names run both ways); eval never
    alternates = with_variants(catalog_aliases(catalog), ingredients)
    eval_cards: dict[str, set[str]] = {}
    for gid, pos, named, correct, split in zip(rows["group_id"], rows["positive"], rows["answer_recipes"],
                                               rows["correct_recipes"], rows["split"], strict=True):  # fmt: skip
        name = gid.removeprefix("card:")
        i = by_name[name]
        r = catalog.iloc[i]
        assert pos.startswith(f"{name}: {r['cuisine']}, {r['total_time_min']} min, ")
        assert named == (i,) and i in correct
        # the recipe's one document, whatever the question names: its ingredients in its own order (train and
        # validation may rename some)
        listed = pos.split("Ingredients: ", 1)[1].removesuffix(".").split(", ")
        head, last = listed[:-1], listed[-1]
        cut = re.fullmatch(r"(.+) and \d+ more", last)
        head += [cut.group(1)] if cut else [last] if len(listed) == 1 else last.split(" and ", 1)
        if split == "eval":
            assert head == list(r["ingredients"])[: len(head)], (name, pos)
        else:
            assert len(head) <= len(r["ingredients"])
            assert all(x == ing or x in alternates.get(ing, ()) for x, ing in zip(head, r["ingredients"], strict=False))
        if split == "eval":
            eval_cards.setdefault(name, set()).add(pos)
    # one text per recipe in eval, and the same text the hand-written questions' correct cards hold
    assert all(len(v) == 1 for v in eval_cards.values())
    hand_cards = {c.split(": ", 1)[0]: c for cards in cpu_pairs.loc[cpu_pairs["slice"] == "human", "correct_cards"]
                  for c in cards}  # fmt: skip
    shared = [n for n in eval_cards if n in hand_cards]
    assert len(shared) > 20
    assert all(eval_cards[n] == {hand_cards[n]} for n in shared)
    # questions describe a need, not the recipe's name
    assert not any(n.lower() in q.lower() for n, q in zip(rows["group_id"].str[5:], rows["anchor"], strict=True))


def test_renaming_an_answer_touches_each_name_once() -> None:
    # a name inside a longer one stays; a name just written is not renamed again
    assert replace_names("peanut butter and butter", {"butter": "unsalted butter"}, ["peanut butter"]) == (
        "peanut butter and unsalted butter"
    )
    text = "Ingredients: garlic, chili garlic sauce, spring garlic and coconut milk."
    renames = {"garlic": "garlic cloves", "chili garlic sauce": "sambal", "coconut milk": "nariyal milk"}
    assert replace_names(text, renames, ["spring garlic"]) == (
        "Ingredients: garlic cloves, sambal, spring garlic and nariyal milk."
    )
    assert replace_names("eggs and egg yolks", {"egg": "hen's egg"}, ["egg yolks"]) == "eggs and egg yolks"
    assert replace_names("a\\b", {}) == "a\\b"


def test_correct_answers_for_negatives() -> None:
    # a listing naming exactly the question's recipes is correct; a different listing is not
    assert is_correct_answer("ingredient_pair", (1, 2), "diet_and_ingredient", (1, 2))
    assert not is_correct_answer("ingredient_pair", (1, 2), "quick_recipes", (1, 2, 3))
    # a recipe card is correct for a need its recipe meets, and for a listing that names it
    assert is_correct_answer("recipe_card", (4, 5), "recipe_card", (5,))
    assert not is_correct_answer("recipe_card", (4, 5), "recipe_card", (6,))
    assert is_correct_answer("quick_recipes", (4, 5), "recipe_card", (4,))
    # "no recipes" answers and per-recipe facts are only their own question's answer
    assert not is_correct_answer("diet_tags", (), "diet_tags", ())
    assert not is_correct_answer("ingredient_pair", (), "ingredient_pair", ())


def test_catalog_alias_column_is_used_in_questions_only(catalog: pd.DataFrame) -> None:
    cat = catalog.copy()
    cat["aliases"] = [[f"{ings[0]}=zzfoo{k}"] for k, ings in enumerate(cat["ingredients"])]
    cfg = SynthesisConfig(n_train=600, n_eval=60, alias_probability=1.0, heldout_fraction=0.0,
                          intent_weights={"diet_and_ingredient": 1})  # fmt: skip
    pairs = synthesize(cat, cfg)
    assert pairs["anchor"].str.contains("zzfoo").any()
    assert not pairs["positive"].str.contains("zzfoo").any()


def test_unseen_ingredients_are_named_by_alternates_only_in_eval(
    catalog: pd.DataFrame, cpu_pairs: pd.DataFrame
) -> None:
    cfg = load_config("cpu").synthesis
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction)
    held = idx.unseen_ingredients
    assert len(held) >= 5
    alts = {a.lower() for ing in held for a in idx.aliases[ing].unseen}
    assert all(not idx.aliases[ing].seen for ing in held)
    rows = cpu_pairs[cpu_pairs["slice"] == "unseen_ingredient"]
    assert len(rows) >= 2 * len(held) and (rows["split"] == "eval").all()
    for gid, q, correct in zip(rows["group_id"], rows["anchor"], rows["correct_recipes"], strict=True):
        ing, alt, cuisine = gid.removeprefix("unseen_ingredient:").split("|")
        assert ing in held and alt.lower() in q.lower()
        # correct: every recipe with the ingredient (and the cuisine, when the question names one)
        want = [j for j in idx.by_ingredient[ing] if cuisine == "any" or idx.cuisine_of[j] == cuisine]
        assert list(correct) == want
    # after removing every name training may use (catalog names and training alternates), none is left
    allowed = {n.lower() for ing, names in idx.aliases.items() for n in (ing, *names.seen)} | set(idx.by_ingredient)
    allowed |= {n.lower() for n in idx.names}  # recipe names ("Yaki Udon") in per-recipe questions
    strip = re.compile("|".join(re.escape(n) for n in sorted(allowed, key=len, reverse=True)))
    train_q = strip.sub(" ", " | ".join(cpu_pairs.loc[cpu_pairs["split"] != "eval", "anchor"].str.lower()))
    assert not [a for a in alts if re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])", train_q)]


def test_human_questions_are_in_eval_with_every_correct_card(catalog: pd.DataFrame, cpu_pairs: pd.DataFrame) -> None:
    from pipelines.human_eval import judge, load_questions

    questions = load_questions()
    rows = cpu_pairs[cpu_pairs["slice"] == "human"]
    assert len(rows) == len(questions) >= 300 and (rows["split"] == "eval").all()
    assert list(rows["correct_recipes"]) == [tuple(h) for h in judge(catalog, questions)]
    assert all(len(c) == len(r) for c, r in zip(rows["correct_cards"], rows["correct_recipes"], strict=True))
    ev = cpu_pairs[cpu_pairs["split"] == "eval"]
    cols = [ev[c].tolist() for c in ("intent", "positive", "answer_recipes", "correct_recipes", "correct_cards")]
    relevant = relevant_cards(*cols)
    for k, (intent, pos, correct) in enumerate(zip(cols[0], cols[1], cols[3], strict=True)):
        if intent != "recipe_card":
            assert relevant[k] == []
            continue
        assert relevant[k][0] == pos
        # every card in eval whose recipe meets the need, and no other
        cards = {t for t, i, a in zip(cols[1], cols[0], cols[2], strict=True) if i == "recipe_card" and a[0] in correct}
        cards |= {
            t
            for ok, texts in zip(cols[3], cols[4], strict=True)
            for i, t in zip(ok, texts, strict=False)
            if i in correct
        }
        assert set(relevant[k]) == cards


def test_dev_questions_are_in_validation_and_no_synthesized_row_asks_a_hand_written_question(
    catalog: pd.DataFrame, cpu_pairs: pd.DataFrame
) -> None:
    from pipelines.human_eval import judge, load_dev_questions

    cfg = load_config("cpu").synthesis
    eval_only = names_eval_only(
        build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, variants=True)
    )
    asked = [q for q in load_dev_questions() if not eval_only(q["q"])]  # a held-out name is eval's alone
    rows = cpu_pairs[cpu_pairs["slice"] == VALIDATION_SLICE]
    assert len(rows) == len(asked) >= 200 and (rows["split"] == "validation").all()
    assert list(rows["anchor"]) == [q["q"] for q in asked]
    assert list(rows["correct_recipes"]) == [tuple(h) for h in judge(catalog, asked)]
    assert all(len(c) == len(r) for c, r in zip(rows["correct_cards"], rows["correct_recipes"], strict=True))
    keys = normalize_text(cpu_pairs["anchor"])
    hand = cpu_pairs["slice"].isin(HAND_SLICES).to_numpy()
    assert not keys[~hand].isin(set(keys[hand])).any()


def test_a_synthesized_row_that_asks_a_dev_question_is_dropped() -> None:
    from pipelines.synthesis.pairs import _without_human_questions

    pairs = pd.DataFrame(
        {
            "anchor": ["Courgette Pasta!", "courgette pasta", "aubergine curry", "aubergine curry"],
            "slice": ["seen_wording", VALIDATION_SLICE, "seen_wording", "human"],
            "split": ["train", "validation", "validation", "eval"],
        }
    )
    kept = _without_human_questions(pairs)
    assert list(kept["slice"]) == [VALIDATION_SLICE, "human"]


def test_name_variants() -> None:
    assert name_variants("potato") == ["potatoes"]
    assert name_variants("spring onions") == ["spring onion"]
    assert name_variants("fresh cilantro") == ["cilantro"]
    assert name_variants("asafoetida (hing)") == ["asafoetida", "hing"]
    assert name_variants("chili powder") == []


def test_names_run_both_ways_and_alias_pairs_are_train_only(catalog: pd.DataFrame) -> None:
    base = load_config("cpu").synthesis
    # without the human slice: its questions ("beetroot") would take their alias rows out of train
    update = {"answer_alias_probability": 1.0, "alias_pairs": 0.1, "name_variants": True, "glossary": False}
    cfg = base.model_copy(update={**update, "human_eval": False, "human_dev": False})
    pairs = synthesize(catalog, cfg)
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, variants=True)
    alias = pairs[pairs["intent"] == ALIAS_INTENT]
    assert len(alias) == round(0.1 * cfg.n_train) and set(alias["split"]) == {"train"}
    for alt, ing in zip(alias["anchor"], alias["positive"], strict=True):
        assert alt in idx.aliases[ing].seen
    assert "potatoes" in idx.aliases["potato"].seen + idx.aliases["potato"].unseen
    # answers use training names sometimes, in train only; eval answers keep the catalog's names (but the
    # other_catalog slice's, which name things as another catalog would)
    train = pairs[(pairs["split"] == "train") & (pairs["intent"] == "ingredient_pair")]
    renamed = [not (a in p and b in p) for g, p in zip(train["group_id"], train["positive"], strict=True)
               for a, b in [g.removeprefix("pair:").split("|")]]  # fmt: skip
    assert 0.3 < sum(renamed) / len(renamed) < 0.9
    ev = pairs[
        (pairs["split"] == "eval") & (pairs["intent"] == "ingredient_pair") & (pairs["slice"] != "other_catalog")
    ]
    for g, p in zip(ev["group_id"], ev["positive"], strict=True):
        a, b = g.removeprefix("pair:").split("|")
        assert a in p and b in p


def test_the_same_seed_writes_the_same_pairs_in_every_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Python salts string hashes per process: nothing may depend on a set's order (renamed answers did)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\nfrom pipelines.catalog import load_catalog\nfrom pipelines.config import load_config\n"
        "from pipelines.synthesis import synthesize\n"
        "cfg = load_config('cpu')\n"  # renames train answers (answer_alias_probability > 0)
        "synthesize(load_catalog(cfg.catalog), cfg.synthesis).to_parquet(sys.argv[1])\n"
    )
    frames = []
    for seed in ("1", "2"):
        out = tmp_path / f"pairs-{seed}.parquet"
        env = {**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, timeout=300)
        frames.append(pd.read_parquet(out))
    assert frames[0].equals(frames[1])


def test_glossary_pairs_run_both_ways_beyond_the_catalog_and_never_hold_a_heldout_name(catalog: pd.DataFrame) -> None:
    base = load_config("cpu").synthesis
    cfg = base.model_copy(update={"alias_pairs": 1.0, "glossary": True})
    pairs = synthesize(catalog, cfg)
    alias = pairs[pairs["intent"] == ALIAS_INTENT]
    assert set(alias["split"]) == {"train"}  # validation scores questions only
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants)
    held = heldout_forms(idx.aliases)
    assert len(held) > 100  # catalog names held out for unseen_wording and unseen_ingredient, with their forms
    texts = set(alias["anchor"]) | set(alias["positive"])
    assert not texts & held
    ingredients = set(idx.by_ingredient)
    got = set(zip(alias["anchor"], alias["positive"], strict=True))
    # both ways, and names of foods the catalog does not have
    assert any((b, a) in got for a, b in got)
    assert any(a not in ingredients and b not in ingredients for a, b in got)
    # every pair names one food: two names of a glossary set, or of the alias table
    sets = [set(s) for s in bundled_glossary()] + [
        {k, *v} for k, v in with_variants(bundled_aliases(), ingredients).items()
    ]
    for a, b in got:
        assert any(a in s and b in s for s in sets), (a, b)
    # eval is untouched by the lever
    plain = synthesize(catalog, cfg.model_copy(update={"glossary": False}))
    assert (
        plain[plain["split"] == "eval"]
        .reset_index(drop=True)
        .equals(pairs[pairs["split"] == "eval"].reset_index(drop=True))
    )


def test_glossary_sets_are_clean() -> None:
    sets = bundled_glossary()
    assert len(sets) >= 200
    for names in sets:
        assert len(names) >= 2 and len(set(names)) == len(names), names
        assert all(n == n.strip().lower() and n for n in names), names


def test_everyday_names_come_up_more_often_and_leave_eval_alone(catalog: pd.DataFrame) -> None:
    cfg = SynthesisConfig(n_train=1500, n_eval=100, alias_probability=1.0, intent_weights={"ingredient_pair": 1})
    table = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction).aliases
    share = {}
    frames = {}
    for everyday in (False, True):
        pairs = synthesize(catalog, cfg.model_copy(update={"everyday_names": everyday}))
        frames[everyday] = pairs[pairs["split"] == "eval"].reset_index(drop=True)
        named = [(q, table[ing].seen) for q, ing in _mentions(pairs[pairs["split"] == "train"])
                 if table.get(ing) and len(table[ing].seen) >= 3]  # fmt: skip
        first = [re.search(rf"(?<!\w){re.escape(seen[0])}(?!\w)", q) is not None for q, seen in named]
        share[everyday] = sum(first) / len(first)
    assert share[True] > share[False] + 0.1, share
    assert frames[True].equals(frames[False])


def test_every_relevant_card_shows_the_ingredients_its_question_asks_for(
    catalog: pd.DataFrame, cpu_pairs: pd.DataFrame
) -> None:
    """A card is the recipe's document: judged correct for a question about an ingredient, it names it
    (as the search document does), so no relevant card is one that no model could find by its text."""
    from pipelines.human_eval import GROUPS, load_questions

    questions = load_questions()
    ev = cpu_pairs[cpu_pairs["split"] == "eval"]
    cols = [ev[c].tolist() for c in ("intent", "positive", "answer_recipes", "correct_recipes", "correct_cards")]
    relevant = dict(zip(ev["group_id"], relevant_cards(*cols), strict=True))
    checked = 0
    for gid in ev.loc[ev["slice"] == "human", "group_id"]:
        for spec in questions[int(gid.removeprefix("human:"))].get("ing", []):
            names = GROUPS[spec[1:]] if spec.startswith("@") else (spec,)
            for card in relevant[gid]:
                assert any(n in card.split("Ingredients: ", 1)[1] for n in names), (gid, spec, card)
                checked += 1
    for gid in ev.loc[ev["slice"] == "unseen_ingredient", "group_id"]:
        ing = gid.removeprefix("unseen_ingredient:").split("|")[0]
        for card in relevant[gid]:
            assert ing in card.split("Ingredients: ", 1)[1], (gid, card)
            checked += 1
    assert checked > 1000


def test_other_catalog_ask_a_catalog_that_names_things_its_own_way(
    catalog: pd.DataFrame, cpu_pairs: pd.DataFrame
) -> None:
    """Every pair of the slice's ingredients, none asked elsewhere: each answer sits among near-twins that
    share an ingredient. Each answer names an ingredient by one fixed alternate name, never ours nor a
    plural/singular form of ours (another catalog's name), and its question by another of its names."""
    cfg = load_config("cpu").synthesis
    twins = cpu_pairs[cpu_pairs["slice"] == "other_catalog"]
    pairs = [tuple(g.removeprefix("pair:").split("|")) for g in twins["group_id"]]
    k = cfg.other_catalog
    assert len(set(pairs)) == len(pairs) == k * (k - 1) // 2
    others = cpu_pairs[(cpu_pairs["intent"] == "ingredient_pair") & (cpu_pairs["slice"] != "other_catalog")]
    assert not set(twins["group_id"]) & set(others["group_id"])
    assert len(set(twins["positive"])) == len(twins)
    table = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants).aliases
    theirs: dict[str, set[str]] = {}
    for q, pos, (a, b) in zip(twins["anchor"], twins["positive"], pairs, strict=True):
        m = re.match(r"^(?:No recipes found with these (.+) and (.+)!|Recipes with (.+?) and (.+?): .+)$", pos)
        assert m, pos
        x, y = (m[1], m[2]) if m[1] else (m[3], m[4])
        for ing, name in ((a, x), (b, y)):
            theirs.setdefault(ing, set()).add(name)
            assert name != ing and name not in name_variants(ing), (ing, pos)
            assert name in (*table[ing].seen, *table[ing].unseen), (ing, pos)
            asked = [n for n in (ing, *table[ing].seen, *table[ing].unseen) if n != name]
            assert any(re.search(rf"(?<![\w']){re.escape(n.lower())}(?![\w'])", q.lower()) for n in asked), (q, ing)
    assert len(theirs) == k and all(len(v) == 1 for v in theirs.values())


def test_the_name_pool_holds_every_alias_pair_both_ways_and_no_heldout_name(catalog: pd.DataFrame) -> None:
    from pipelines.datasets import check_names_file
    from pipelines.synthesis import name_pairs

    cfg = load_config("cpu").synthesis.model_copy(update={"alias_pairs": 1.0})
    names = name_pairs(catalog, cfg)
    check_names_file(names)  # one class per name, no duplicate, no pair of one text
    got = set(zip(names["anchor"], names["positive"], strict=True))
    assert all((b, a) in got for a, b in got)  # names run both ways
    idx = build_index(catalog, cfg.heldout_fraction, cfg.unseen_ingredient_fraction, cfg.name_variants)
    assert not (set(names["anchor"]) | set(names["positive"])) & heldout_forms(idx.aliases)
    alias = synthesize(catalog, cfg)
    alias = alias[alias["intent"] == ALIAS_INTENT]
    assert set(zip(alias["anchor"], alias["positive"], strict=True)) <= got  # the alias rows draw from the pool
    # the alias rows' group is the pair's synonym class
    cls = dict(zip(names["anchor"], names["group_id"], strict=True))
    assert (alias["group_id"] == "alias:" + alias["anchor"].map(cls)).all()
