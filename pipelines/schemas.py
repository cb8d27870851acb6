"""pandera contracts for recipe catalogs and (anchor, positive) pairs.

Every check is vectorized (a boolean Series per call, no per-row Python in pandera) and named after
the rejection reason it produces, so :mod:`pipelines.validation` can map pandera's failure cases
straight to one reason a row. ``REASONS`` fixes the order: a row failing several checks gets the
first one.

Text rules (``invalid_text``): C0/C1 control characters other than tab, newline and carriage return,
lone UTF-16 surrogates (what a JSON ``"\\ud800"`` escape decodes to), U+FFFD (the mark of an earlier
decoding error) and the non-characters U+FFFE/U+FFFF.

Leakage: a validation or eval question (``anchor``) *leaks* when its normalized text (casefolded,
runs of non-word characters collapsed to one space) also occurs as a question in an earlier split
(train for validation; train or validation for eval). A repeated *answer* to a different question is
not leakage: "No recipes found with these A and B!" is one answer to many wordings of one question,
and a recipe's diet tags answer many phrasings of the same request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.typing import Series

SPLITS = ("train", "validation", "eval")
PAIR_COLUMNS = ("anchor", "positive", "intent", "group_id")
REASONS = (
    "missing",  # anchor or positive is null
    "not_text",  # a value that is not a string (a number, a list, ...)
    "blank",  # empty or whitespace only
    "invalid_text",  # control characters, lone surrogates, U+FFFD
    "too_large",  # more UTF-8 bytes than validation.max_text_bytes (never tokenized)
    "too_long",  # more tokens than model.max_seq_length (with [CLS]/[SEP])
    "same_text",  # anchor equals positive (normalized)
    "duplicate",  # the same (anchor, positive) as an earlier row (normalized)
    "leakage",  # the question already appears in an earlier split (normalized)
)
# The text rule (see the module docstring) in RE2 syntax for pyarrow (surrogates cannot reach Arrow: they are
# caught on conversion).
_INVALID_RE2 = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{7f}-\x{9f}\x{fffd}\x{fffe}\x{ffff}]"
_SEPARATORS_RE2 = r"[^\p{L}\p{N}]+"


def is_text(s: pd.Series) -> pd.Series:
    """True where the value is a Python ``str`` (fast path for string dtypes)."""
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return s.notna()
    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):  # C-speed common case
        return s.notna()
    return s.map(lambda v: isinstance(v, str)).astype(bool)


def _encodable(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_arrow(s: pd.Series) -> tuple[pa_arrow.Array, np.ndarray]:
    """``s`` as an Arrow string array (null where not text or not encodable) and the encodable mask.

    Vectorized string work runs on Arrow (RE2), much faster than Python ``re`` per row.
    """
    text = is_text(s).to_numpy()
    values = s.astype(object).where(text, None).tolist()
    try:
        return pa_arrow.array(values, type=pa_arrow.large_string()), text
    except (UnicodeEncodeError, pa_arrow.ArrowException):
        ok = np.array([v is not None and _encodable(v) for v in values], dtype=bool)
        clean = [v if good else None for v, good in zip(values, ok, strict=True)]
        return pa_arrow.array(clean, type=pa_arrow.large_string()), ok


def _np(arr: pa_arrow.Array, fill: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, fill).to_numpy(zero_copy_only=False))


def blank_text(s: pd.Series) -> np.ndarray:
    arr, _ = to_arrow(s)
    return _np(pc.equal(pc.utf8_trim_whitespace(arr), ""), False).astype(bool)


def normalize_arrow(arr: pa_arrow.Array) -> np.ndarray:
    """Casefold and collapse runs of non-letter/digit characters to one space; null -> ``""``."""
    norm = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(arr), _SEPARATORS_RE2, " "))
    return _np(norm, "").astype(object)


def normalize_text(s: pd.Series) -> pd.Series:
    """The identity used for duplicates and leakage (see :func:`normalize_arrow`).

    Non-text and non-encodable values normalize to ``""``.
    """
    arr, _ = to_arrow(s)
    return pd.Series(normalize_arrow(arr), index=s.index, dtype=object)


def text_status_arrow(s: pd.Series, arr: pa_arrow.Array, encodable: np.ndarray) -> pd.Series:
    """Per value: ``ok``, ``not_text`` (a number, a list, ...), ``blank`` or ``invalid_text``; null stays null.

    ``arr``/``encodable`` come from :func:`to_arrow` (converted once per column).
    """
    text = is_text(s).to_numpy()
    invalid = (text & ~encodable) | _np(pc.match_substring_regex(arr, _INVALID_RE2), False).astype(bool)
    blank = _np(pc.equal(pc.utf8_trim_whitespace(arr), ""), False).astype(bool)
    status = np.where(~text, "not_text", np.where(blank, "blank", np.where(invalid, "invalid_text", "ok")))
    return pd.Series(status, index=s.index, dtype=object).where(s.notna(), None)


class PairSchema(pa.DataFrameModel):
    """Pairs with their working columns, as :func:`pipelines.validation.prepare_pairs` builds them.

    ``<col>_status`` (from :func:`text_status_arrow`), ``<col>_key`` (:func:`normalize_text`) and
    ``<col>_tokens`` are computed once per column, vectorized; the checks below compare them. Each
    check's name is the rejection reason. The token limit is a parameter: use :func:`pair_schema`.
    """

    anchor: Series[Any] = pa.Field(nullable=False)
    positive: Series[Any] = pa.Field(nullable=False)
    intent: Series[Any] = pa.Field(nullable=False)
    group_id: Series[Any] = pa.Field(nullable=False)
    split: Series[Any] = pa.Field(isin=list(SPLITS))
    anchor_status: Series[Any] = pa.Field(nullable=True)
    positive_status: Series[Any] = pa.Field(nullable=True)
    anchor_key: Series[Any]
    positive_key: Series[Any]
    anchor_tokens: Series[int] = pa.Field(ge=0)
    positive_tokens: Series[int] = pa.Field(ge=0)

    class Config:
        strict = True
        coerce = False

    @pa.check("anchor_status", "positive_status", name="not_text")
    def _not_text(cls, s: pd.Series) -> pd.Series:
        return s != "not_text"

    @pa.check("anchor_status", "positive_status", name="blank")
    def _blank(cls, s: pd.Series) -> pd.Series:
        return s != "blank"

    @pa.check("anchor_status", "positive_status", name="invalid_text")
    def _invalid_text(cls, s: pd.Series) -> pd.Series:
        return s != "invalid_text"

    @pa.check("anchor_status", "positive_status", name="too_large")
    def _too_large(cls, s: pd.Series) -> pd.Series:
        return s != "too_large"

    # Row-level checks judge only rows whose texts are fine; the others already have a reason.

    @pa.dataframe_check(name="same_text")
    def _same_text(cls, df: pd.DataFrame) -> pd.Series:
        return ~_texts_ok(df) | (df["anchor_key"] != df["positive_key"])

    @pa.dataframe_check(name="duplicate")
    def _duplicate(cls, df: pd.DataFrame) -> pd.Series:
        ok = _texts_ok(df)
        dup = df[ok].duplicated(subset=["anchor_key", "positive_key"], keep="first")
        return ~dup.reindex(df.index, fill_value=False)

    @pa.dataframe_check(name="leakage")
    def _leakage(cls, df: pd.DataFrame) -> pd.Series:
        ok = _texts_ok(df)
        return ~leaked_keys(df["anchor_key"].where(ok, ""), df["split"])


def _texts_ok(df: pd.DataFrame) -> pd.Series:
    return (df["anchor_status"] == "ok") & (df["positive_status"] == "ok")


def leaked_keys(key: pd.Series, split: pd.Series) -> pd.Series:
    rank = split.map({s: i for i, s in enumerate(SPLITS)}).fillna(len(SPLITS)).astype(int)
    first_rank = rank.groupby(key.to_numpy()).transform("min")
    return (rank > first_rank) & (key != "")


def pair_schema(max_tokens: int) -> pa.DataFrameSchema:
    """:class:`PairSchema` plus the ``too_long`` check at ``max_tokens`` (counted with special tokens)."""
    schema = PairSchema.to_schema()
    too_long = pa.Check(lambda s: s <= max_tokens, name="too_long")
    return schema.update_columns(
        {
            "anchor_tokens": {"checks": [pa.Check.ge(0), too_long]},
            "positive_tokens": {"checks": [pa.Check.ge(0), too_long]},
        }
    )


# --- written files ---------------------------------------------------------------------------------


def _nonblank_text(s: pd.Series) -> pd.Series:
    return pd.Series(is_text(s).to_numpy() & ~blank_text(s), index=s.index)


class TrainFileSchema(pa.DataFrameModel):
    """A written train or validation file: ``anchor, positive[, negative], intent, group_id``.

    A mined ``negative`` is text, and never the row's own answer (normalized).
    """

    anchor: Series[Any] = pa.Field(nullable=False)
    positive: Series[Any] = pa.Field(nullable=False)
    negative: Series[Any] | None = pa.Field(nullable=False)
    intent: Series[Any] = pa.Field(nullable=False)
    group_id: Series[Any] = pa.Field(nullable=False)

    class Config:
        strict = True
        ordered = True

    @pa.check("anchor", "positive", "negative", "intent", "group_id", name="blank")
    def _text(cls, s: pd.Series) -> pd.Series:
        return _nonblank_text(s)

    @pa.dataframe_check(name="negative_is_positive")
    def _negative(cls, df: pd.DataFrame) -> pd.Series:
        if "negative" not in df.columns:
            return pd.Series(True, index=df.index)
        return normalize_text(df["negative"]) != normalize_text(df["positive"])


class ValidationFileSchema(TrainFileSchema):
    """A written validation file: a train file's columns, then ``slice`` (``human_dev`` for the hand-written
    questions) and ``relevant`` (every answer text correct for the question; empty: the positive only)."""

    slice: Series[Any] | None = pa.Field(nullable=False)
    relevant: Series[Any] | None = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True

    @pa.check("slice", name="blank")
    def _slice_text(cls, s: pd.Series) -> pd.Series:
        return _nonblank_text(s)


class EvalFileSchema(pa.DataFrameModel):
    """A written eval file: ``anchor, positive, intent, group_id[, slice]`` (slice: see ``SLICES``)."""

    anchor: Series[Any] = pa.Field(nullable=False)
    positive: Series[Any] = pa.Field(nullable=False)
    intent: Series[Any] = pa.Field(nullable=False)
    group_id: Series[Any] = pa.Field(nullable=False)
    slice: Series[Any] | None = pa.Field(nullable=False)
    relevant: Series[Any] | None = pa.Field(nullable=True)
    """Every answer text that is correct for the question (its positive among them); empty: the positive only."""

    class Config:
        strict = True
        ordered = True

    @pa.check("anchor", "positive", "intent", "group_id", "slice", name="blank")
    def _text(cls, s: pd.Series) -> pd.Series:
        return _nonblank_text(s)


class NamesFileSchema(pa.DataFrameModel):
    """A written names file (the names stage's pairs): ``anchor, positive, group_id``.

    ``group_id`` is the pair's synonym class: each name belongs to one class, so a batch with one pair
    per class holds no synonym of another row's names. No pair twice, no name paired with itself.
    """

    anchor: Series[Any] = pa.Field(nullable=False)
    positive: Series[Any] = pa.Field(nullable=False)
    group_id: Series[Any] = pa.Field(nullable=False)

    class Config:
        strict = True
        ordered = True

    @pa.check("anchor", "positive", "group_id", name="blank")
    def _text(cls, s: pd.Series) -> pd.Series:
        return _nonblank_text(s)

    @pa.dataframe_check(name="same_text")
    def _distinct(cls, df: pd.DataFrame) -> pd.Series:
        return normalize_text(df["anchor"]) != normalize_text(df["positive"])

    @pa.dataframe_check(name="duplicate")
    def _unique(cls, df: pd.DataFrame) -> pd.Series:
        return ~pd.Series(list(zip(df["anchor"], df["positive"], strict=True)), index=df.index).duplicated()

    @pa.dataframe_check(name="one_class_per_name")
    def _one_class(cls, df: pd.DataFrame) -> pd.Series:
        names = pd.concat([df["anchor"], df["positive"]], ignore_index=True)
        classes = pd.concat([df["group_id"], df["group_id"]], ignore_index=True)
        per_name = classes.groupby(names.to_numpy()).nunique()
        ok = names.map(per_name).to_numpy() == 1
        return pd.Series(ok[: len(df)] & ok[len(df) :], index=df.index)


# --- catalogs -------------------------------------------------------------------------------------

CATALOG_COLUMNS = ("name", "cuisine", "ingredients", "diet_tags", "total_time_min")
OPTIONAL_CATALOG_COLUMNS = ("aliases",)
"""``aliases``: a list of ``ingredient=alternate name`` entries, ingredient among the row's ingredients."""


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)


