"""Lazy pandera validation of pairs: every row is accepted or rejected with exactly one reason.

``validate_pairs`` runs :func:`pipelines.schemas.pair_schema` with ``lazy=True`` so pandera collects
every failure, then gives each failing row the *first* reason in :data:`pipelines.schemas.REASONS`.
``len(accepted) + len(rejects) == len(input)`` always holds.

Token lengths use the base model's own tokenizer (``tokenizer.json`` via the ``tokenizers`` library,
special tokens included, no truncation). Texts that cannot exceed the limit are not tokenized: for
ASCII text every token covers at least one non-space character, so ``2 + non-space chars <= limit``
proves the text fits.

Two guards keep a hostile cell from slipping through or exhausting memory:

- a text above ``max_text_bytes`` UTF-8 bytes is rejected as ``too_large`` from its Arrow byte length
  alone, before any regex, normalization or tokenizer sees it (in ``rejects.parquet`` it is kept cut
  to its first :data:`REJECT_PREVIEW_CHARS` characters plus a note of its size);
- a word longer than WordPiece's ``max_input_chars_per_word`` becomes a single ``[UNK]`` in the
  tokenizer (so a 50 MB word "is" 3 tokens); such a word counts as one token per character here, so
  a text the model could not really read is rejected as ``too_long`` whatever the shortcut says.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from pipelines.errors import InputError
from pipelines.schemas import (
    PAIR_COLUMNS,
    REASONS,
    SPLITS,
    is_text,
    normalize_arrow,
    pair_schema,
    text_status_arrow,
    to_arrow,
)

_SPECIAL_TOKENS = 2  # [CLS] ... [SEP]
REJECT_PREVIEW_CHARS = 1000
"""A ``too_large`` text is kept in rejects.parquet cut to this many characters."""


@dataclass
class ValidationResult:
    """``accepted``: pair columns + ``split``; ``rejects``: the same + ``reason`` (one per row)."""

    accepted: pd.DataFrame
    rejects: pd.DataFrame
    n_input: int
    by_reason: dict[str, int] = field(default_factory=dict)
    accepted_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Input position of each accepted row (to carry columns the contract does not check)."""

    @property
    def reject_fraction(self) -> float:
        return len(self.rejects) / self.n_input if self.n_input else 0.0


@functools.lru_cache(maxsize=4)
def load_tokenizer(base_model: str) -> Any:
    """The ``tokenizers.Tokenizer`` of a base model (bundled, local dir or cached hub id), untruncated."""
    from tokenizers import Tokenizer

    from pipelines.models import resolve_base_model

    resolved = resolve_base_model(base_model)
    path = Path(resolved) / "tokenizer.json"
    if not path.exists():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(resolved, "tokenizer.json"))
        except Exception as exc:
            raise InputError(f"{base_model}: no tokenizer.json found for the base model ({exc})") from exc
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def token_lengths(texts: pd.Series, arr: Any, ok: np.ndarray, tokenizer: Any, limit: int) -> np.ndarray:
    """Token count (with special tokens) per text; 0 where not ``ok``. ``arr``: the column in Arrow.

    Exact wherever the text could exceed ``limit``; elsewhere an upper bound that is within it (for
    ASCII, every token covers at least one non-space character; other whitespace only loosens it).
    """
    nonspace = _int(pc.subtract(pc.utf8_length(arr), pc.count_substring(arr, " ")))
    ascii_ = np.asarray(pc.fill_null(pc.string_is_ascii(arr), False).to_numpy(zero_copy_only=False), dtype=bool)
    bound = nonspace + _SPECIAL_TOKENS
    sure = ok & ascii_ & (bound <= limit)
    need = ok & ~sure
    lengths = np.where(sure, bound, 0).astype(np.int64)
    if need.any():
        todo = texts.to_numpy(dtype=object)[need]
        lengths[need] = _exact_counts(todo, ascii_[need], tokenizer)
    return lengths


_ASCII_PIECES = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")


