"""The fast training input pipeline: tokenize once, pad in numpy, sample from precomputed ids.

The library's path, per training step of 512 pairs, tokenizes 1,024 texts in the collator and reads
dataset rows one at a time in the NO_DUPLICATES sampler. Here, instead:

* :func:`pipelines.tokencache.tokenize_split` tokenizes every text column once, with the model's own
  ``preprocess``, and caches the unpadded ids beside the dataset (``<data_dir>/.tokenized/``).
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

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from pipelines.tokencache import CACHE_DIR, FastPathUnsupported, TokenizedColumns, text_columns, tokenize_split

if TYPE_CHECKING:
    import pandas as pd
    from torch.utils.data import DataLoader

log = logging.getLogger(__name__)


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


# --- collator -----------------------------------------------------------------------------------


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
