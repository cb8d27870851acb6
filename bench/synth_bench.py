"""Time synthesis + validation of the default-size dataset (goal: under 5 s on a 2-core machine).

Hard-negative mining is excluded (``synthesis.hard_negatives`` off here): it is its own step.

Usage: ``python bench/synth_bench.py [--profile default] [--repeat 3]``

Prints the interpreter/library import time separately, then per run the wall time of each phase of
``build_dataset`` (catalog, synthesize, validate incl. tokenizer, write) and pairs/s. As a reference
measured in the same run it also validates a sample with a naive per-row implementation of the same
rules (Python loop, every text tokenized) and prints the speed-up of the vectorized path.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from pipelines.catalog import load_catalog  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.datasets import build_dataset  # noqa: E402
from pipelines.schemas import PAIR_COLUMNS  # noqa: E402
from pipelines.synthesis import synthesize  # noqa: E402
from pipelines.validation import load_tokenizer, validate_pairs  # noqa: E402

IMPORT_S = time.perf_counter() - _T0
GOAL_S = 5.0


def naive_validate(rows: list[tuple[str, str, str]], tokenizer: object, max_tokens: int) -> int:
    """The same rules, one row at a time: the reference the vectorized path is compared with."""
    bad_re = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd\ufffe\uffff]")
    norm_re = re.compile(r"[\W_]+")
    seen_pairs: set[tuple[str, str]] = set()
    first_split: dict[str, int] = {}
    order = {"train": 0, "validation": 1, "eval": 2}
    rejected = 0
    for anchor, positive, split in rows:
        ok = True
        for text in (anchor, positive):
            too_long = lambda t: len(tokenizer.encode(t).ids) > max_tokens  # type: ignore[attr-defined]  # noqa: E731
            if not isinstance(text, str) or not text.strip() or bad_re.search(text) or too_long(text):
                ok = False
        a = norm_re.sub(" ", anchor.casefold()).strip()
        p = norm_re.sub(" ", positive.casefold()).strip()
        if ok and (a == p or (a, p) in seen_pairs):
            ok = False
        seen_pairs.add((a, p))
        if ok and first_split.setdefault(a, order[split]) < order[split]:
            ok = False
        rejected += not ok
    return rejected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference-rows", type=int, default=5000)
    args = ap.parse_args()
    # Mining hard negatives is a step of its own (timed separately, cached, on the GPU when there is
    # one): the 5 s goal is synthesis + validation, so the bench runs without it.
    cfg = load_config(args.profile, overrides={"synthesis": {"hard_negatives": False}})
    import os

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (other work on the machine slows every phase)")
    print(f"imports (python + pandas + pandera + pipelines): {IMPORT_S:.2f} s  [not counted below]")

    totals: list[float] = []
    n_pairs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            t = time.perf_counter()
            m = build_dataset(cfg, Path(tmp) / f"run{i}")
            wall = time.perf_counter() - t
            totals.append(wall)
            n_pairs = m["input_rows"]
            phases = "  ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in m["timings"].items())
            print(f"run {i + 1}: {wall:.2f} s total  ({phases})  {n_pairs / wall:,.0f} pairs/s")
    best, med = min(totals), statistics.median(totals)
    kept = m["accepted_rows"]
    print(
        f"{args.profile}: {n_pairs:,} pairs synthesized+validated ({kept:,} kept), best {best:.2f} s, median {med:.2f} s"
    )
    print(f"goal {GOAL_S:.1f} s: best/goal = {best / GOAL_S:.2f} ({'met' if best <= GOAL_S else 'NOT met'})")

    # reference: naive per-row validation of a sample, same machine, same run
    pairs = synthesize(load_catalog(cfg.catalog), cfg.synthesis)[[*PAIR_COLUMNS, "split"]]
    sample = pairs.sample(min(args.reference_rows, len(pairs)), random_state=0)
    rows = list(zip(sample["anchor"], sample["positive"], sample["split"], strict=True))
    tok = load_tokenizer(cfg.model.base_model)
    t = time.perf_counter()
    naive_validate(rows, tok, cfg.model.max_seq_length)
    naive_rate = len(rows) / (time.perf_counter() - t)
    t = time.perf_counter()
    validate_pairs(sample, max_tokens=cfg.model.max_seq_length, tokenizer=tok)
    vec_small = len(rows) / (time.perf_counter() - t)
    t = time.perf_counter()
    validate_pairs(pairs, max_tokens=cfg.model.max_seq_length, tokenizer=tok)
    vec_rate = len(pairs) / (time.perf_counter() - t)
    print(
        f"validation rate: vectorized {vec_rate:,.0f} rows/s (full), {vec_small:,.0f} rows/s "
        f"({len(rows):,}-row sample); naive per-row reference {naive_rate:,.0f} rows/s "
        f"-> speed-up {vec_rate / naive_rate:.1f}x"
    )


if __name__ == "__main__":
    main()