class CatalogSchema(pa.DataFrameModel):
    """A recipe catalog: unique non-blank names, non-empty ingredient lists, times in minutes."""

    name: Series[Any] = pa.Field(nullable=False)
    cuisine: Series[Any] = pa.Field(nullable=False)
    ingredients: Series[Any] = pa.Field(nullable=False)
    diet_tags: Series[Any] = pa.Field(nullable=False)
    total_time_min: Series[int] = pa.Field(ge=0, le=7 * 24 * 60, coerce=True)
    aliases: Series[Any] | None = pa.Field(nullable=False)

    @pa.check("name", "cuisine", name="blank")
    def _blank(cls, s: pd.Series) -> pd.Series:
        return pd.Series(~blank_text(s), index=s.index)

    @pa.check("name", name="duplicate_name")
    def _unique(cls, s: pd.Series) -> pd.Series:
        key = normalize_text(s)
        return ~(key.duplicated(keep=False) & (key != ""))

    @pa.check("ingredients", name="empty_ingredients")
    def _ingredients(cls, s: pd.Series) -> pd.Series:
        return s.map(lambda v: _is_str_list(v) and len(v) > 0).astype(bool)

    @pa.check("diet_tags", name="bad_diet_tags")
    def _tags(cls, s: pd.Series) -> pd.Series:
        return s.map(_is_str_list).astype(bool)

    @pa.dataframe_check(name="bad_aliases")
    def _aliases(cls, df: pd.DataFrame) -> pd.Series:
        if "aliases" not in df.columns:
            return pd.Series(True, index=df.index)
        return pd.Series(
            [_aliases_ok(a, i) for a, i in zip(df["aliases"], df["ingredients"], strict=True)], index=df.index
        )


def _aliases_ok(aliases: Any, ingredients: Any) -> bool:
    """``aliases`` is a list of ``ingredient=alternate`` with the ingredient in ``ingredients``."""
    if not isinstance(aliases, list) or not isinstance(ingredients, list):
        return False
    known = {str(i).strip().lower() for i in ingredients}
    for entry in aliases:
        if not isinstance(entry, str):
            return False
        canonical, sep, alternate = entry.partition("=")
        if not sep or not alternate.strip() or canonical.strip().lower() not in known:
            return False
    return True
