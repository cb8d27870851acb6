"""The trainer :func:`pipelines.training.train` runs, its arguments and its validation evaluator.

:func:`build_training_args` turns ``training.*`` into the library's training arguments (fused AdamW
and the precision resolved for the device). :class:`GuardedTrainer` is the library's
``SentenceTransformerTrainer`` plus five small things, each in its own place in the class:

* Fast input: with ``fast_input`` set, the train ``DataLoader`` comes from :mod:`pipelines.fastdata`
  instead of the library's collator and sampler (``get_train_dataloader``).
* Clocks: the waits for batches, the evaluations and the checkpoint saves are timed into
  :class:`pipelines.clocks.StepClocks`; :class:`pipelines.clocks.LoopClock` derives the loop's time.
* NaN guard: every training step's loss is checked at once, on all ranks (``compute_loss``, which also
  counts the pairs trained on); :class:`NanGuard` checks the logged loss and gradient norm.
* Length groups: with ``length_buckets`` above 1, ``compute_loss`` encodes each column of a step in groups
  of similar length (:mod:`pipelines.buckets`).
* Checkpoints: overrides of three private methods of the library, isolated at the end of the class,
  each saying why it exists.

:class:`ValidationIREvaluator` is the per-epoch validation: the fast per-dimension IR evaluator
(:func:`pipelines.evaluation.evaluate_ir`) as a library evaluator.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from sentence_transformers.base.sampler import BatchSamplers
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from pipelines import distributed, evaluation
from pipelines.buckets import length_buckets
from pipelines.checkpoints import CHECKPOINT_PREFIX, checkpoint_step
from pipelines.clocks import LoopClock, StepClocks
from pipelines.errors import InputError, RecipeEmbedError, TrainingError, write_failure
from pipelines.metrics import selection_key

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.config import TrainingConfig
    from pipelines.fastdata import FastTrainInput


class ValidationIREvaluator(BaseEvaluator):  # type: ignore[misc]
    """Per-epoch validation on ``pairs`` at every dim of ``dims``; ``seconds`` adds up its time."""

    def __init__(self, pairs: pd.DataFrame, dims: Sequence[int], batch_size: int, similarity: str) -> None:
        super().__init__()
        self.queries, self.corpus, self.relevant = evaluation.build_ir_data(pairs)
        self.slices = evaluation.validation_slices(pairs)
        self.dims = list(dims)
        self.batch_size = batch_size
        self.primary_metric = selection_key(dims, similarity, sliced=len(self.slices) > 1)
        self.greater_is_better = True
        self.seconds = 0.0

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = self.score(model)
        self.seconds += time.perf_counter() - t0
        return metrics

    def score(self, model: Any) -> dict[str, float]:
        """The validation metrics of ``model`` (per slice and :data:`~pipelines.metrics.SELECTION` too when
        the split has slices), without counting the time."""
        ir = (self.queries, self.corpus, self.relevant)
        return evaluation.score_validation(model, ir, self.dims, self.batch_size, self.slices)


class NanGuard(TrainerCallback):  # type: ignore[misc]
    """Fail on a non-finite logged loss or gradient norm (the trainer's NaN filter is turned off)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise TrainingError(
                    f"training diverged: {key} is {value} at step {state.global_step}; "
                    "lower training.learning_rate or check the data"
                )


# --- arguments ----------------------------------------------------------------------------------


def resolve_optim(optim: str, device: str) -> str:
    """Fused AdamW where the device supports it, else plain ``adamw_torch``."""
    if optim != "adamw_torch_fused" or device == "cuda":
        return optim
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
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def build_training_args(
    cfg: TrainingConfig, checkpoints_dir: Path, device: str, primary_metric: str, progress: bool, world_size: int = 1
) -> SentenceTransformerTrainingArguments:
    """The library's training arguments for ``cfg`` on ``device`` over ``world_size`` ranks."""
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
        "disable_tqdm": True,  # progress is one line per log (clocks.LineProgress), never a bar
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
        kwargs["tf32"] = torch.cuda.get_device_capability()[0] >= 8  # TF32 needs Ampere or newer
    return SentenceTransformerTrainingArguments(**kwargs)


# --- the trainer --------------------------------------------------------------------------------


