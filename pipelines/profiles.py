"""The named profiles: overrides of the default config (``default``, ``seed-card``, ``cpu``, ``smoke``,
``smoke-worse``), ``auto`` and the one list of profile names; :mod:`pipelines.config` resolves them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --- profiles ----------------------------------------------------------------------------------

PROFILES: dict[str, dict[str, Any]] = {
    # The reference card's scale and hyperparameters, with a real per-device batch instead of
    # accumulation: accumulation adds no in-batch negatives for MNRL.
    "default": {},
    # The card's own settings, for comparison: per-device 64 x accumulation 8.
    "seed-card": {"training": {"per_device_batch_size": 64, "gradient_accumulation_steps": 8}},
    # CPU-sized run of the whole workflow (a few minutes on 2 cores). The figures below were measured on the
    # synthesized validation questions alone; since then validation also holds the hand-written `human_dev`
    # questions and scores the mean over the two (pipelines/data/HUMAN_EVAL.md), on which 30 names-stage
    # rounds gain less than the mix tolerance (+0.005 / +0.001) and `cpu` keeps 20.
    "cpu": {
        # The names levers, chosen on validation (one dataset's 118 validation queries, synthesized without
        # them; map@100 at 384 / 64: 0.919 / 0.908 without, 0.933 / 0.924 with): questions use alternate names more
        # often, answers use them too (names run both ways), plural/singular and short forms, and
        # alias-definition pairs. Then the glossary: alias-definition pairs both ways and beyond the catalog's
        # ingredients, 0.3 x n_train of them (validation mean map@100 over dims after the base mix: 0.9519
        # against 0.9495 with 0.15 catalog-only pairs; the same validation rows). Unmeasured at the card's scale,
        # so `default` keeps them off. `everyday_names` stays off: no gain on validation. So does
        # `card_dish_probability` (recipe-card questions by dish: human's dish questions 0.60 -> 0.79, validation
        # -0.005 and unseen_ingredient / unseen_wording -0.01 to -0.02 in every run; pipelines/data/HUMAN_EVAL.md).
        "synthesis": {
            "n_train": 2_000,
            "n_eval": 500,
            "alias_probability": 0.8,
            "name_variants": True,
            "answer_alias_probability": 0.5,
            "alias_pairs": 0.3,
            "glossary": True,
        },
        # 96 tokens hold a whole recipe card (66 tokens at the median, 90 at most; 64 cut most cards to three to
        # five of their nine to eleven ingredients). Same data, seeds 42 / 43, against 64 tokens and cards that
        # listed the asked ingredients first: validation score after the mix 0.6359 -> 0.6574 / 0.6427 -> 0.6625
        # (pipelines/data/HUMAN_EVAL.md). Training encodes each column in up to three length groups so the short
        # answers do not pay for the cards' padding (pipelines/buckets.py; 2.16x per step, bench/length_buckets.py).
        "model": {"max_seq_length": 96},
        "training": {
            # Three passes (120 steps, about 5 minutes here) rather than one: each of the thousands of name pairs
            # occurs once or not at all in a pass. Same data, two seeds: validation mean map@100 after the mix
            # 0.9636 -> 0.9660 and 0.9331 -> 0.9587 from one pass to two (every eval slice but
            # unseen_ingredient up 0.005-0.02); with the names stage, 0.9792 -> 0.9850 and 0.9812 -> 0.9875 from
            # two to three (other_catalog at 384 +0.03 / +0.02, unseen_wording +0.005 / +0.007, human -0.006 /
            # -0.009; pipelines/data/HUMAN_EVAL.md).
            "epochs": 3,
            # The names stage first (pipelines/names_stage.py): 20 rounds over every training name pair, 80
            # steps of short texts, about a minute here. Same data, seeds 42 / 43, against none: validation mean
            # map@100 after the mix 0.9706 -> 0.9792 / 0.9538 -> 0.9812 (other_catalog at 384 +0.14 / +0.17;
            # human -0.04 / -0.03, its dish-name questions: pipelines/data/HUMAN_EVAL.md).
            "name_rounds": 20,
            "length_buckets": 3,
            "per_device_batch_size": 64,
            "eval_batch_size": 128,
            # 1e-4 instead of 2e-5 (on 2,000 alias-rich pairs, held-out MAP@100 at 384 went
            # from 0.44 to 0.84); checked on the unseen-wording slice of a differently seeded dataset.
            "learning_rate": 1e-4,
            "optim": "adamw_torch",
            "logging_steps": 5,
        },
        "evaluation": {"batch_size": 128},
    },
    # Tiny: tests, the smoke deployment, CI.
    "smoke": {
        # No mining: smoke checks the loop in seconds; mining has its own tests.
        # Nor the extra eval slices (human, unseen_ingredient, other_catalog: 700 more queries);
        # tests/unit/test_synthesis.py has them.
        "synthesis": {
            "n_train": 320,
            "n_eval": 120,
            "validation_fraction": 0.1,
            "hard_negatives": False,
            "human_eval": False,
            "human_dev": False,
            "unseen_ingredient_fraction": 0.0,
            "other_catalog": 0,
        },
        "model": {"max_seq_length": 48},
        "training": {
            "epochs": 1,
            "per_device_batch_size": 32,
            "eval_batch_size": 64,
            "learning_rate": 5e-5,
            "optim": "adamw_torch",
            "logging_steps": 2,
            "save_total_limit": 1,
            "base_interpolation": (),  # seconds count here; tests/unit/test_interpolation.py covers the mix
        },
        "evaluation": {"batch_size": 64},
    },
}

AUTO = "auto"
"""Not a profile of its own: ``default`` on a GPU machine, ``cpu`` elsewhere (see :func:`auto_profile`)."""


def auto_profile() -> str:
    """The card's scale on a GPU, the CPU-sized profile elsewhere."""
    try:
        import torch

        return "default" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


# Smoke data (the same dataset key, so the same eval set) with a learning rate far too large: two
# steps wreck the base model. A clearly worse candidate (its bootstrap interval lies below 0), for
# checking that the champion stays put. (A learning rate near 0 only gives back the base model, which
# on the small smoke eval is too close to the champion to be told apart honestly.)
PROFILES["smoke-worse"] = deep_merge(
    PROFILES["smoke"], {"training": {"max_steps": 2, "learning_rate": 2e-2, "warmup": 0, "logging_steps": 1}}
)

PROFILE_CHOICES: tuple[str, ...] = (AUTO, *PROFILES)
"""Every value ``--profile`` and the flow's ``profile`` parameter accept; the one list of profile names."""
