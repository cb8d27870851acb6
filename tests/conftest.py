"""Shared fixtures: small fixed recipe pairs, a tiny dataset directory, the bundled base model."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_INGREDIENTS = [
    "curry leaf", "rice cakes", "bacon", "rosemary", "paneer", "bitter melon", "kale", "bok choy",
    "cinnamon", "ground lamb", "red lentils", "orange juice", "jasmine rice", "sriracha", "honey",
    "nutmeg", "green zucchini", "red onion", "broccoli", "feta", "chickpeas", "coconut milk",
]  # fmt: skip
_DISHES = [
    "Grandma's Sunday Bake", "Midnight Skillet", "The Harbour Bowl", "Sunrise Traybake",
    "Weekday Wonder Stew", "Golden Hour Curry", "Lazy Lantern Noodles", "Orchard Pot Pie",
    "Blue Door Casserole", "Riverside Fritters", "Autumn Lantern Soup", "Copper Pan Rice",
]  # fmt: skip
_NO_RESULT_QUESTIONS = [
    "What recipes can be made using {x} and {y}?",
    "Can you suggest dishes where {x} and {y} is key?",
]
_DISH_QUESTIONS = [
    "What can I cook with {x} and {y}?",
    "Give me a recipe that uses {x} and {y}.",
]


def make_recipe_pairs(n_no_result: int = 24, n_dish: int = 24) -> pd.DataFrame:
    """Fixed recipe-style (anchor, positive) pairs, with repeated positive texts.

    * ``n_no_result`` "No recipes found with these X and Y!" answers; every 4th ingredient pair is
      asked twice with different wordings (same positive text twice).
    * ``n_dish`` answers naming a dish whose name shares no word with its ingredients, so a base
      model cannot match them by surface overlap; the 12 dishes repeat (each positive occurs twice).
    """
    rows: list[dict[str, str | int]] = []
    n = len(_INGREDIENTS)
    i = 0
    group = 0
    while len(rows) < n_no_result:
        x, y = _INGREDIENTS[i % n], _INGREDIENTS[(i * 7 + 3) % n]
        i += 1
        if x == y:
            continue
        wordings = _NO_RESULT_QUESTIONS if i % 4 == 0 else _NO_RESULT_QUESTIONS[:1]
        for q in wordings:
            if len(rows) < n_no_result:
                rows.append(
                    {
                        "anchor": q.format(x=x, y=y),
                        "positive": f"No recipes found with these {x} and {y}!",
                        "intent": "ingredient_pair",
                        "group_id": group,
                    }
                )
        group += 1
    for j in range(n_dish):
        x, y = _INGREDIENTS[(j * 5 + 1) % n], _INGREDIENTS[(j * 3 + 11) % n]
        dish = _DISHES[j % len(_DISHES)]
        rows.append(
            {
                "anchor": _DISH_QUESTIONS[j % 2].format(x=x, y=y),
                "positive": f"Try {dish}.",
                "intent": "recipe_ingredients",
                "group_id": group + j % len(_DISHES),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def recipe_pairs() -> pd.DataFrame:
    """48 fixed pairs (24 no-result + 24 dish answers), several positives repeated."""
    return make_recipe_pairs()


def write_dataset_dir(path: Path, train: pd.DataFrame, validation: pd.DataFrame, eval_: pd.DataFrame) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    train.to_parquet(path / "train.parquet", index=False)
    validation.to_parquet(path / "validation.parquet", index=False)
    eval_.to_parquet(path / "eval.parquet", index=False)
    return path


@pytest.fixture
def tiny_dataset_dir(tmp_path: Path) -> Path:
    """A dataset directory whose splits all hold the same 48 fixed pairs (a memorisation task)."""
    pairs = make_recipe_pairs()
    return write_dataset_dir(tmp_path / "dataset", pairs, pairs, pairs)


@pytest.fixture(scope="session")
def bundled_model_path() -> str:
    """Local path of the bundled all-MiniLM-L6-v2."""
    from pipelines.models import resolve_base_model

    return resolve_base_model("bundled:all-MiniLM-L6-v2")


def free_ports(n: int) -> list[int]:
    """n distinct free ports: every socket stays bound until all are chosen, so no two can coincide."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
