"""Training throughput and quality: the card's plain recipe vs our default, in one process.

All runs use the same data, base model, loss (MatryoshkaLoss(MNRL) at 384/256/128/64), sampler
rule (NO_DUPLICATES), learning rate, schedule and effective batch:

* (a) card: per-device 64 x gradient accumulation 8 (accumulation adds no in-batch negatives), with
  the library's own input pipeline (tokenizing collator, row-reading sampler) and torch's default
  attention kernels: the reference;
* (b) ours: the ``default`` profile: one real per-device batch of 512, the fast input pipeline
  (pre-tokenized, numpy padding, id sampler; ``training.input_pipeline=fast``) and
  ``training.attention_backend=auto`` (flash / memory-efficient SDPA on CUDA);
* (c) with ``--ablation``: 512 x 1 with the library's input pipeline and torch's default attention
  (batch size alone).

Prints, for each run, pairs/s two ways, and their ratios to (a):

* ``pairs/s train``: pairs through the loss / the whole ``trainer.train()`` call less per-epoch
  evaluation (set-up, checkpoint saves and loading the best checkpoint included: fixed costs that weigh
  more on a short run);
* ``pairs/s loop``: pairs through the loss / the training loop alone (steps and waits for data; no
  evaluation, no checkpoint save), the rate a long run settles at.

Then where the training time went (waiting for the next batch, step compute, checkpoint saves, the rest
of ``train()``), the one-time tokenization of the fast path, and MAP@100 per dim on the held-out eval
split after each run (and for the base model).

On CPU, scale down with flags, e.g.::

    python bench/train_throughput.py --n-train 1000 --card-batch 16 --card-accum 8 --our-batch 128

Data: ``pipelines.datasets.build_dataset`` (the real synthesizer) when importable, else a local
synthetic generator.

``--nproc N`` measures data-parallel scaling instead: ``recipe-embed train`` at one global batch
(``--global-batch``, default ``--our-batch``) for ``--max-steps`` steps, first as one process (the
reference), then as N torchrun ranks (``training.nproc_per_node=N``), both through the CLI so both pay the
same start-up. It prints the whole job's pairs/s, pairs/s per rank and the scaling efficiency
(N-rank pairs/s / (N x 1-rank pairs/s)). On a CPU it shows the path works (ranks share the cores);
on a machine with N GPUs it gives the figure, e.g.::

    python bench/train_throughput.py --nproc 4 --global-batch 2048 --max-steps 50
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_data(out: Path, n_train: int, n_eval: int, seed: int, hard_negatives: bool = True) -> tuple[Path, str]:
    """A dataset directory (train/validation/eval.parquet) and where it came from; ``hard_negatives=False``
    skips the mining (``synthesis.hard_negatives``) for a caller that reads no ``negative`` column."""
    try:
        from pipelines.config import load_config
        from pipelines.datasets import build_dataset
    except ImportError:
        build_dataset = None  # type: ignore[assignment]
    if build_dataset is not None:
        synthesis = {"n_train": n_train, "n_eval": n_eval, "seed": seed, "hard_negatives": hard_negatives}
        cfg = load_config("cpu", overrides={"synthesis": synthesis})
        build_dataset(cfg, out)
        return out, "pipelines.datasets.build_dataset"

    from eval_speed import write_synthetic_dataset

    write_synthetic_dataset(out, n_train, n_eval, max(1, n_train // 20), seed=seed)
    return out, "local synthetic generator"


def run(
    label: str,
    data: Path,
    work: Path,
    batch: int,
    accum: int,
    args: argparse.Namespace,
    *,
    input_pipeline: str = "fast",
    attention_backend: str = "auto",
) -> dict[str, Any]:
    import pandas as pd

    from pipelines.config import ModelConfig, TrainingConfig
    from pipelines.evaluation import evaluate_pairs
    from pipelines.metrics import metric_key
    from pipelines.training import train

    cfg = TrainingConfig(
        epochs=args.epochs,
        per_device_batch_size=batch,
        gradient_accumulation_steps=accum,
        eval_batch_size=args.eval_batch_size,
        learning_rate=args.lr,
        logging_steps=max(1, args.logging_steps),
        save_total_limit=1,
        seed=args.seed,
        input_pipeline=input_pipeline,  # type: ignore[arg-type]
        attention_backend=attention_backend,  # type: ignore[arg-type]
    )
    model_cfg = ModelConfig(base_model=args.model, max_seq_length=args.max_seq_length)
    print(
        f"\n== ({label}) per-device {batch} x accumulation {accum}, input {input_pipeline}, "
        f"attention {attention_backend} ==",
        flush=True,
    )
    t0 = time.perf_counter()
    result = train(data, work / label, model_cfg, cfg, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    eval_pairs = pd.read_parquet(data / "eval.parquet")
    metrics = evaluate_pairs(result.model_dir, eval_pairs, args.dims, args.eval_batch_size)
    settings = result.settings
    train_seconds = result.seconds - result.eval_seconds
    data_wait = float(settings.get("data_wait_seconds", float("nan")))
    loop = float(settings.get("loop_seconds") or float("nan"))
    checkpoints = float(settings.get("checkpoint_seconds", 0.0))
    return {
        "data_wait": data_wait,
        "compute": loop - data_wait,
        "checkpoints": checkpoints,
        "rest": train_seconds - loop - checkpoints,
        "loop_pairs_per_second": float(settings.get("loop_pairs_per_second") or float("nan")),
        "prep": float(settings.get("input_prep_seconds", 0.0)),
        "input": settings.get("input_pipeline", input_pipeline),
        "attention": f"{attention_backend} ({settings.get('attention_kernels', '?')}, "
        f"{settings.get('attn_implementation', '?')})",
        "label": label,
        "batch": f"{batch} x {accum}",
        "pairs_per_second": result.pairs_per_second,
        "train_seconds": train_seconds,
        "wall": wall,
        "steps": result.global_step,
        "final_loss": result.loss_history[-1]["loss"] if result.loss_history else float("nan"),
        "device": result.device,
        "map": {d: metrics[metric_key(d)] for d in args.dims},
    }


def run_cli(label: str, data: Path, work: Path, nproc: int, args: argparse.Namespace) -> dict[str, Any]:
    """``recipe-embed train`` with ``nproc`` ranks at the global batch; its train_result.json."""
    import json
    import subprocess

    out = work / label
    sets = {
        "training.nproc_per_node": nproc,
        "training.global_batch_size": args.global_batch,
        "training.max_steps": args.max_steps,
        "training.eval_strategy": '"no"',
        "training.logging_steps": max(1, args.max_steps // 5),
        "training.learning_rate": args.lr,
        "training.save_total_limit": 1,
        "model.base_model": args.model,
        "model.max_seq_length": args.max_seq_length,
    }
    from pipelines import childproc
    from pipelines.config import load_config

    cfg = load_config(None, sets=tuple(f"{k}={v}" for k, v in sets.items()))
    print(f"\n== ({label}) {nproc} rank(s), global batch {args.global_batch}, {args.max_steps} steps ==", flush=True)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with childproc.config_file(cfg) as config_file:
        subprocess.run(childproc.train_command(data, out, config_file), check=True, env=env, cwd=root)
    result: dict[str, Any] = json.loads((out / "train_result.json").read_text())
    return result


def scaling(args: argparse.Namespace) -> int:
    import torch

    if args.global_batch is None:
        args.global_batch = args.our_batch
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        n_train = max(args.n_train, args.global_batch * (args.max_steps + 1))
        data, source = build_data(work / "data", n_train, args.n_eval, args.seed)
        one = run_cli("one-rank", data, work, 1, args)
        many = run_cli(f"{args.nproc}-ranks", data, work, args.nproc, args)
    gpu = torch.cuda.is_available()
    device = (
        f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if gpu else f"cpu ({os.cpu_count()} cores)"
    )
    print(f"\ndevice: {device}; model: {args.model}; max_seq_length {args.max_seq_length}; data: {source}")
    print(
        f"global batch {args.global_batch}; {args.max_steps} steps; reference: the 1-rank run at the same global batch"
    )
    print()
    print("| run        | ranks | per-rank batch | pairs | train s | pairs/s (job) | pairs/s per rank |")
    print("|------------|-------|----------------|-------|---------|---------------|------------------|")
    for label, r in (("1 rank", one), (f"{args.nproc} ranks", many)):
        n = int(r.get("world_size", 1))
        pps = float(r["pairs_per_second"])
        train_s = float(r["seconds"]) - float(r["eval_seconds"])
        print(
            f"| {label:<10} | {n:>5} | {r['settings']['per_device_batch_size']:>14} | {r['settings']['pairs_seen']:>5} "
            f"| {train_s:>7.1f} | {pps:>13.1f} | {pps / n:>16.1f} |"
        )
    speedup = float(many["pairs_per_second"]) / float(one["pairs_per_second"])
    print()
    print(f"speed-up {args.nproc} ranks / 1 rank: {speedup:.2f}x; scaling efficiency: {speedup / args.nproc:.0%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import torch

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=20_000 if gpu else 500)
    ap.add_argument("--n-eval", type=int, default=2_000 if gpu else 200)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--max-seq-length", type=int, default=128 if gpu else 48)
    ap.add_argument("--card-batch", type=int, default=64 if gpu else 16, help="(a) per-device batch")
    ap.add_argument("--card-accum", type=int, default=8, help="(a) gradient accumulation steps")
    ap.add_argument("--our-batch", type=int, default=512 if gpu else 128, help="(b) per-device batch")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--eval-batch-size", type=int, default=512 if gpu else 128)
    ap.add_argument("--logging-steps", type=int, default=10)
    ap.add_argument("--dims", default="384,256,128,64")
    ap.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work-dir", type=Path, default=None, help="keep data and models here (default: temp)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--nproc", type=int, default=0, help="measure N-rank scaling against 1 rank (see above)")
    ap.add_argument("--global-batch", type=int, default=None, help="--nproc: pairs per step over all ranks")
    ap.add_argument("--max-steps", type=int, default=50 if gpu else 6, help="--nproc: steps per run")
    ap.add_argument("--ablation", action="store_true", help="also run (c): 512 x 1 on the library's input pipeline")
    args = ap.parse_args(argv)
    args.dims = tuple(int(d) for d in args.dims.split(","))
    if args.nproc:
        if args.nproc < 2:
            ap.error("--nproc needs at least 2 (it is compared with 1 rank)")
        return scaling(args)

    from pipelines.evaluation import evaluate_pairs
    from pipelines.metrics import metric_key

    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        data, source = build_data(work / "data", args.n_train, args.n_eval, args.seed)
        import pandas as pd

        eval_pairs = pd.read_parquet(data / "eval.parquet")
        n_train = len(pd.read_parquet(data / "train.parquet"))
        base = evaluate_pairs(args.model, eval_pairs, args.dims, args.eval_batch_size)
        card = run(
            "a-card",
            data,
            work,
            args.card_batch,
            args.card_accum,
            args,
            input_pipeline="library",
            attention_backend="default",
        )
        ours = run("b-ours", data, work, args.our_batch, 1, args)
        runs = [card, ours]
        if args.ablation:
            runs.append(
                run(
                    "c-512-library",
                    data,
                    work,
                    args.our_batch,
                    1,
                    args,
                    input_pipeline="library",
                    attention_backend="default",
                )
            )

    device = torch.cuda.get_device_name(0) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"\ndevice: {device}; model: {args.model}; max_seq_length {args.max_seq_length}; data: {source}")
    print(f"train pairs: {n_train}; eval pairs: {len(eval_pairs)}; epochs: {args.epochs}; lr {args.lr}")
    print()
    dim_cols = "".join(f" map@100 {d:>3} |" for d in args.dims)
    print(f"| run                 | batch    | steps | pairs/s train | pairs/s loop | train s |{dim_cols}")
    print(f"|{'-' * 21}|{'-' * 10}|{'-' * 7}|{'-' * 15}|{'-' * 14}|{'-' * 9}|" + "-------------|" * len(args.dims))
    base_maps = "".join(f" {base[metric_key(d)]:>11.4f} |" for d in args.dims)
    print(f"| {'base model':<19} | {'-':<8} | {'-':>5} | {'-':>13} | {'-':>12} | {'-':>7} |{base_maps}")
    for r in runs:
        maps = "".join(f" {r['map'][d]:>11.4f} |" for d in args.dims)
        print(
            f"| {r['label']:<19} | {r['batch']:<8} | {r['steps']:>5} | {r['pairs_per_second']:>13.1f} "
            f"| {r['loop_pairs_per_second']:>12.1f} | {r['train_seconds']:>7.1f} |{maps}"
        )
    print()
    print(
        "where the training time went (seconds; evaluation excluded; waiting = fetching the next batch; "
        "rest = set-up, final save, loading the best checkpoint):"
    )
    print(
        "| run                 | input    | attention                            | waiting | compute | checkpoints "
        "|  rest | waiting % | tokenize once |"
    )
    print(f"|{'-' * 21}|{'-' * 10}|{'-' * 38}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 7}|{'-' * 11}|{'-' * 15}|")
    for r in runs:
        share = 100 * r["data_wait"] / max(r["train_seconds"], 1e-9)
        print(
            f"| {r['label']:<19} | {r['input'][:8]:<8} | {r['attention'][:36]:<36} | {r['data_wait']:>7.1f} "
            f"| {r['compute']:>7.1f} | {r['checkpoints']:>11.1f} | {r['rest']:>5.1f} | {share:>8.1f}% "
            f"| {r['prep']:>11.1f} s |"
        )
    print()
    for r in runs[1:]:
        print(
            f"throughput {r['label']} / card: {r['pairs_per_second'] / card['pairs_per_second']:.2f}x (train), "
            f"{r['loop_pairs_per_second'] / card['loop_pairs_per_second']:.2f}x (loop)"
        )
    for d in args.dims:
        print(f"map@100 dim {d}: ours - card = {ours['map'][d] - card['map'][d]:+.4f}")
    if args.ablation:  # same batch, same rows: only the input pipeline and attention kernels differ
        lib512 = runs[2]
        worst = max(abs(ours["map"][d] - lib512["map"][d]) for d in args.dims)
        print(
            f"map@100, ours vs c-512-library (same batches): largest difference over dims {worst:.4f} (goal <= 0.002)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