def _is_bert_wordpiece(tokenizer: Any) -> bool:
    """Lower-casing BERT normalizer + BERT pre-tokenizer + WordPiece: counts add up word by word."""
    try:
        norm = json.loads(tokenizer.to_str()).get("normalizer") or {}
    except Exception:
        return False
    return (
        type(tokenizer.pre_tokenizer).__name__ == "BertPreTokenizer"
        and type(tokenizer.model).__name__ == "WordPiece"
        and norm.get("type") == "BertNormalizer"
        and bool(norm.get("lowercase"))
    )


def _exact_counts(texts: np.ndarray, ascii_: np.ndarray, tokenizer: Any) -> list[int]:
    """Exact token counts (with special tokens).

    For a BERT WordPiece tokenizer and ASCII text the count is ``2 + sum(wordpieces(word))`` over the
    pre-tokenizer's pieces (runs of letters/digits; every other printable character alone), so
    each distinct word is tokenized once. Everything else is encoded whole.
    """
    counts = np.zeros(len(texts), dtype=np.int64)
    fast = ascii_ & _is_bert_wordpiece(tokenizer)
    if fast.any():
        pieces = [_ASCII_PIECES.findall(t) for t in texts[fast]]
        vocab = sorted({w.lower() for ws in pieces for w in ws})
        max_chars = _max_chars_per_word(tokenizer)
        short = [w for w in vocab if len(w) <= max_chars]
        enc = tokenizer.encode_batch(short, add_special_tokens=False)
        per_word = {w: len(e.ids) for w, e in zip(short, enc, strict=True)}
        per_word.update({w: len(w) for w in vocab if len(w) > max_chars})  # [UNK] would hide it: count chars
        counts[fast] = [_SPECIAL_TOKENS + sum(per_word[w.lower()] for w in ws) for ws in pieces]
    if (~fast).any():
        rest = texts[~fast]
        uniq = pd.unique(rest)
        enc = tokenizer.encode_batch(list(uniq), add_special_tokens=True)
        whole = dict(zip(uniq, (len(e.ids) for e in enc), strict=True))
        counts[~fast] = [whole[t] for t in rest]
    return counts.tolist()


def _max_chars_per_word(tokenizer: Any) -> int:
    """WordPiece's ``max_input_chars_per_word`` (longer words become one ``[UNK]``); 100 if unreadable."""
    try:
        return int(tokenizer.model.max_input_chars_per_word)
    except (AttributeError, TypeError, ValueError):
        return 100


