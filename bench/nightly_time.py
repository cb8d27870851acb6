"""How long the nightly takes on this machine: its Prefect-free core, stage by stage, with the real functions.

The project's goal: the ``default`` profile's nightly (10 epochs of ~57k train pairs, plus the
evaluations) in under 3 minutes on one H100/H200. Timed with ``time.perf_counter``:

* start-up: importing torch, sentence-transformers and the pipeline's training/evaluation modules;
* data: ``pipelines.datasets.build_dataset`` (synthesize, validate, mine hard negatives when
  ``synthesis.hard_negatives`` is on, write), what ``synthesize_stage`` runs on a new dataset key. Where
  ``pipelines.datasets`` does not import (no pandera), the bench's synthetic generator stands in
  (no validation, no hard negatives) and the output says so;
* train: ``pipelines.training.train`` with the profile's training config (per-epoch validation,
  checkpoint saves and loading the best checkpoint included);
* evaluate: ``pipelines.stages.evaluate_stage`` on eval.parquet, for the candidate and the base model.

Not included: Prefect orchestration (flow and task start-up, the training subprocess) and MLflow logging,
registration and promotion; ``make run`` measures those on CPU. A nightly whose catalog and data config
did not change reuses its dataset, so the total is also printed without the data stage.

Run (``--profile auto``: ``default`` on a GPU, ``cpu`` elsewhere)::

    python bench/nightly_time.py                      # the whole nightly: 10 epochs at seed scale on a GPU
    python bench/nightly_time.py --epochs 1           # one default-profile epoch at seed scale
    python bench/nightly_time.py --profile cpu --n-train 2000 --n-eval 300 --epochs 1

It is a measurement: the exit code is 0 whether the goal is met or not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

GOAL_SECONDS = 180.0


def make_data(cfg: Any, out: Path) -> tuple[str, str]:
    """Write train/validation/eval.parquet to ``out``; return (data source, detail)."""
    try:
        from pipelines.datasets import build_dataset
    except ImportError as exc:
        print(f"note: pipelines.datasets does not import ({exc}): using the bench's synthetic generator", flush=True)
    else:
        manifest = build_dataset(cfg, out)
        timings = manifest.get("timings") or {}
        detail = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items())
        mined = "on" if cfg.synthesis.hard_negatives else "off"
        return f"pipelines.datasets.build_dataset (hard negatives {mined})", detail

    from eval_speed import write_synthetic_dataset

    syn = cfg.synthesis
    n_val = max(1, int(syn.n_train * syn.validation_fraction))
    write_synthetic_dataset(out, syn.n_train, syn.n_eval, n_val, seed=syn.seed)
    return "local synthetic generator (pipelines.datasets not importable)", "no validation, no hard negatives"


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import ConfigError, load_config
    from pipelines.profiles import AUTO, PROFILE_CHOICES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILE_CHOICES, default=AUTO, help="default: auto (default on a GPU)")
    ap.add_argument("--epochs", type=float, default=None, help="override training.epochs (1: one epoch)")
    ap.add_argument("--n-train", type=int, default=None, help="override synthesis.n_train (default: the profile's)")
    ap.add_argument("--n-eval", type=int, default=None, help="override synthesis.n_eval (default: the profile's)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE config override (repeatable)")
    ap.add_argument("--work-dir", type=Path, default=None, help="keep data and models here (default: temp, deleted)")
    ap.add_argument("--no-progress", action="store_true", help="no per-step training lines")
    args = ap.parse_args(argv)

    times: dict[str, float] = {}
    t = time.perf_counter()
    import sentence_transformers
    import torch
    import transformers

    from pipelines.metrics import metric_key
    from pipelines.stages import evaluate_stage
    from pipelines.training import train

    times["start-up (imports)"] = time.perf_counter() - t

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="nightly-time-"))
    overrides: dict[str, Any] = {"paths": {"data_dir": str(work)}}  # cold negatives cache, nothing outside work
    synthesis = {k: v for k, v in (("n_train", args.n_train), ("n_eval", args.n_eval)) if v is not None}
    if synthesis:
        overrides["synthesis"] = synthesis
    if args.epochs is not None:
        overrides["training"] = {"epochs": args.epochs}
    try:
        cfg = load_config(args.profile, overrides=overrides, sets=tuple(args.sets))
    except ConfigError as exc:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
        ap.error(str(exc))
    seed_scale = load_config("default")  # what the goal is about

    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}")
    print(
        f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"transformers {transformers.__version__}"
    )
    print(
        f"profile: {cfg.profile} (asked: {args.profile}); synthesis n_train {cfg.synthesis.n_train}, "
        f"n_eval {cfg.synthesis.n_eval}; epochs {cfg.training.epochs}; work dir {work}",
        flush=True,
    )
    data_dir, models = work / "dataset", work / "models"
    try:
        t = time.perf_counter()
        source, data_detail = make_data(cfg, data_dir)
        times["data: synthesize + validate + mine"] = time.perf_counter() - t

        print("\n== training ==", flush=True)
        t = time.perf_counter()
        result = train(data_dir, models / "candidate", cfg.model, cfg.training, progress=not args.no_progress)
        times["train"] = time.perf_counter() - t

        t = time.perf_counter()
        candidate = evaluate_stage(cfg, str(models / "candidate"), str(data_dir), str(models / "eval_metrics.json"))
        times["evaluate candidate"] = time.perf_counter() - t
        base: dict[str, float] | None = None
        if cfg.evaluation.evaluate_base:
            t = time.perf_counter()
            base = evaluate_stage(cfg, cfg.model.base_model, str(data_dir), str(models / "base_metrics.json"))
            times["evaluate base model"] = time.perf_counter() - t
        import pandas as pd

        n_rows = {s: len(pd.read_parquet(data_dir / f"{s}.parquet")) for s in ("train", "validation", "eval")}
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    s = result.settings
    loop_pps = s.get("loop_pairs_per_second")
    steps = cfg.training.max_steps if cfg.training.max_steps > 0 else None
    print(f"\ndata: {source}; rows: train {n_rows['train']}, validation {n_rows['validation']}, eval {n_rows['eval']}")
    print(
        f"training: global batch {s.get('global_batch_size')} (per device {s.get('per_device_batch_size')} x "
        f"accumulation {s.get('gradient_accumulation_steps')}), epochs {cfg.training.epochs}"
        f"{f', max_steps {steps}' if steps else ''}, precision {s.get('precision')}, "
        f"attention {s.get('attention_backend')} ({s.get('attention_kernels')}, {s.get('attn_implementation')}), "
        f"input pipeline {s.get('input_pipeline')}, max_seq_length {s.get('max_seq_length')}, device {result.device}"
    )
    print()
    print("| stage                              | seconds | detail")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 60}")
    details = {
        "data: synthesize + validate + mine": data_detail,
        "train": (
            f"{result.global_step} steps; {result.pairs_per_second:,.1f} pairs/s train, "
            + (f"{float(loop_pps):,.1f} pairs/s loop" if loop_pps is not None else "pairs/s loop n/a")
            + f"; validation eval {result.eval_seconds:.1f} s, checkpoints {float(s.get('checkpoint_seconds', 0)):.1f}"
            f" s, input prep {float(s.get('input_prep_seconds', 0)):.1f} s"
        ),
        "evaluate candidate": f"{n_rows['eval']} eval pairs, dims {list(cfg.evaluation.dims)}",
    }
    for name, sec in times.items():
        print(f"| {name:<34} | {sec:>7.1f} | {details.get(name) or ''}")
    total = sum(times.values())
    print()
    for d in cfg.evaluation.dims:
        key = metric_key(d)
        line = f"map@100 dim {d}: candidate {candidate[key]:.4f}"
        print(
            line + (f", base {base[key]:.4f} ({candidate[key] - base[key]:+.4f})" if base else ", base not evaluated")
        )
    print()
    print(
        "not included: Prefect orchestration and MLflow logging/registration/promotion (measured by `make run` on CPU)"
    )
    reused = total - times["data: synthesize + validate + mine"]
    print(f"with the dataset reused (unchanged catalog and data config): {reused:.1f} s")
    print(
        f"core nightly total: {total:.1f} s (goal < {GOAL_SECONDS:.0f} s: {'met' if total < GOAL_SECONDS else 'not met'})"
    )
    if not gpu or any(getattr(cfg, k) != getattr(seed_scale, k) for k in ("synthesis", "model", "training")):
        print("(the goal is for the default profile's full nightly, 10 epochs at seed scale, on one GPU: not this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
