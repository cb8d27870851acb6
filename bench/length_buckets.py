"""Length buckets (``training.length_buckets``): one training step's loss with each column encoded in up to
``k`` length groups, against the reference, the same step with each column one batch padded to its longest
text (``k`` = 1, what the library does), measured in the same process on the same batches.

For each batch of the fast input pipeline (``pipelines.fastdata``: the trainer's batches), the
MatryoshkaLoss(MultipleNegativesRankingLoss) forward and backward at 384/256/128/64 with k = 1, 2, 3, in
turns (so a slower or busier stretch of the machine falls on every k alike), dropout off so that every k
computes the same loss. Prints milliseconds per step,
each k's ratio to k = 1 (``k=3 is 1.8x faster``), the padded tokens each encodes, and the largest difference
of the loss from the reference's (float rounding only: padding is masked).

Data: ``--data`` (a dataset directory, e.g. ``recipe-embed synthesize -p cpu --out DIR``: its recipe cards
are the long texts), else the real synthesizer at the ``cpu`` profile without mining, in a temp dir.

    python bench/length_buckets.py --data DIR --batches 20
"""

from __future__ import annotations

import argparse
import itertools
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

KS = (1, 2, 3)


def _columns(batch: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """The trainer's batch (``<column>_<key>`` tensors) as the loss's list of per-column features."""
    return [{k.removeprefix(f"{c}_"): v for k, v in batch.items() if k.startswith(f"{c}_")} for c in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="a dataset directory instead of synthesizing")
    ap.add_argument("--n-train", type=int, default=2_000, help="pairs to synthesize when --data is not given")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=12, help="steps timed per k")
    ap.add_argument("--max-seq-length", type=int, default=96)
    ap.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    from pipelines.buckets import cut_points, length_buckets, spans
    from pipelines.fastdata import prepare_train_input
    from pipelines.models import resolve_base_model

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="buckets-bench-") as tmp:
        data = args.data
        if data is None:
            from train_throughput import build_data

            data, source = build_data(Path(tmp) / "data", args.n_train, args.n_train // 4, args.seed, False)
            print(f"data from {source}", flush=True)
        frame = pd.read_parquet(Path(data) / "train.parquet")
        names = [c for c in ("anchor", "positive", "negative") if c in frame.columns]
        frame = frame[names].astype(str).reset_index(drop=True)
        model = SentenceTransformer(resolve_base_model(args.model), device="cpu")
        model.max_seq_length = args.max_seq_length
        # dropout off: otherwise each k draws other dropout masks and the losses differ by more than rounding
        # (the compute is the same either way)
        model.eval()
        fast = prepare_train_input(model, frame, data_dir=Path(tmp) / "cache")
        batches = list(itertools.islice(fast.dataloader(args.batch_size, seed=args.seed), args.batches + 1))
        loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims=[384, 256, 128, 64])

        seconds: dict[int, list[float]] = {k: [] for k in KS}
        tokens = dict.fromkeys(KS, 0)
        worst = 0.0
        for n, batch in enumerate(batches):
            reference = None
            for k in KS:
                features = _columns(batch, names)
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                with length_buckets(model, k):
                    value = loss(features, torch.zeros(0))
                value.backward()
                dt = time.perf_counter() - t0
                if n == 0:
                    continue  # warm-up
                seconds[k].append(dt)
                if reference is None:
                    reference = value.item()
                worst = max(worst, abs(value.item() - reference))
                for f in features:
                    lengths = sorted(f["attention_mask"].sum(1).tolist())
                    bounds = spans(cut_points(lengths, k), len(lengths))
                    tokens[k] += sum((hi - lo) * lengths[hi - 1] for lo, hi in bounds)

    ref = statistics.median(seconds[1])
    print(
        f"{len(seconds[1])} steps of {args.batch_size} pairs ({', '.join(names)}), max_seq_length {args.max_seq_length}"
    )
    print(f"{'k':>3} {'ms/step':>9} {'padded tokens':>14} {'vs k=1':>8}")
    for k in KS:
        med = statistics.median(seconds[k])
        label = "reference" if k == 1 else f"{ref / med:.2f}x faster"
        print(f"{k:>3} {1000 * med:>9.0f} {tokens[k]:>14,} {label:>8}")
    print(f"largest difference of the loss from k=1's: {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
