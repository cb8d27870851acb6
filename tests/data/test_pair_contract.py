"""The pandera pair contract: every kind of bad row is caught with its reason; counts always add up."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import BUNDLED_MODEL
from pipelines.schemas import REASONS, PairSchema, pair_schema
from pipelines.validation import load_tokenizer, prepare_pairs, validate_pairs

MAX = 32


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(BUNDLED_MODEL)


def frame(rows: list[tuple]) -> pd.DataFrame:
    """rows of (anchor, positive[, split]) -> a pairs frame with intent/group_id."""
    recs = []
    for i, r in enumerate(rows):
        recs.append({"anchor": r[0], "positive": r[1], "intent": "t", "group_id": f"g{i}",
                     "split": r[2] if len(r) > 2 else "train"})  # fmt: skip
    return pd.DataFrame(recs, columns=["anchor", "positive", "intent", "group_id", "split"], dtype=object)


def check(rows: list[tuple], tok) -> tuple[pd.DataFrame, pd.DataFrame]:
    res = validate_pairs(frame(rows), max_tokens=MAX, tokenizer=tok)
    assert len(res.accepted) + len(res.rejects) == len(rows) == res.n_input
    return res.accepted, res.rejects


GOOD = ("What can I cook with kale and feta?", "No recipes found with these kale and feta!")


@pytest.mark.parametrize(
    ("anchor", "positive", "reason"),
    [
        (None, GOOD[1], "missing"),
        (GOOD[0], None, "missing"),
        (math.nan, GOOD[1], "missing"),
        (5, GOOD[1], "not_text"),
        (GOOD[0], ["a", "list"], "not_text"),
        (GOOD[0], b"bytes", "not_text"),
        ("", GOOD[1], "blank"),
        (GOOD[0], " \t\n ", "blank"),
        ("\u3000", GOOD[1], "blank"),  # ideographic space
        ("bad\x00null", GOOD[1], "invalid_text"),
        (GOOD[0], "escape \x1b[31m red", "invalid_text"),
        ("c1 control \x85 here", GOOD[1], "invalid_text"),
        ("lone \ud800 surrogate", GOOD[1], "invalid_text"),
        (GOOD[0], "mojibake \ufffd", "invalid_text"),
        (GOOD[0], "non-char \uffff", "invalid_text"),
        ("word " * 40, GOOD[1], "too_long"),
        (GOOD[0], "盐" * 40, "too_long"),  # non-ASCII: counted by the tokenizer, not by characters
        ("Kale and feta?", "kale AND feta", "same_text"),
    ],
)
def test_each_bad_row_is_caught_with_its_reason(anchor, positive, reason, tok) -> None:
    accepted, rejects = check([GOOD, (anchor, positive)], tok)
    assert len(accepted) == 1 and accepted.loc[0, "anchor"] == GOOD[0]
    assert rejects["reason"].tolist() == [reason]
    assert rejects["row"].tolist() == [1]


def test_tabs_and_newlines_are_text_not_control(tok) -> None:
    accepted, rejects = check([("Two\tcolumns\nand lines?", "Fine\r\nanswer")], tok)
    assert len(accepted) == 1 and rejects.empty


def test_duplicates_keep_the_first_and_ignore_case_and_punctuation(tok) -> None:
    rows = [GOOD, ("what can i cook with kale and feta", "No recipes found with these kale and feta"), GOOD]
    accepted, rejects = check(rows, tok)
    assert accepted["anchor"].tolist() == [GOOD[0]]
    assert rejects["reason"].tolist() == ["duplicate", "duplicate"]
    assert rejects["row"].tolist() == [1, 2]


def test_leakage_is_a_repeated_question_not_a_repeated_answer(tok) -> None:
    rows = [
        ("Which diets does Ann's Dal fit?", "Ann's Dal is vegan.", "train"),
        ("which diets does ann's dal fit", "Ann's Dal: vegan, nut-free.", "eval"),  # same question: leak
        ("Is Ann's Dal vegan?", "Ann's Dal is vegan.", "eval"),  # same answer, other question: fine
        ("Which diets does Ann's Dal fit?", "Something else.", "validation"),  # leak into validation
    ]
    accepted, rejects = check(rows, tok)
    assert sorted(rejects["row"]) == [1, 3]
    assert set(rejects["reason"]) == {"leakage"}
    assert accepted["anchor"].tolist() == [rows[0][0], rows[2][0]]


def test_token_limit_is_exact_at_the_boundary(tok) -> None:
    # "a a a ..." : one token per word + [CLS] + [SEP]
    at_limit = " ".join(["a"] * (MAX - 2))
    over = " ".join(["a"] * (MAX - 1))
    nonascii_at = "é" * 0 + " ".join(["é"] * (MAX - 2))
    accepted, rejects = check([(at_limit, "x"), ("y", over), (nonascii_at, "z")], tok)
    assert accepted["anchor"].tolist() == [at_limit, nonascii_at]
    assert rejects["reason"].tolist() == ["too_long"]


def test_first_failing_check_wins(tok) -> None:
    # blank anchor AND a duplicate of row 0 AND control char in positive: "blank" comes first
    rows = [("", "x"), ("", "x\x00")]
    _, rejects = check(rows, tok)
    assert rejects["reason"].tolist() == ["blank", "blank"]
    # missing beats everything
    _, rejects = check([(None, "\x00" * 500)], tok)
    assert rejects["reason"].tolist() == ["missing"]
    assert list(REASONS) == ["missing", "not_text", "blank", "invalid_text", "too_large", "too_long", "same_text",
                             "duplicate", "leakage"]  # fmt: skip


HOSTILE = [
    None, math.nan, pd.NA, "", " ", "\n\t", "\x00", "\x7f", "\ud83d", "\udfff", "\ufffd", "\ufeffBOM start",
    "\u200b", "\u202eRTL override", "emoji 🍜 ramen", "中文问题：用什么做饭？", "x" * 5000, "a " * 200, 0, -1.5,
    True, ["list"], {"d": 1}, b"\xff", "What can I cook with kale?", "What can I cook with kale?",
    "what CAN i cook with kale", "Same", "same", "No recipes found with these a and b!",
]  # fmt: skip


_SPLITS = ("train", "validation", "eval")
_VALUE = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.integers(), st.none())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_VALUE, _VALUE, st.sampled_from(_SPLITS)), min_size=1, max_size=120))
def test_hostile_random_rows_always_add_up(rows: list[tuple], tok) -> None:
    """Any combination of hostile values, random text, splits and duplicates: every row is accounted for."""
    rows = sorted(rows, key=lambda r: _SPLITS.index(r[2]))
    res = validate_pairs(frame(rows), max_tokens=MAX, tokenizer=tok)
    assert len(res.accepted) + len(res.rejects) == len(rows)
    assert res.rejects["row"].is_unique
    assert res.rejects["reason"].isin(REASONS).all() and res.rejects["reason"].notna().all()
    assert sum(res.by_reason.values()) == len(res.rejects)
    # the accepted rows pass the contract on their own: validating them again rejects nothing
    again = validate_pairs(res.accepted, max_tokens=MAX, tokenizer=tok)
    assert again.rejects.empty and len(again.accepted) == len(res.accepted)
    # rejects can be stored (lone surrogates escaped, non-strings as repr)
    res.rejects.to_parquet(__import__("io").BytesIO())


def test_accepted_rows_satisfy_the_plain_schema(tok) -> None:
    work = prepare_pairs(frame([GOOD, ("Other question?", "Other answer.")]), max_tokens=MAX, tokenizer=tok)
    PairSchema.validate(work, lazy=True)
    pair_schema(MAX).validate(work, lazy=True)


def test_empty_input(tok) -> None:
    res = validate_pairs(frame([]), max_tokens=MAX, tokenizer=tok)
    assert res.accepted.empty and res.rejects.empty and res.reject_fraction == 0.0


def test_word_level_token_count_equals_the_tokenizer(tok) -> None:
    """The fast path (one tokenizer call per distinct word) gives the tokenizer's own counts, except for
    words over WordPiece's 100-character limit ([UNK]), which count one per character on purpose
    (tests/data/test_text_limits.py)."""
    import numpy as np

    from pipelines.catalog import load_catalog
    from pipelines.config import CatalogConfig, SynthesisConfig
    from pipelines.synthesis import synthesize
    from pipelines.validation import _exact_counts, _is_bert_wordpiece

    assert _is_bert_wordpiece(tok)
    pairs = synthesize(load_catalog(CatalogConfig()), SynthesisConfig(n_train=1500, n_eval=300))
    extra = ["Hello, world! It's 10min (abc) a/b ~x_y `q` {z}|[w]^@#$%&*+=<>\\", "x" * 100, "a-b--c...d"]
    texts = np.array([*pairs["anchor"], *pairs["positive"], *extra], dtype=object)
    fast = _exact_counts(texts, np.array([t.isascii() for t in texts]), tok)
    assert fast == [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=True)]
