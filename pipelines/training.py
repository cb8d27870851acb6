"""Fine-tuning: MatryoshkaLoss(MultipleNegativesRankingLoss) with the NO_DUPLICATES batch sampler.

``train(data_dir, out_dir, model_cfg, train_cfg)`` reads ``train.parquet`` and ``validation.parquet``
(never ``eval.parquet``: that split decides promotion later), evaluates the validation slice each
epoch with the fast per-dimension IR evaluator, keeps the best checkpoint by
``dim_<max>_cosine_map@100`` and writes it to ``out_dir/model``. Checkpoints go to
``out_dir/checkpoints`` (``resume=True`` continues from the last complete one). A NaN or infinite
training loss stops training at once with :class:`TrainingError` and nothing is written to
``out_dir/model``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import distributed
from pipelines.config import ModelConfig, TrainingConfig
from pipelines.errors import InputError, RecipeEmbedError, TrainingError, note_interrupt, write_failure
from pipelines.io import read_json_object
from pipelines.metrics import dim_prefix, primary_metric_key

if TYPE_CHECKING:
    import pandas as pd
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

MODEL_SUBDIR = "model"
CHECKPOINTS_SUBDIR = "checkpoints"
RESULT_FILE = "train_result.json"
_CHECKPOINT_PREFIX = "checkpoint-"


@dataclass(frozen=True)
class TrainResult:
    """What one ``train`` call produced (also written to ``out_dir/train_result.json``).

    ``seconds`` is the wall time of ``trainer.train()`` in this process (set-up, evaluations,
    checkpoint saves and loading the best checkpoint included); ``pairs_per_second`` counts the pairs
    the whole job (all ``world_size`` ranks) trained on over that time minus the time spent in
    per-epoch evaluation. ``settings["loop_pairs_per_second"]`` divides by the training loop alone
    (``settings["loop_seconds"]``: steps and waits for data, without evaluations and checkpoint saves).
    """

    model_dir: Path
    loss_history: list[dict[str, float]]
    best_checkpoint: str | None
    validation_metrics: dict[str, float]
    train_pairs: int
    seconds: float
    pairs_per_second: float
    device: str
    global_step: int = 0
    resumed_from: str | None = None
    eval_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        return d


def load_train_result(out_dir: Path) -> dict[str, Any]:
    """Read ``out_dir/train_result.json`` (InputError if it is missing or unreadable)."""
    return read_json_object(Path(out_dir) / RESULT_FILE, hint=f"has `recipe-embed train` finished in {out_dir}?")


# --- data ---------------------------------------------------------------------------------------


def load_split(data_dir: Path, split: str) -> pd.DataFrame:
    """``anchor``, ``positive`` and, when the split has one, ``negative`` of ``data_dir/<split>.parquet``.

    Other columns are dropped. With ``negative`` the loss sees (anchor, positive, negative) triplets.
    """
    from pipelines.io import read_table

    path = Path(data_dir) / f"{split}.parquet"
    if not Path(data_dir).is_dir():
        raise InputError(f"{data_dir}: no such dataset directory")
    df = read_table(path, required=["anchor", "positive"])
    if len(df) == 0:
        raise InputError(f"{path}: no rows")
    cols = ["anchor", "positive", *(["negative"] if "negative" in df.columns else [])]
    return df[cols].astype(str).reset_index(drop=True)


# --- checkpoints --------------------------------------------------------------------------------


def _checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.removeprefix(_CHECKPOINT_PREFIX))
    except ValueError:
        return -1


def is_complete_checkpoint(path: Path) -> bool:
    """The trainer writes ``trainer_state.json`` last, after the model, optimizer and RNG state."""
    return (
        path.is_dir()
        and (path / "trainer_state.json").is_file()
        and (path / "modules.json").is_file()
        and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))
        and ((path / "optimizer.pt").is_file() or (path / "optimizer.bin").is_file())
    )


def last_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The highest-step complete ``checkpoint-N`` under ``checkpoints_dir``, if any."""
    if not checkpoints_dir.is_dir():
        return None
    found = [
        p
        for p in checkpoints_dir.iterdir()
        if p.name.startswith(_CHECKPOINT_PREFIX) and _checkpoint_step(p) >= 0 and is_complete_checkpoint(p)
    ]
    return max(found, key=_checkpoint_step) if found else None


