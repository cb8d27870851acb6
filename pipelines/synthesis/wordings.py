"""The wording data (``pipelines/data/wordings.json``): intents, registers, question templates and which
of them are held out, and the budgeted list phrase answers are built from."""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pipelines.errors import InputError

INTENTS: tuple[str, ...] = (
    "ingredient_pair",
    "diet_tags",
    "recipe_ingredients",
    "diet_and_ingredient",
    "quick_recipes",
    "recipe_card",
)
REGISTERS: tuple[str, ...] = ("plain", "chatty", "terse", "lower", "misspelled")
QUICK_MINUTES = (10, 15, 20, 25, 30, 40, 45, 60, 90)


def data_file(name: str) -> dict[str, Any]:
    path = resources.files("pipelines") / "data" / name
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    return data


@dataclass(frozen=True)
class Template:
    text: str
    register: str
    heldout: bool

    def fill(self, **values: str) -> str:
        q = self.text.format(**values)
        return q.lower() if self.register in LOWERED_REGISTERS else q[0].upper() + q[1:]


def heldout_choice(texts: Sequence[str], fraction: float) -> set[str]:
    """Exactly ``round(len(texts) * fraction)`` texts, fixed by their crc32 (independent of order)."""
    ranked = sorted(texts, key=lambda t: (zlib.crc32(t.encode("utf-8")), t))
    return set(ranked[: round(len(texts) * fraction)])


@functools.lru_cache(maxsize=1)
def wording_data() -> dict[str, Any]:
    return data_file("wordings.json")


LOWERED_REGISTERS = frozenset(wording_data()["lowered_registers"])


@functools.lru_cache(maxsize=8)
def templates(intent: str, fraction: float) -> tuple[Template, ...]:
    """All wordings of an intent, each marked held out (eval only) or not."""
    by_register: dict[str, list[str]] = wording_data()["wordings"][intent]
    texts = [t for reg in REGISTERS for t in by_register.get(reg, [])]
    held = heldout_choice(texts, fraction)
    return tuple(Template(t, reg, t in held) for reg in REGISTERS for t in by_register.get(reg, []))


def wordings(intent: str, heldout: bool, fraction: float) -> list[Template]:
    return [t for t in templates(intent, fraction) if t.heldout == heldout]


def fit_list(prefix: str, items: Sequence[str], suffix: str, budget: int) -> str:
    """``prefix + "a, b and c" + suffix`` with as many items as fit ``budget`` characters (at least one)."""
    if len(items) == 1:
        return prefix + items[0] + suffix
    full = prefix + ", ".join(items[:-1]) + " and " + items[-1] + suffix
    if len(full) <= budget:
        return full
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        tail = f" and {rest} more" if rest else ""
        trial = ", ".join([*shown, item]) + tail
        if shown and len(prefix) + len(trial) + len(suffix) > budget:
            break
        shown.append(item)
    rest = len(items) - len(shown)
    if rest:
        body = ", ".join(shown) + f" and {rest} more"
    elif len(shown) > 1:
        body = ", ".join(shown[:-1]) + " and " + shown[-1]
    else:
        body = shown[0]
    return prefix + body + suffix
