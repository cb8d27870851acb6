"""Size limits: a huge cell is rejected before the tokenizer; no shortcut undercounts a long word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import BUNDLED_MODEL
from pipelines.validation import load_tokenizer, validate_pairs

ROOT = Path(__file__).resolve().parents[2]
GOOD = ("What can I cook with kale and feta?", "No recipes found with these kale and feta!")


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return load_tokenizer(BUNDLED_MODEL)


def _frame(rows: list[tuple[object, object]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"anchor": a, "positive": p, "intent": "t", "group_id": f"g{i}", "split": "train"} for i, (a, p) in enumerate(rows)],
        dtype=object,
    )


def test_text_above_the_byte_limit_is_too_large_and_cut_in_rejects(tok) -> None:
    at_limit = "x" * 5000  # 5000 bytes: not too large (then too long, by tokens)
    above = "é" * 2600  # 5200 bytes (é is 2 bytes in UTF-8): too large, never tokenized
    rows = [GOOD, (at_limit, GOOD[1]), ("Other question?", above)]
    res = validate_pairs(_frame(rows), max_tokens=128, tokenizer=tok, max_text_bytes=5000)
    assert dict(zip(res.rejects["row"], res.rejects["reason"], strict=True)) == {1: "too_long", 2: "too_large"}
    assert len(res.accepted) == 1
    cut = res.rejects.set_index("row").loc[2, "positive"]
    assert cut.startswith("é" * 1000) and cut.endswith("[cut: 5,200 bytes in all]") and len(cut) < 1100


def test_an_unbroken_long_word_is_not_three_tokens(tok) -> None:
    """WordPiece maps a word over 100 characters to one [UNK]: it must not pass as a 3-token text."""
    word = "a" * 2000
    assert len(tok.encode(word).ids) == 3  # the tokenizer's own count, the shortcut's trap
    res = validate_pairs(_frame([GOOD, (word, GOOD[1])]), max_tokens=128, tokenizer=tok, max_text_bytes=10**6)
    assert list(res.rejects["reason"]) == ["too_long"]
    short = validate_pairs(_frame([(f"What is {'b' * 101}?", GOOD[1])]), max_tokens=128, tokenizer=tok)
    assert short.rejects.empty  # a 101-char word in a short text still fits


def test_a_50_mb_cell_is_rejected_fast_with_low_memory(tmp_path: Path) -> None:
    """In a fresh process: peak RSS stays far below the 3.6 GB the tokenizer path needed."""
    code = f"""
import json, resource, time
import pandas as pd
from pipelines.config import BUNDLED_MODEL
from pipelines.validation import load_tokenizer, validate_pairs
tok = load_tokenizer(BUNDLED_MODEL)
rows = [{{"anchor": "What can I cook with kale?", "positive": "Kale soup.", "intent": "t", "group_id": "g0", "split": "train"}},
        {{"anchor": "x" * (50 * 1024 * 1024), "positive": "Kale soup.", "intent": "t", "group_id": "g1", "split": "train"}}]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = validate_pairs(pd.DataFrame(rows, dtype=object), max_tokens=128, tokenizer=tok, max_text_bytes=100_000)
print(json.dumps({{"reasons": list(res.rejects["reason"]), "accepted": len(res.accepted),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "before_mb": before / 1024}}))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["reasons"] == ["too_large"] and out["accepted"] == 1
    assert out["peak_mb"] - out["before_mb"] < 800, out  # a few copies of 50 MB, not gigabytes
