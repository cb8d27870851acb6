"""The fast training input pipeline: tokenize once, pad in numpy, sample from precomputed ids.

The library's path, per training step of 512 pairs, tokenizes 1,024 texts in the collator and reads
dataset rows one at a time in the NO_DUPLICATES sampler. Here, instead:

* :func:`tokenize_split` tokenizes every text column once, with the model's own ``preprocess``
  (so the token ids are the library's), through ``datasets.map(batched=True)``, and caches the
  unpadded ids beside the dataset (``<data_dir>/.tokenized/<split>-<key>``), keyed by the split's
  bytes, the columns, the tokenizer, ``max_seq_length`` and the library versions.
* :class:`PadCollator` only pads those ids (numpy) and emits exactly the features the
  sentence-transformers data collator emits for the same rows (same keys, order, dtypes, values).
* :class:`NoDuplicatesIdBatchSampler` is the library's NO_DUPLICATES sampler (same shuffle, same
  deferral of conflicting rows, same batches) on integer ids precomputed once per text: a row
  conflicts with a batch when any of its texts, in any text column (anchor, positive, negative,
  ...), equals any text already in the batch.
* :meth:`FastTrainInput.dataloader` puts them in a ``DataLoader`` whose dataset hands the sampler's
  row indices straight to the collator (no per-row reads), with pinned memory where asked.

Columns are taken in order, any number of them: MNRL reads the first as anchor, the second as
positive, and any further ones as hard negatives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

if TYPE_CHECKING:
    import pandas as pd
    from torch.utils.data import DataLoader

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


# --- sampler ------------------------------------------------------------------------------------


def text_ids(columns: Sequence[Sequence[Any]]) -> np.ndarray:
    """``[n_rows, n_columns]`` int64: equal ids exactly where the values' ``str()`` are equal, across
    all columns (the library's NO_DUPLICATES compares ``str(value)`` over every column of a row)."""
    import pandas as pd

    if not columns:
        raise ValueError("no text columns")
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError("text columns differ in length")
    flat = pd.Series(np.concatenate([np.asarray(c, dtype=object) for c in columns]), dtype=object)
    if not all(isinstance(v, str) for v in flat):
        flat = flat.map(str)
    codes, _ = pd.factorize(flat, sort=False)
    return codes.astype(np.int64).reshape(len(columns), n).T.copy()


def _dataset_text_ids(dataset: Any, valid_label_columns: Sequence[str] | None) -> np.ndarray:
    names = text_columns(list(dataset.column_names), valid_label_columns or ())
    return text_ids([dataset[c] for c in names])


class NoDuplicatesIdBatchSampler(DefaultBatchSampler):
    """The library's ``NoDuplicatesBatchSampler``, on precomputed integer ids.

    Same arguments as the library's samplers (so ``batch_sampler=NoDuplicatesIdBatchSampler`` also
    works as a trainer argument, computing the ids from a ``datasets.Dataset``), plus ``row_ids``:
    ``[len(dataset), n_columns]`` ids from :func:`text_ids`. Epoch ``e`` reseeds ``generator`` with
    ``seed + e`` (``set_epoch``), shuffles with ``torch.randperm`` and fills each batch in shuffled
    order, deferring a row whose texts meet the batch's to a later batch: the library's batches,
    row for row. Like the library, when one pass yields fewer than ``len(self)`` batches it
    reshuffles (up to twice) to reach that count.
    """

    MAX_RESAMPLE_PASSES = 2

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        row_ids: np.ndarray | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        self.dataset = dataset
        ids = _dataset_text_ids(dataset, valid_label_columns) if row_ids is None else np.asarray(row_ids)
        if ids.ndim != 2 or ids.shape[0] != len(dataset):
            raise ValueError(f"row_ids: expected shape [{len(dataset)}, n_columns], got {list(ids.shape)}")
        self.n_values = int(ids.max()) + 1 if ids.size else 0
        # Python ints: the inner loop below is plain Python, and list/bytearray indexing is its fastest form.
        self._rows: list[tuple[int, ...]] = [tuple(r) for r in ids.tolist()]

    def __len__(self) -> int:
        n = len(self._rows)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        if not self._rows:
            return
        expected = len(self)
        yielded = 0
        for batch in self._one_pass():
            yield batch
            yielded += 1
        if yielded >= expected or yielded == 0:
            return
        log.warning(
            "no-duplicates sampling filled %d of %d batches in one pass; resampling the rest", yielded, expected
        )
        for _ in range(self.MAX_RESAMPLE_PASSES):
            for batch in self._one_pass():
                yield batch
                yielded += 1
                if yielded >= expected:
                    return

    def _one_pass(self) -> Iterator[list[int]]:
        n = len(self._rows)
        dtype = torch.int32 if n <= np.iinfo(np.int32).max else torch.int64
        order: list[int] = torch.randperm(n, generator=self.generator, dtype=dtype).tolist()
        rows = self._rows
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        used = bytearray(self.n_values)
        size = self.batch_size
        head = 0
        while head != -1:
            batch: list[int] = []
            touched: list[int] = []
            cur, prev, full = head, -1, False
            while cur != -1:
                following = nxt[cur]
                index = order[cur]
                values = rows[index]
                if any(used[v] for v in values):
                    prev, cur = cur, following  # conflicting: leave it for a later batch
                    continue
                batch.append(index)
                if prev == -1:
                    head = following
                else:
                    nxt[prev] = following
                if len(batch) == size:
                    full = True
                    break
                for v in values:
                    used[v] = 1
                touched.extend(values)
                cur = following
            for v in touched:
                used[v] = 0
            if full or not self.drop_last:
                yield batch


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


class PadCollator:
    """Rows (indices into a :class:`TokenizedColumns`) -> the library collator's features, padded.

    For each column in order: ``<column>_<key>`` for every key of the model's ``preprocess`` output,
    padded on the right to the longest row of that column in the batch, as int64 tensors (the
    library's dtype), plus the non-tensor entries (``<column>_modality``) where the library has them.
    """

    def __init__(self, tokens: TokenizedColumns) -> None:
        self.tokens = tokens
        self.spec = tokens.spec

    def __call__(self, rows: Sequence[int] | np.ndarray) -> dict[str, Any]:

        idx = np.asarray(rows, dtype=np.int64)
        if idx.size == 0:
            return {}
        batch: dict[str, Any] = {}
        for col in self.tokens.columns:
            column = self.tokens.data[col]
            lens = column.lengths[idx]
            width = int(lens.max())
            ar = np.arange(width, dtype=np.int64)
            mask = ar[None, :] < lens[:, None]
            pos = column.offsets[idx][:, None] + np.minimum(ar[None, :], lens[:, None] - 1)
            for key in self.spec.keys:
                if key in self.spec.extras:
                    batch[f"{col}_{key}"] = self.spec.extras[key]
                    continue
                pad = self.spec.pad[key]
                if key == "attention_mask":
                    out = mask.astype(np.int64)
                else:
                    source = column.values[key]
                    if isinstance(source, int):
                        out = np.where(mask, np.int64(source), np.int64(pad))
                    else:
                        out = source[pos].astype(np.int64)
                        out[~mask] = pad
                tensor = torch.from_numpy(out)
                dtype = self.spec.dtypes[key]
                batch[f"{col}_{key}"] = tensor if dtype == torch.int64 else tensor.to(dtype)
        return batch


class RowIndices(torch.utils.data.Dataset[int]):
    """A map-style dataset of row numbers: ``DataLoader`` hands the sampler's indices to the collator
    as one list (``__getitems__``), with no per-row reads."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if not 0 <= int(index) < self.n:
            raise IndexError(index)
        return int(index)

    def __getitems__(self, indices: Sequence[int]) -> list[int]:
        return [int(i) for i in indices]


# --- the training input -------------------------------------------------------------------------


@dataclass
class FastTrainInput:
    """Everything the trainer's train ``DataLoader`` needs, built once per ``train`` call."""

    tokens: TokenizedColumns
    row_ids: np.ndarray

    @property
    def collator(self) -> PadCollator:
        return PadCollator(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def batch_sampler(
        self, batch_size: int, *, drop_last: bool, seed: int, no_duplicates: bool = True
    ) -> NoDuplicatesIdBatchSampler | Any:
        """The library's sampler choice (its generator seeding included), over row numbers."""
        from torch.utils.data import RandomSampler

        generator = torch.Generator()
        generator.manual_seed(seed)
        dataset = RowIndices(len(self))
        if no_duplicates:
            return NoDuplicatesIdBatchSampler(
                dataset, batch_size, drop_last, generator=generator, seed=seed, row_ids=self.row_ids
            )
        return DefaultBatchSampler(
            RandomSampler(dataset, generator=generator),
            batch_size=batch_size,
            drop_last=drop_last,
            generator=generator,
            seed=seed,
        )

    def dataloader(
        self,
        batch_size: int,
        *,
        drop_last: bool = False,
        seed: int = 0,
        no_duplicates: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
    ) -> DataLoader:
        """A ``DataLoader`` yielding the library collator's features; ``pin_memory`` for async copies."""
        from torch.utils.data import DataLoader

        kwargs: dict[str, Any] = {}
        if num_workers > 0:
            kwargs = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor}
        return DataLoader(
            RowIndices(len(self)),
            batch_sampler=self.batch_sampler(batch_size, drop_last=drop_last, seed=seed, no_duplicates=no_duplicates),
            collate_fn=self.collator,
            num_workers=num_workers,
            pin_memory=pin_memory,
            **kwargs,
        )


def prepare_train_input(
    model: Any, frame: pd.DataFrame, *, data_dir: Path | None = None, split: str = "train"
) -> FastTrainInput:
    """Tokenize (or load from the cache beside ``data_dir``) ``frame``'s text columns and precompute
    the sampler's ids. :class:`FastPathUnsupported` when the model's inputs are not plain token ids."""
    cols = text_columns(list(frame.columns))
    if any(type(m).__name__ == "Router" for m in getattr(model, "children", lambda: [])()):
        raise FastPathUnsupported("models with a Router module need the library's collator")
    source = Path(data_dir) / f"{split}.parquet" if data_dir is not None else None
    cache = Path(data_dir) / CACHE_DIR if data_dir is not None else None
    tokens = tokenize_split(model, frame, cols, cache_dir=cache, source=source, name=split)
    ids = text_ids([frame[c].tolist() for c in cols])
    return FastTrainInput(tokens=tokens, row_ids=ids)
