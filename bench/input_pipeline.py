"""Training input pipeline: ours (tokenize once, numpy padding, id sampler) vs the library's, on CPU.

For each path, the milliseconds per batch of 512 pairs to go from the sampler to tensors ready for
the model (sampler + row fetch + collate, and pinning where CUDA is present), over the same data:

* library: ``NoDuplicatesBatchSampler`` over a ``datasets.Dataset``, rows fetched by the
  ``DataLoader``'s fetcher (``Dataset.__getitems__``), ``SentenceTransformerDataCollator``
  (tokenizes every text of the batch);
* ours: ``pipelines.fastdata`` (``NoDuplicatesIdBatchSampler`` + ``PadCollator`` over the
  pre-tokenized columns).

Both run through a ``torch.utils.data.DataLoader`` with no workers, as the trainer builds it.
The batches are checked equal (same rows, same features) before anything is timed. The one-time
tokenization (cached beside the dataset afterwards) is printed separately. Prints
``ours is N.Nx faster``.

Data: ``pipelines.datasets.build_dataset`` (the real synthesizer, ``cpu`` profile, without hard-negative
mining: the timed columns are the anchor and the positive; where its dependencies are missing, the local
generator of ``bench/train_throughput.py``) at ``--n-train`` pairs, optionally with a ``negative`` column
(``--negatives``: each row's positive shifted by a few rows, a stand-in for mined hard negatives) to time
three text columns.

    python bench/input_pipeline.py --n-train 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _time_batches(loader: Any, n_batches: int, pin: bool) -> tuple[list[float], list[Any]]:
    """Per-batch seconds for the first ``n_batches`` batches (``next`` on the loader iterator)."""
    times: list[float] = []
    kept: list[Any] = []
    it = iter(loader)
    for _ in range(n_batches):
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        if pin:
            import torch

            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        kept.append(batch)
    return times, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=20_000, help="pairs to synthesize (train + validation)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--batches", type=int, default=20, help="batches timed per path")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    ap.add_argument("--negatives", action="store_true", help="add a third text column (negative)")
    ap.add_argument("--data", type=Path, default=None, help="an existing dataset dir instead of synthesizing")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    import datasets
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator
    from torch.utils.data import DataLoader

    from pipelines.fastdata import prepare_train_input
    from pipelines.models import resolve_base_model

    datasets.disable_progress_bars()
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="input-bench-") as tmp:
        data = args.data
        if data is None:
            from train_throughput import build_data  # the real synthesizer, else a local generator

            t0 = time.perf_counter()
            n_eval = max(1, args.n_train // 10)
            data, source = build_data(Path(tmp) / "data", args.n_train, n_eval, args.seed, hard_negatives=False)
            print(f"data from {source} in {time.perf_counter() - t0:.1f} s", flush=True)
        frame = pd.read_parquet(Path(data) / "train.parquet")
        cols = ["anchor", "positive"]
        if args.negatives:
            if "negative" not in frame.columns:
                frame["negative"] = frame["positive"].shift(7).fillna(frame["positive"].iloc[-1])
            cols.append("negative")
        frame = frame[cols].astype(str).reset_index(drop=True)

        model = SentenceTransformer(resolve_base_model(args.model), device="cpu")
        model.max_seq_length = args.max_seq_length

        # ours: one-time tokenization (into a cache dir we throw away), then per batch
        t0 = time.perf_counter()
        fast = prepare_train_input(model, frame, data_dir=Path(tmp) / "cache-home")
        prep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare_train_input(model, frame, data_dir=Path(tmp) / "cache-home")
        reload_s = time.perf_counter() - t0
        ours_loader = fast.dataloader(args.batch_size, seed=args.seed, pin_memory=cuda)

        # the library's: what SentenceTransformerTrainer builds for NO_DUPLICATES
        ds = datasets.Dataset.from_pandas(frame, preserve_index=False)
        generator = torch.Generator()
        generator.manual_seed(args.seed)
        lib_sampler = NoDuplicatesBatchSampler(
            ds, batch_size=args.batch_size, drop_last=False, generator=generator, seed=args.seed
        )
        lib_loader = DataLoader(
            ds,
            batch_sampler=lib_sampler,
            collate_fn=SentenceTransformerDataCollator(preprocess_fn=model.preprocess),
            pin_memory=cuda,
        )

        n = min(args.batches, len(lib_sampler))
        # warm-up (first-call costs), then the timed runs
        _time_batches(ours_loader, 1, cuda)
        _time_batches(lib_loader, 1, cuda)
        ours_t, ours_b = _time_batches(ours_loader, n, cuda)
        lib_t, lib_b = _time_batches(lib_loader, n, cuda)

        same_keys = [list(b) for b in ours_b] == [list(b) for b in lib_b]
        equal = same_keys and all(
            all(torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k] for k in x)
            for x, y in zip(ours_b, lib_b, strict=True)
        )

    def ms(values: list[float]) -> tuple[float, float]:
        return 1000 * statistics.mean(values), 1000 * statistics.median(values)

    lib_mean, lib_med = ms(lib_t)
    ours_mean, ours_med = ms(ours_t)
    threads = torch.get_num_threads()
    print()
    print(f"data: {len(frame)} train rows, columns {cols}, max_seq_length {args.max_seq_length}")
    print(f"cpu: {os.cpu_count()} cores, torch threads {threads}; pinned memory: {cuda}")
    print(f"batches timed per path: {len(lib_t)} of {args.batch_size} pairs (same rows, same features: {equal})")
    print()
    print("| path    | ms/batch (mean) | ms/batch (median) |")
    print("|---------|-----------------|-------------------|")
    print(f"| library | {lib_mean:15.1f} | {lib_med:17.1f} |")
    print(f"| ours    | {ours_mean:15.2f} | {ours_med:17.2f} |")
    print()
    per_epoch_batches = -(-len(frame) // args.batch_size)
    print(
        f"ours, one-time tokenization: {prep_s:.1f} s ({prep_s / per_epoch_batches * 1000:.0f} ms per batch of "
        f"the first epoch's {per_epoch_batches}, none after); reload from cache: {reload_s:.2f} s"
    )
    if not equal:
        print("!!! the two paths gave different batches")
        return 1
    print(f"ours is {lib_mean / ours_mean:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