def _int(arr: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def prepare_pairs(
    df: pd.DataFrame, *, max_tokens: int, tokenizer: Any, max_text_bytes: int | None = None
) -> pd.DataFrame:
    """The pair columns plus the working columns :class:`~pipelines.schemas.PairSchema` checks."""
    missing = [c for c in (*PAIR_COLUMNS, "split") if c not in df.columns]
    if missing:
        raise InputError(f"pairs are missing column(s) {', '.join(missing)}")
    work = pd.DataFrame(
        {c: df[c].astype(object).where(df[c].notna(), None).to_numpy() for c in (*PAIR_COLUMNS, "split")},
        dtype=object,  # never let pandas infer an Arrow string dtype: lone surrogates would not fit
    )
    for col in ("intent", "group_id"):
        _, encodable = to_arrow(work[col])
        fix = ~encodable & is_text(work[col]).to_numpy()
        if fix.any():
            work.loc[fix, col] = work.loc[fix, col].map(_escape)
    for col in ("anchor", "positive"):
        arr, encodable = to_arrow(work[col])  # once per column
        large = np.zeros(len(work), dtype=bool)
        if max_text_bytes is not None:
            large = _int(pc.binary_length(arr)) > max_text_bytes
            if large.any():  # never scan, normalize or tokenize an oversized text
                arr = pc.if_else(pa_arrow.array(~large), arr, pa_arrow.scalar(None, arr.type))
        status = text_status_arrow(work[col], arr, encodable)
        if large.any():
            status = status.where(~large, "too_large")
            work.loc[large, col] = work.loc[large, col].map(_preview)
        ok = (status == "ok").to_numpy()
        ok_arr = pc.if_else(pa_arrow.array(ok), arr, pa_arrow.scalar(None, arr.type))
        work[f"{col}_status"] = status
        work[f"{col}_key"] = normalize_arrow(ok_arr)
        work[f"{col}_tokens"] = token_lengths(work[col], ok_arr, ok, tokenizer, max_tokens)
        bad = (status == "invalid_text").to_numpy()
        if bad.any():  # lone surrogates cannot be stored (or even printed by pandera): escape them
            work.loc[bad, col] = work.loc[bad, col].map(_escape)
    return work


def _preview(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    size = len(v.encode("utf-8", "surrogatepass"))
    return f"{v[:REJECT_PREVIEW_CHARS]}...[cut: {size:,} bytes in all]"


def _escape(v: Any) -> Any:
    return v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v


def validate_pairs(
    df: pd.DataFrame, *, max_tokens: int, tokenizer: Any, max_text_bytes: int | None = None
) -> ValidationResult:
    """Validate ``anchor, positive, intent, group_id, split`` rows (train rows first, then validation, eval).

    ``max_text_bytes``: texts above it are rejected as ``too_large`` before tokenizing (None: no limit).
    """
    work = prepare_pairs(df, max_tokens=max_tokens, tokenizer=tokenizer, max_text_bytes=max_text_bytes)
    reason = pd.Series(None, index=work.index, dtype=object)
    try:
        pair_schema(max_tokens).validate(work, lazy=True)
    except pa.errors.SchemaErrors as exc:
        reason = _first_reason(exc.failure_cases, work.index)

    bad = reason.notna().to_numpy()
    cols = [*PAIR_COLUMNS, "split"]
    accepted = work.loc[~bad, cols].reset_index(drop=True)
    for c in ("anchor", "positive", "intent", "group_id"):
        accepted[c] = accepted[c].astype(str)
    rejects = work.loc[bad, cols].copy()
    rejects["reason"] = reason[bad].astype(str)
    rejects = _storable(rejects.reset_index(names="row"))
    by_reason = {r: int(n) for r, n in rejects["reason"].value_counts().items()}
    return ValidationResult(
        accepted=accepted,
        rejects=rejects,
        n_input=len(work),
        by_reason={r: by_reason[r] for r in REASONS if r in by_reason},
        accepted_rows=np.flatnonzero(~bad),
    )


def _first_reason(fc: pd.DataFrame, index: pd.Index) -> pd.Series:
    """pandera failure cases -> the first reason (in ``REASONS`` order) per row index."""
    order = {r: i for i, r in enumerate(REASONS)}
    structural = fc[fc["index"].isna() | ~fc["check"].astype(str).isin([*order, "not_nullable"])]
    if not structural.empty:
        # A failure that is not about one row (a wrong dtype, a bad split value): not a reject reason.
        what = sorted({f"{c}: {k}" for c, k in zip(structural["column"], structural["check"], strict=True)})
        raise InputError(f"pairs failed structural checks: {'; '.join(map(str, what))}")
    checks = fc["check"].astype(str).replace({"not_nullable": "missing"})
    rank = checks.map(order)
    per_row = pd.DataFrame({"index": fc["index"].astype(int).to_numpy(), "rank": rank.to_numpy()})
    best = per_row.groupby("index")["rank"].min()
    out = pd.Series(None, index=index, dtype=object)
    out.loc[best.index] = [REASONS[i] for i in best.to_numpy()]
    return out


def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Rejected values as text Parquet can store: non-strings as ``repr``, lone surrogates escaped."""

    def fix(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        return v if isinstance(v, str) else repr(v)

    for c in ("anchor", "positive", "intent", "group_id"):
        df[c] = df[c].map(fix).astype(object)
    df["split"] = df["split"].astype(str)
    return df


def check_splits(df: pd.DataFrame) -> None:
    bad = set(df["split"].dropna().astype(str)) - set(SPLITS)
    if bad or df["split"].isna().any():
        raise InputError(f"split must be one of {', '.join(SPLITS)}; found {sorted(bad) or 'empty values'}")