class GuardedTrainer(SentenceTransformerTrainer):  # type: ignore[misc]
    """The library's trainer with the fast input, the clocks, the NaN guard and safer checkpoints.

    ``callbacks`` come after :class:`NanGuard`; :class:`pipelines.clocks.LoopClock` follows them. The
    library's tqdm bar and raw-dict printer are removed (bars redraw into logs as duplicated lines;
    :class:`pipelines.clocks.LineProgress` says it shorter). ``clocks`` and ``pairs_seen`` hold what
    the run measured.
    """

    def __init__(
        self,
        *,
        fast_input: FastTrainInput | None = None,
        length_buckets: int = 1,
        device: str = "cpu",
        callbacks: Sequence[TrainerCallback] = (),
        **kwargs: Any,
    ) -> None:
        self.clocks = StepClocks()
        self.pairs_seen = 0
        self.fast_input = fast_input
        self.length_buckets = length_buckets
        super().__init__(callbacks=[NanGuard(), *callbacks], **kwargs)
        self.add_callback(LoopClock(self.clocks, device))
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)

    # --- fast input ---------------------------------------------------------------------------

    def get_train_dataloader(self):  # type: ignore[no-untyped-def]
        if self.fast_input is None:
            return super().get_train_dataloader()
        args = self.args
        loader = self.fast_input.dataloader(
            args.train_batch_size,
            drop_last=args.dataloader_drop_last,
            seed=args.seed,
            no_duplicates=args.batch_sampler == BatchSamplers.NO_DUPLICATES,  # training.batch_sampler
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        self.accelerator.even_batches = False  # as the library's trainer does for training
        self._train_dataloader = self.accelerator.prepare(loader)
        return self._train_dataloader

    # --- clocks -------------------------------------------------------------------------------

    def get_batch_samples(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.clocks.start_loop()
        with self.clocks.timing("data_wait_seconds"):
            return super().get_batch_samples(*args, **kwargs)

    def evaluate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.clocks.timing("evaluate_seconds"):
            return super().evaluate(*args, **kwargs)

    # --- NaN guard and pair count -------------------------------------------------------------

    def compute_loss(  # type: ignore[no-untyped-def]
        self, model, inputs, return_outputs=False, num_items_in_batch=None
    ):
        """The library's loss; a non-finite training loss on any rank stops at this step (a callback
        only sees the loss at logging steps). Counts the pairs that went through the loss."""
        if model.training:
            for key, value in inputs.items():
                if key.endswith("input_ids") and hasattr(value, "shape"):
                    self.pairs_seen += int(value.shape[0])
                    break
        # length groups under the loss's own model (the one MatryoshkaLoss caches the forward pass of)
        buckets = self.length_buckets if model.training else 1
        with length_buckets(getattr(self.loss, "model", None), buckets):
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = out[0] if isinstance(out, tuple) else out
        if model.training and not distributed.all_ranks_true(torch.isfinite(loss.detach()).all()):
            raise TrainingError(
                f"training diverged: loss is {loss.detach().float().item()} at step "
                f"{self.state.global_step + 1}; lower training.learning_rate or check the data"
            )
        return out

    # --- checkpoints: overrides of the library's private methods ------------------------------
    # The library has no hook (callback or public method) around writing or reading a checkpoint, so
    # these wrap its private methods; each calls the library's own and changes only what it says.

    def _save_checkpoint(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """The library's save, timed; a failed write (a full disk) removes the half-written
        checkpoint, so ``--resume`` never finds it, and is one :class:`StorageError` line naming it."""
        with self.clocks.timing("checkpoint_seconds"):
            try:
                return super()._save_checkpoint(*args, **kwargs)
            except RecipeEmbedError:
                raise
            except Exception as exc:
                where = Path(str(self.args.output_dir)) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
                if distributed.is_main_process():
                    shutil.rmtree(where, ignore_errors=True)
                raise write_failure(exc, where) from exc

    def _save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # A checkpoint needs the weights, not the library's generated README (about 0.3 s a save on
        # CPU by cProfile); the installed model (training._install_model) still gets its model card.
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
        step = checkpoint_step(Path(best))
        with contextlib.suppress(Exception):  # as the library does: the card's note is optional
            self.model.model_card_data.set_best_model_step(step)
        if step != self.state.global_step:
            try:
                self._load_from_checkpoint(best)
            except Exception as exc:
                raise TrainingError(f"{best}: cannot load the best checkpoint: {exc}") from exc