def resume_hint(data_dir: Path, out_dir: Path) -> str:
    """What an interrupted training can do next: resume from its last complete checkpoint, if any."""
    last = last_complete_checkpoint(Path(out_dir) / CHECKPOINTS_SUBDIR)
    if last is None:
        return f"no checkpoint saved yet in {Path(out_dir) / CHECKPOINTS_SUBDIR}; start over with --overwrite"
    return (
        f"resume with recipe-embed train --data {data_dir} --out {out_dir} --resume "
        f"(from {last.name}, with the same --profile/--config/--set)"
    )


# --- settings -----------------------------------------------------------------------------------


def resolve_optim(optim: str, device: str) -> str:
    """Fused AdamW where the device supports it, else plain ``adamw_torch``."""
    if optim != "adamw_torch_fused" or device == "cuda":
        return optim
    import torch

    try:
        p = torch.nn.Parameter(torch.zeros(2, device=device))
        p.grad = torch.zeros_like(p)
        torch.optim.AdamW([p], fused=True).step()
    except (RuntimeError, TypeError, NotImplementedError):
        return "adamw_torch"
    return optim


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 on a CUDA device that supports it, fp32 elsewhere."""
    if precision != "auto":
        if precision in ("bf16", "fp16") and device != "cuda":
            raise InputError(f"training.precision={precision} needs a CUDA device (device is {device})")
        return precision
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


# --- trainer pieces -----------------------------------------------------------------------------


def _validation_evaluator(pairs: pd.DataFrame, dims: Sequence[int], batch_size: int, similarity: str) -> Any:
    """Per-epoch validation with the fast per-dimension IR evaluator, as a library evaluator."""
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    from pipelines.evaluation import build_ir_data, evaluate_ir

    class ValidationIREvaluator(BaseEvaluator):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.queries, self.corpus, self.relevant = build_ir_data(pairs)
            self.primary_metric = primary_metric_key(dims, similarity)
            self.greater_is_better = True
            self.seconds = 0.0

        def __call__(
            self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
        ) -> dict[str, float]:
            t0 = time.perf_counter()
            metrics = evaluate_ir(model, self.queries, self.corpus, self.relevant, list(dims), batch_size)
            self.seconds += time.perf_counter() - t0
            return metrics

    return ValidationIREvaluator()


def _nan_guard_callback() -> TrainerCallback:
    from transformers import TrainerCallback

    class NanGuard(TrainerCallback):
        """Fail on a non-finite logged loss or gradient norm (the trainer's NaN filter is turned off)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if isinstance(value, int | float) and not math.isfinite(value):
                    raise TrainingError(
                        f"training diverged: {key} is {value} at step {state.global_step}; "
                        "lower training.learning_rate or check the data"
                    )

    return NanGuard()


def _line_progress_callback(primary_metric: str, pairs_per_step: int) -> TrainerCallback:
    """One line per logging step (step, loss, pairs/s, ETA) and one per evaluation, on stdout.

    Replaces the trainer's tqdm bar, whose redraws a log collector (a pipe, the Prefect log) would
    record as a stream of near-identical lines.
    """
    from transformers import TrainerCallback

    class LineProgress(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = self.last_t = time.perf_counter()
            self.start_step = self.last_step = 0
            self.eval_s = self.eval_s_since_log = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = self.last_t = time.perf_counter()
            self.start_step = self.last_step = int(state.global_step)
            self.eval_s = self.eval_s_since_log = 0.0

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            now = time.perf_counter()
            key = f"eval_{primary_metric}"
            if "loss" in logs:
                step, total = int(state.global_step), int(state.max_steps)
                interval = max(now - self.last_t - self.eval_s_since_log, 1e-9)
                pairs_s = (step - self.last_step) * pairs_per_step / interval
                done = step - self.start_step
                per_step = (now - self.t0 - self.eval_s) / done if done > 0 else 0.0
                eta = _hms(per_step * max(total - step, 0))
                print(
                    f"step {step}/{total} | epoch {float(state.epoch or 0):.2f} | loss {float(logs['loss']):.4f} "
                    f"| {pairs_s:,.0f} pairs/s | ETA {eta}",
                    flush=True,
                )
                self.last_t, self.last_step, self.eval_s_since_log = now, step, 0.0
            elif key in logs:
                seconds = float(logs.get("eval_runtime", 0.0) or 0.0)
                self.eval_s += seconds
                self.eval_s_since_log += seconds
                print(
                    f"evaluation at step {int(state.global_step)} (epoch {float(state.epoch or 0):.2f}): "
                    f"validation {primary_metric} {float(logs[key]):.4f} ({seconds:.1f} s)",
                    flush=True,
                )

    return LineProgress()


def _loop_clock_callback(trainer: Any, device: str) -> TrainerCallback:
    """Keeps ``trainer.loop_seconds`` current at every step end: the wall time from the first batch
    fetch to this step's end, less the evaluations and checkpoint saves in between; so it counts the
    steps and the waits for data only, which is what pairs/s of the training loop divides by.

    On CUDA the clock waits for the GPU (``synchronize``) where the trainer is about to wait anyway (a
    logging, evaluation or save step) and at the last step, so queued GPU work is never left out.
    """
    import torch
    from transformers import TrainerCallback

    cuda = device.startswith("cuda")

    class LoopClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            last = state.max_steps > 0 and state.global_step >= state.max_steps
            if cuda and (last or control.should_log or control.should_evaluate or control.should_save):
                torch.cuda.synchronize()
            if trainer.loop_started is not None:
                outside = trainer.evaluate_seconds + trainer.checkpoint_seconds
                trainer.loop_seconds = time.perf_counter() - trainer.loop_started - outside

    return LoopClock()


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@contextlib.contextmanager
def _quiet_progress_bars(quiet: bool) -> Iterator[None]:
    """Turn off the libraries' tqdm bars (model loading, tokenizing) while ``quiet``; restore after."""
    if not quiet:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    ds_on = not datasets.are_progress_bars_disabled()
    hf_on = hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hf_on:
            hf_logging.enable_progress_bar()
        if ds_on:
            datasets.enable_progress_bars()


def _make_trainer_class() -> type:
    import torch
    from sentence_transformers import SentenceTransformerTrainer

    class GuardedTrainer(SentenceTransformerTrainer):  # type: ignore[misc]
        """Checks every training step's loss at once, counts the pairs it trained on, and clocks the
        training loop (see :func:`_loop_clock_callback`): the time spent waiting for batches, in
        evaluations and in checkpoint saves; with ``fast_input`` set, trains from the fast input
        pipeline (:mod:`pipelines.fastdata`) instead of the library's collator and sampler."""

        pairs_seen = 0
        data_wait_seconds = 0.0
        evaluate_seconds = 0.0
        checkpoint_seconds = 0.0
        loop_started: float | None = None
        loop_seconds = 0.0
        fast_input: Any = None
        no_duplicates = True

        def get_train_dataloader(self):  # type: ignore[no-untyped-def]
            if self.fast_input is None:
                return super().get_train_dataloader()
            args = self.args
            loader = self.fast_input.dataloader(
                args.train_batch_size,
                drop_last=args.dataloader_drop_last,
                seed=args.seed,
                no_duplicates=self.no_duplicates,
                num_workers=args.dataloader_num_workers,
                pin_memory=args.dataloader_pin_memory,
                persistent_workers=args.dataloader_persistent_workers,
                prefetch_factor=args.dataloader_prefetch_factor,
            )
            self.accelerator.even_batches = False  # as the library's trainer does for training
            self._train_dataloader = self.accelerator.prepare(loader)
            return self._train_dataloader

        @contextlib.contextmanager
        def _clock(self, attr: str) -> Iterator[None]:
            """Adds the time spent in the block to the float attribute ``attr``."""
            t0 = time.perf_counter()
            try:
                yield
            finally:
                setattr(self, attr, getattr(self, attr) + time.perf_counter() - t0)

        def get_batch_samples(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.loop_started is None:
                self.loop_started = time.perf_counter()
            with self._clock("data_wait_seconds"):
                return super().get_batch_samples(*args, **kwargs)

        def evaluate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            with self._clock("evaluate_seconds"):
                return super().evaluate(*args, **kwargs)

        def _save_checkpoint(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            """The library's save; a failed write (a full disk) removes the half-written checkpoint,
            so ``--resume`` never finds it, and is one :class:`StorageError` line naming it."""
            with self._clock("checkpoint_seconds"):
                try:
                    return super()._save_checkpoint(*args, **kwargs)
                except RecipeEmbedError:
                    raise
                except Exception as exc:
                    where = Path(str(self.args.output_dir)) / f"{_CHECKPOINT_PREFIX}{self.state.global_step}"
                    if distributed.is_main_process():
                        shutil.rmtree(where, ignore_errors=True)
                    raise write_failure(exc, where) from exc

        def _save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            # A checkpoint needs the weights, not the library's generated README (about 0.3 s a save on
            # CPU by cProfile); the installed model (_install_model) still gets its model card.
            model = self.model
            model.save_pretrained = functools.partial(model.save_pretrained, create_model_card=False)  # type: ignore[method-assign]
            try:
                return super()._save(*args, **kwargs)
            finally:
                del model.save_pretrained  # back to the class's method

        def _load_best_model(self) -> None:
            """The library's, except that a checkpoint that cannot be read fails the training (the
            library only logs it and keeps the last weights), and the best checkpoint saved at the last
            step is not read back (it holds the weights in memory)."""
            best = self.state.best_model_checkpoint
            if not best:
                return
            step = _checkpoint_step(Path(best))
            with contextlib.suppress(Exception):  # as the library does: the card's note is optional
                self.model.model_card_data.set_best_model_step(step)
            if step != self.state.global_step:
                try:
                    self._load_from_checkpoint(best)
                except Exception as exc:
                    raise TrainingError(f"{best}: cannot load the best checkpoint: {exc}") from exc

        def compute_loss(  # type: ignore[no-untyped-def]
            self, model, inputs, return_outputs=False, num_items_in_batch=None
        ):
            if model.training:
                for key, value in inputs.items():
                    if key.endswith("input_ids") and hasattr(value, "shape"):
                        self.pairs_seen += int(value.shape[0])
                        break
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = out[0] if isinstance(out, tuple) else out
            if model.training and not distributed.all_ranks_true(torch.isfinite(loss.detach()).all()):
                raise TrainingError(
                    f"training diverged: loss is {loss.detach().float().item()} at step "
                    f"{self.state.global_step + 1}; lower training.learning_rate or check the data"
                )
            return out

    return GuardedTrainer


def _build_loss(model: SentenceTransformer, cfg: TrainingConfig, world_size: int = 1) -> Any:
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    inner: Any
    # On several ranks every rank contrasts its anchors with the candidates of all ranks.
    gather = world_size > 1
    if cfg.loss == "cached_mnrl":
        inner = CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=cfg.cached_mini_batch_size, gather_across_devices=gather
        )
    else:
        inner = MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    return MatryoshkaLoss(model, inner, matryoshka_dims=list(cfg.matryoshka_dims))


def build_training_args(
    cfg: TrainingConfig, checkpoints_dir: Path, device: str, primary_metric: str, progress: bool, world_size: int = 1
) -> Any:
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    precision = resolve_precision(cfg.precision, device)
    evaluating = cfg.eval_strategy != "no"
    save_strategy = cfg.eval_strategy if evaluating else "epoch"
    kwargs: dict[str, Any] = {
        "output_dir": str(checkpoints_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": distributed.batch_split(
            cfg.global_batch_size, cfg.per_device_batch_size, world_size
        )[0],
        "per_device_eval_batch_size": cfg.eval_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup if cfg.warmup < 1 else int(cfg.warmup),
        "optim": resolve_optim(cfg.optim, device),
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "batch_sampler": BatchSamplers.NO_DUPLICATES
        if cfg.batch_sampler == "no_duplicates"
        else BatchSamplers.BATCH_SAMPLER,
        "eval_strategy": cfg.eval_strategy,
        "save_strategy": save_strategy,
        "save_total_limit": cfg.save_total_limit,
        "load_best_model_at_end": evaluating,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "logging_nan_inf_filter": False,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "dataloader_num_workers": cfg.dataloader_num_workers,
        "dataloader_pin_memory": device == "cuda",
        "report_to": "none",
        "disable_tqdm": True,  # progress is one line per log (_line_progress_callback), never a bar
        "use_cpu": device == "cpu",
    }
    accelerator_config: dict[str, Any] = {}
    if world_size > 1:
        # One global batch per step from the sampler, split evenly over the ranks: the same batches
        # as one process at that batch size. Equal slices (all-gather needs them): drop a short last batch.
        accelerator_config["split_batches"] = True
        kwargs["dataloader_drop_last"] = True
        kwargs["ddp_backend"] = distributed.backend_for(device)
    if evaluating:
        kwargs["metric_for_best_model"] = primary_metric
        kwargs["greater_is_better"] = True
    if cfg.eval_strategy == "steps":
        steps = cfg.eval_steps or 100
        kwargs["eval_steps"] = steps
        kwargs["save_steps"] = steps
    if device == "cuda":  # pinned batches, copied to the GPU without blocking the host
        accelerator_config["non_blocking"] = True
    if accelerator_config:
        kwargs["accelerator_config"] = accelerator_config
    if device == "cuda" and cfg.tf32:
        import torch

        kwargs["tf32"] = torch.cuda.get_device_capability()[0] >= 8  # TF32 needs Ampere or newer
    return SentenceTransformerTrainingArguments(**kwargs)


def _loss_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [
        {"step": int(e["step"]), "epoch": float(e.get("epoch", 0.0)), "loss": float(e["loss"])}
        for e in log_history
        if "loss" in e and "step" in e
    ]


def _best_validation_metrics(
    log_history: list[dict[str, Any]], best_step: int | None, dims: Sequence[int]
) -> dict[str, float]:
    prefixes = tuple("eval_" + dim_prefix(d) for d in dims)
    evals = [e for e in log_history if any(k.startswith(prefixes) for k in e)]
    if not evals:
        return {}
    chosen = next((e for e in evals if best_step is not None and e.get("step") == best_step), evals[-1])
    return {k.removeprefix("eval_"): float(v) for k, v in chosen.items() if k.startswith(prefixes)}


def _install_model(model: SentenceTransformer, target: Path) -> Path:
    """Save to a temp dir beside ``target`` and swap it in, so a reader never sees half a model."""
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
    try:
        model.save(str(tmp))
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except Exception as exc:  # a full disk: one line naming the model dir; the old model stays
        if old.exists() and not target.exists():
            with contextlib.suppress(OSError):
                os.replace(old, target)
        raise write_failure(exc, target) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


# --- model and input --------------------------------------------------------------------------


def load_training_model(base: str, device: str, name: str | None = None) -> SentenceTransformer:
    """The base model with its attention run through torch SDPA (so ``training.attention_backend``
    applies); a model that cannot use SDPA loads with its default attention."""
    from sentence_transformers import SentenceTransformer

    from pipelines.attention import ATTN_IMPLEMENTATION

    try:
        try:
            return SentenceTransformer(base, device=device, model_kwargs={"attn_implementation": ATTN_IMPLEMENTATION})
        except ValueError as exc:
            if "attn_implementation" not in str(exc) and "sdpa" not in str(exc).lower():
                raise
            return SentenceTransformer(base, device=device)
    except (OSError, ValueError) as exc:
        raise InputError(f"{name or base}: cannot load base model: {str(exc).splitlines()[0]}") from exc


def _prepare_fast_input(
    model: SentenceTransformer, train_df: pd.DataFrame, data_dir: Path, cfg: TrainingConfig, progress: bool
) -> tuple[Any, str]:
    """The pre-tokenized train input (:mod:`pipelines.fastdata`), or ``None`` and why the library's
    collator and sampler are used instead."""
    if cfg.input_pipeline != "fast":
        return None, "library"
    from pipelines.fastdata import FastPathUnsupported, prepare_train_input

    try:
        return prepare_train_input(model, train_df, data_dir=data_dir, split="train"), "fast"
    except FastPathUnsupported as exc:
        if progress:
            print(f"input pipeline: the library's collator and sampler ({exc})", flush=True)
        return None, f"library (fast path unsupported: {exc})"


# --- entry point --------------------------------------------------------------------------------


def train(
    data_dir: Path,
    out_dir: Path,
    model_cfg: ModelConfig,
    train_cfg: TrainingConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune ``model_cfg.base_model`` on ``data_dir/train.parquet``; the best checkpoint by
    validation ``map@100`` at the largest Matryoshka dim goes to ``out_dir/model``.

    ``resume=True`` continues from the last complete checkpoint in ``out_dir/checkpoints``
    (:class:`InputError` if there is none); otherwise stale checkpoints there are removed first.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (tests, progress reporting).
    """
    import datasets

    from pipelines.attention import attention_context, describe_attention_backend, model_attn_implementation
    from pipelines.io import write_json
    from pipelines.models import pick_device, resolve_base_model

    data_dir = Path(data_dir)
    out_dir = Path(out_dir).resolve()
    checkpoints_dir = out_dir / CHECKPOINTS_SUBDIR
    train_df = load_split(data_dir, "train")
    validation_df = load_split(data_dir, "validation") if train_cfg.eval_strategy != "no" else None
    world = distributed.world_size()
    global_batch, _ = distributed.batch_split(train_cfg.global_batch_size, train_cfg.per_device_batch_size, world)
    if world > 1 and len(train_df) < global_batch:
        raise InputError(f"{len(train_df)} train pairs are fewer than one global batch of {global_batch}")

    resume_from: Path | None = None
    if resume:
        distributed.check_resume(checkpoints_dir, world)
        resume_from = last_complete_checkpoint(checkpoints_dir)
        if resume_from is None:
            raise InputError(f"{checkpoints_dir}: no complete checkpoint to resume from")
    elif distributed.is_main_process():
        if checkpoints_dir.exists():
            shutil.rmtree(checkpoints_dir)
        if world > 1:
            distributed.record_world_size(checkpoints_dir, world)

    device = pick_device(train_cfg.device)
    distributed.setup_rank(device)
    attention = describe_attention_backend(train_cfg.attention_backend, device)  # InputError before loading
    quiet = not progress or not sys.stderr.isatty()  # no tqdm bars into a pipe or a log
    base = resolve_base_model(model_cfg.base_model)
    with _quiet_progress_bars(quiet):
        model = load_training_model(base, device, model_cfg.base_model)
    model.max_seq_length = model_cfg.max_seq_length
    full_dim = model.get_embedding_dimension()
    if full_dim is not None and max(train_cfg.matryoshka_dims) > full_dim:
        raise InputError(
            f"training.matryoshka_dims {list(train_cfg.matryoshka_dims)} exceed the model's dimension {full_dim}"
        )
    primary = primary_metric_key(train_cfg.matryoshka_dims, model.similarity_fn_name)

    evaluator = None
    if validation_df is not None:
        evaluator = _validation_evaluator(
            validation_df, train_cfg.matryoshka_dims, train_cfg.eval_batch_size, model.similarity_fn_name
        )
    args = build_training_args(train_cfg, checkpoints_dir, device, primary, progress, world)
    t_prep = time.perf_counter()
    with _quiet_progress_bars(quiet):
        fast_input, input_pipeline = _prepare_fast_input(model, train_df, data_dir, train_cfg, progress)
    prep_seconds = time.perf_counter() - t_prep
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_pandas(train_df, preserve_index=False),
        loss=_build_loss(model, train_cfg, world),
        evaluator=evaluator,
        callbacks=[_nan_guard_callback(), *callbacks],
    )
    trainer.fast_input = fast_input
    trainer.no_duplicates = train_cfg.batch_sampler == "no_duplicates"
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.add_callback(_loop_clock_callback(trainer, device))
    trainer.remove_callback(ProgressCallback)  # bars redraw into logs as duplicated lines
    trainer.remove_callback(PrinterCallback)  # raw dicts: the line callback below says it shorter
    if progress:
        # the whole job's pairs per optimizer step: the global batch (split over the ranks) x accumulation
        trainer.add_callback(_line_progress_callback(primary, global_batch * train_cfg.gradient_accumulation_steps))

    t0 = time.perf_counter()
    try:
        with _quiet_progress_bars(quiet), attention_context(train_cfg.attention_backend, device):
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt as exc:
        note_interrupt(exc, resume_hint(data_dir, out_dir))
        raise
    except TrainingError:
        raise
    except (RuntimeError, ValueError) as exc:
        if "out of memory" in str(exc).lower():
            raise TrainingError(
                f"out of memory at per-device batch {train_cfg.per_device_batch_size}: lower "
                "training.per_device_batch_size or use training.loss=cached_mnrl"
            ) from exc
        if "no available kernel" in str(exc).lower():
            raise TrainingError(
                f"training.attention_backend={train_cfg.attention_backend}: torch has no such attention kernel "
                "for these inputs (flash takes no padding mask); use auto or efficient"
            ) from exc
        raise
    seconds = time.perf_counter() - t0
    eval_seconds = float(getattr(evaluator, "seconds", 0.0))

    state = trainer.state
    best_step = state.best_global_step if state.best_model_checkpoint else None
    validation_metrics = _best_validation_metrics(state.log_history, best_step, train_cfg.matryoshka_dims)

    pairs_seen = int(distributed.sum_across_ranks(trainer.pairs_seen, device))  # the whole job's pairs
    distributed.barrier()  # every rank finished training before rank 0 installs the model
    model_dir = out_dir / MODEL_SUBDIR
    if distributed.is_main_process():
        with _quiet_progress_bars(quiet):
            _install_model(trainer.model, model_dir)
    result = TrainResult(
        model_dir=model_dir,
        loss_history=_loss_history(state.log_history),
        best_checkpoint=state.best_model_checkpoint,
        validation_metrics=validation_metrics,
        train_pairs=len(train_df),
        seconds=round(seconds, 3),
        pairs_per_second=round(pairs_seen / max(seconds - eval_seconds, 1e-9), 2),
        device=device,
        global_step=int(state.global_step),
        resumed_from=str(resume_from) if resume_from else None,
        eval_seconds=round(eval_seconds, 3),
        settings={
            "base_model": model_cfg.base_model,
            "max_seq_length": model_cfg.max_seq_length,
            "optim": args.optim if isinstance(args.optim, str) else str(args.optim.value),
            "precision": resolve_precision(train_cfg.precision, device),
            "per_device_batch_size": global_batch // world,
            "global_batch_size": global_batch,
            "world_size": world,
            "gradient_accumulation_steps": train_cfg.gradient_accumulation_steps,
            "loss": train_cfg.loss,
            "matryoshka_dims": list(train_cfg.matryoshka_dims),
            "pairs_seen": pairs_seen,
            "primary_metric": primary,
            "attention_backend": train_cfg.attention_backend,
            "attention_kernels": attention,
            "attn_implementation": model_attn_implementation(trainer.model),
            "input_pipeline": input_pipeline,
            "input_prep_seconds": round(prep_seconds, 3),
            "data_wait_seconds": round(float(trainer.data_wait_seconds), 3),
            "loop_seconds": round(float(trainer.loop_seconds), 3),
            "loop_pairs_per_second": round(pairs_seen / trainer.loop_seconds, 2) if trainer.loop_seconds > 0 else None,
            "checkpoint_seconds": round(float(trainer.checkpoint_seconds), 3),
        },
        world_size=world,
    )
    if distributed.is_main_process():
        write_json(result.to_dict(), out_dir / RESULT_FILE)
    return result
