"""Tokenize a split's text columns once, and cache the unpadded token ids beside the dataset.

:func:`tokenize_split` runs every text column through the model's own ``preprocess`` (so the token
ids are the library's), through ``datasets.map(batched=True)``, and caches the unpadded ids in
``<data_dir>/.tokenized/<split>-<key>``, keyed (:func:`cache_key`) by the split's bytes, the columns,
the tokenizer, ``max_seq_length`` and the library versions. :func:`probe_features` learns the layout
of ``preprocess``'s output first, and :class:`FastPathUnsupported` says when it is not plain
right-padded token ids. :mod:`pipelines.fastdata` pads and samples from the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CACHE_DIR = ".tokenized"
CACHE_FORMAT = 1
_SEP = "__"
_EXCLUDED_COLUMNS = ("dataset_name",)
_LABEL_COLUMNS = ("label", "labels", "score", "scores")  # the library's DEFAULT_LABEL_COLUMNS
_PROBE_TEXTS = ["a", "a b c d e f"]


class FastPathUnsupported(RuntimeError):
    """The model's preprocessing is not plain right-padded token ids: use the library's collator."""


def text_columns(columns: Sequence[str], label_columns: Sequence[str] = _LABEL_COLUMNS) -> list[str]:
    """The columns the library's collator tokenizes, in order (labels and ``dataset_name`` left out)."""
    return [c for c in columns if c not in _EXCLUDED_COLUMNS and c not in set(label_columns)]


# --- features -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """What the model's ``preprocess`` returns for a batch of texts, learned from a probe call.

    ``keys``: output keys in order; ``token_keys``: the per-token ``[batch, length]`` tensors among
    them, with the value each is padded with (``pad``); ``extras``: non-tensor entries copied as they
    are (e.g. ``modality: "text"``).
    """

    keys: tuple[str, ...]
    token_keys: tuple[str, ...]
    pad: dict[str, int]
    extras: dict[str, Any]
    dtypes: dict[str, Any]


def probe_features(preprocess_fn: Callable[..., dict[str, Any]]) -> FeatureSpec:
    """Call ``preprocess_fn`` on two texts of different lengths and read off the feature layout.

    :class:`FastPathUnsupported` unless the output is right-padded ``[batch, length]`` tensors with an
    ``attention_mask`` (e.g. flattened FlashAttention-2 inputs, images, prompt lengths).
    """
    out = preprocess_fn(list(_PROBE_TEXTS))
    mask = out.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or mask.shape[0] != len(_PROBE_TEXTS):
        raise FastPathUnsupported("preprocess gives no [batch, length] attention_mask")
    lengths = mask.sum(dim=1)
    width = mask.shape[1]
    if int(lengths[0]) >= width:
        raise FastPathUnsupported("probe texts were not padded")
    if not torch.equal(mask, (torch.arange(width)[None, :] < lengths[:, None]).to(mask.dtype)):
        raise FastPathUnsupported("preprocess does not pad on the right")
    token_keys: list[str] = []
    pad: dict[str, int] = {}
    extras: dict[str, Any] = {}
    dtypes: dict[str, Any] = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            if value.shape != mask.shape or value.dtype.is_floating_point:
                raise FastPathUnsupported(f"preprocess output {key!r} is not a per-token id tensor")
            token_keys.append(key)
            pad[key] = int(value[0, -1])
            dtypes[key] = value.dtype
        elif isinstance(value, str | int | float | bool) or value is None:
            extras[key] = value
        else:
            raise FastPathUnsupported(f"preprocess output {key!r} of type {type(value).__name__}")
    return FeatureSpec(tuple(out.keys()), tuple(token_keys), pad, extras, dtypes)


@dataclass
class _TokenColumn:
    """One text column's unpadded tokens: per key a flat array (or a constant), shared offsets."""

    offsets: np.ndarray  # int64, [n_rows + 1]: row r is values[offsets[r]:offsets[r + 1]]
    lengths: np.ndarray  # int64, [n_rows]
    values: dict[str, np.ndarray | int]  # key -> flat int array, or one int when every token has it


@dataclass
class TokenizedColumns:
    """Pre-tokenized text columns of one split, ready for :class:`PadCollator`."""

    columns: list[str]
    spec: FeatureSpec
    data: dict[str, _TokenColumn]

    def __len__(self) -> int:
        return len(next(iter(self.data.values())).lengths)


