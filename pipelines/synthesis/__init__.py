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
recipe_card          ``card:<name>``                        a recipe card (name, cuisine, minutes,
                                                            diet tags, every ingredient)
===================  ====================================  =======================================

Groups are assigned to exactly one split (train, validation or eval) *before* any question is
written, so no subject is shared between splits; a group yields several questions only through
different wordings, and every question of a group has the same answer. A recipe card's question
describes a need (ingredients, and maybe a cuisine, a diet and a time) fixed per group; several
recipes may meet it, and :func:`.recipe_card.correct_recipes` says which.

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
hand-written questions of ``pipelines/data/human_questions.jsonl``, judged against the catalog) and
``other_catalog`` (every ingredient pair among ``other_catalog`` ingredients, asked of a catalog that names
each by an alternate name of ours: "No recipes found with these aubergine and scallions!" for "eggplant
and spring onion ideas"; each answer has near-twins that share an ingredient). The last three are written
in full, beside the ``n_eval`` targeted pairs; the answers of the first two are recipe cards, and the card
of every correct recipe joins the eval corpus (see :func:`relevant_cards`). Validation rows carry a slice
too: ``seen_wording``, and ``human_dev`` (the hand-written questions of ``pipelines/data/dev_questions.jsonl``,
written apart from ``human``, judged and written in full the same way; settings are chosen on them).

Names run both ways (all train/validation only): ``answer_alias_probability`` renames ingredients in
answers too, ``name_variants`` adds plural/singular and short forms as alternate names, and
``alias_pairs`` adds alias-definition pairs (``aubergine`` -> ``eggplant``) as a share of ``n_train``;
``glossary`` draws them both ways, and from ``pipelines/data/glossary.json`` (everyday names of foods
beyond the catalog), never with a held-out name; ``everyday_names`` picks the alias table's first
(everyday) names more often.

Sizes: ``n_train`` pairs (train + the validation slice) and ``n_eval`` pairs, mixed by
``intent_weights`` (largest-remainder rounding). ``synthesize(..., margin=...)`` writes a few extra
pairs per (split, intent) *after* the targeted ones so that rows rejected by validation can be
replaced by :func:`pipelines.datasets.build_dataset` without a second pass.

Modules: :mod:`.wordings` (intents, registers, templates), :mod:`.names` (alternate names),
:mod:`.catalog_index` (lookup tables), :mod:`.recipe_card` (the recipe-card intent), :mod:`.render`
(answers, questions, group ids), :mod:`.splits` (targets and the grouped split), :mod:`.slices` (extra eval
slices, correctness) and :mod:`.pairs` (:func:`synthesize`).
"""

from pipelines.metrics import SLICES
from pipelines.synthesis.names import bundled_aliases, name_variants
from pipelines.synthesis.pairs import ALIAS_INTENT, ANSWER_COLUMNS, COLUMNS, name_pairs, synthesize
from pipelines.synthesis.slices import EXTRA_EVAL_SLICES, VALIDATION_SLICE, is_correct_answer, relevant_cards
from pipelines.synthesis.splits import margin_for, split_targets
from pipelines.synthesis.wordings import INTENTS, REGISTERS, templates

__all__ = [
    "ALIAS_INTENT",
    "ANSWER_COLUMNS",
    "COLUMNS",
    "EXTRA_EVAL_SLICES",
    "INTENTS",
    "REGISTERS",
    "SLICES",
    "VALIDATION_SLICE",
    "bundled_aliases",
    "is_correct_answer",
    "margin_for",
    "name_pairs",
    "name_variants",
    "relevant_cards",
    "split_targets",
    "synthesize",
    "templates",
]