def _tokenize_batch(
    batch: dict[str, list[Any]], *, columns: list[str], preprocess_fn: Callable[..., Any], keys: list[str]
) -> Any:
    """One ``datasets.map`` batch: each column through ``preprocess_fn``, padding cut off, as an Arrow
    table of list columns (``<column>__<key>``) built from the flat ids and offsets in one go (a list of
    per-row arrays would be converted row by row)."""
    import pyarrow as pa

    out: dict[str, Any] = {}
    for col in columns:
        feats = preprocess_fn(list(batch[col]))
        mask = feats["attention_mask"]
        lengths = mask.sum(dim=1)
        if not torch.equal(mask, (torch.arange(mask.shape[1])[None, :] < lengths[:, None]).to(mask.dtype)):
            raise FastPathUnsupported(f"column {col!r}: preprocess does not pad on the right")
        keep = mask.numpy().astype(bool)  # right-padded: row-major selection concatenates the rows
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths.numpy(), out=offsets[1:])
        arrow_offsets = pa.array(offsets, type=pa.int32())
        for key in keys:
            flat = feats[key].numpy()[keep].astype(np.int32, copy=False)
            out[f"{col}{_SEP}{key}"] = pa.ListArray.from_arrays(arrow_offsets, pa.array(flat))
    return pa.table(out)


def tokenizer_fingerprint(model: Any) -> str:
    """A digest of the model's tokenizer (its full serialized state where it has one)."""
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise FastPathUnsupported("model has no tokenizer")
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        state = backend.to_str()
    else:
        state = json.dumps(sorted(tok.get_vocab().items()))
    extra = json.dumps(
        [type(tok).__name__, getattr(tok, "padding_side", None), getattr(tok, "model_max_length", None)], default=str
    )
    return hashlib.sha256((state + extra).encode()).hexdigest()


def cache_key(model: Any, source: Path | None, columns: Sequence[str]) -> str:
    """Key of a split's token cache: source bytes, columns, tokenizer, max_seq_length, library versions."""
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    parts = {
        "format": CACHE_FORMAT,
        "source": _sha256_file(source) if source is not None and source.is_file() else None,
        "columns": list(columns),
        "tokenizer": tokenizer_fingerprint(model),
        "max_seq_length": getattr(model, "max_seq_length", None),
        "versions": [version(p) for p in ("sentence-transformers", "transformers", "tokenizers")],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize_split(
    model: Any,
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    cache_dir: Path | None = None,
    source: Path | None = None,
    name: str = "train",
    batch_size: int = 1000,
) -> TokenizedColumns:
    """Tokenize ``frame``'s text ``columns`` once with ``model.preprocess`` (``datasets.map``).

    With ``cache_dir``, the result is stored under ``cache_dir/<name>-<key>`` (:func:`cache_key`,
    from ``source``, the file ``frame`` was read from) and reused by a later call with the same key;
    an unwritable ``cache_dir`` only costs the caching.
    """
    import datasets

    cols = list(columns) if columns is not None else text_columns(list(frame.columns))
    spec = probe_features(model.preprocess)
    keys = [k for k in spec.token_keys if k != "attention_mask"]
    key = cache_key(model, source, cols)
    target = Path(cache_dir) / f"{name}-{key}" if cache_dir is not None else None
    ds = None
    if target is not None and (target / "dataset_info.json").is_file():
        try:
            ds = datasets.load_from_disk(str(target))
            log.info("token cache hit: %s", target)
        except (OSError, ValueError) as exc:
            log.warning("token cache %s unreadable (%s): tokenizing again", target, exc)
            ds = None
    if ds is None:
        source_ds = datasets.Dataset.from_pandas(frame[cols].astype(str), preserve_index=False)
        ds = source_ds.map(
            _tokenize_batch,
            batched=True,
            batch_size=batch_size,
            remove_columns=cols,
            fn_kwargs={"columns": cols, "preprocess_fn": model.preprocess, "keys": keys},
            new_fingerprint=f"recipe-embed-tokens-{key}",
            desc=f"Tokenizing {name}",
        )
        if target is not None:
            _save_atomically(ds, target)
    return _to_columns(ds, cols, spec, keys)


def _save_atomically(ds: Any, target: Path) -> None:
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_to_disk(str(tmp))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("cannot write token cache %s (%s): continuing without it", target, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _to_columns(ds: Any, cols: list[str], spec: FeatureSpec, keys: list[str]) -> TokenizedColumns:
    import pyarrow as pa

    data: dict[str, _TokenColumn] = {}
    for col in cols:
        offsets: np.ndarray | None = None
        values: dict[str, np.ndarray | int] = {}
        for key in keys:
            arr = ds.data.column(f"{col}{_SEP}{key}")
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            off = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
            flat = arr.values.to_numpy(zero_copy_only=False)
            if offsets is None:
                offsets = off
            elif not np.array_equal(offsets, off):
                raise FastPathUnsupported(f"column {col!r}: {key} does not align with the other features")
            used = flat[off[0] : off[-1]]
            if used.size and used.min() == used.max():
                values[key] = int(used[0])
            else:
                values[key] = flat
        if offsets is None:
            raise FastPathUnsupported("no per-token features besides attention_mask")
        data[col] = _TokenColumn(offsets=offsets, lengths=np.diff(offsets), values=values)
    return TokenizedColumns(columns=cols, spec=spec, data=data)
