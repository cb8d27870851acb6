"""Fine-tuning: MatryoshkaLoss(MultipleNegativesRankingLoss) with the NO_DUPLICATES batch sampler.

``train(data_dir, out_dir, model_cfg, train_cfg)`` reads ``train.parquet`` and ``validation.parquet``
(never ``eval.parquet``: that split decides promotion later), evaluates the validation slice each
epoch with the fast per-dimension IR evaluator, keeps the best checkpoint by
``dim_<max>_cosine_map@100`` and writes it to ``out_dir/model``. Checkpoints go to
``out_dir/checkpoints`` (``resume=True`` continues from the last complete one). A NaN or infinite
training loss stops training at once with :class:`TrainingError` and nothing is written to
``out_dir/model``; running out of device memory is an :class:`OutOfMemoryError`.

``train`` reads as the library's recipe, one numbered step after another; the trainer it runs (fast
input, clocks, NaN guard, checkpoint safety) is :mod:`pipelines.trainer`, the step clocks and the
progress line :mod:`pipelines.clocks`, the fast input :mod:`pipelines.fastdata`.
"""

from __future__ import annotations

import contextlib
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
from pipelines.checkpoints import CHECKPOINTS_SUBDIR, resume_hint, resume_or_clear
from pipelines.config import ModelConfig, TrainingConfig
from pipelines.errors import (
    InputError,
    TrainingError,
    note_interrupt,
    out_of_memory_as_error,
    write_failure,
)
from pipelines.interpolation import Interpolation, base_weights, mix_with_base
from pipelines.io import read_json_object, write_json
from pipelines.metrics import dim_prefix, parse_key, primary_metric_key

if TYPE_CHECKING:
    import datasets
    import pandas as pd
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

    from pipelines.fastdata import FastTrainInput
    from pipelines.trainer import GuardedTrainer, ValidationIREvaluator

MODEL_SUBDIR = "model"
RESULT_FILE = "train_result.json"


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
    """``anchor``, ``positive`` and, when the split has one, ``negative`` of ``data_dir/<split>.parquet``;
    validation keeps its ``slice`` and ``relevant`` columns too (a hand-written ``human_dev`` question has every
    correct recipe card; the checkpoint and the base mix are chosen on the mean over slices).

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
    out = df[cols].astype(str).reset_index(drop=True)
    if split == "validation":
        for col in ("slice", "relevant"):
            if col in df.columns:
                out[col] = df[col].reset_index(drop=True)
    return out


# --- model, loss and input ----------------------------------------------------------------------


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


def _train_data(
    model: SentenceTransformer, run: _Run, cfg: TrainingConfig, progress: bool
) -> tuple[datasets.Dataset, FastTrainInput | None, dict[str, Any]]:
    """The train pairs as a dataset; the pre-tokenized train input (:mod:`pipelines.fastdata`), or
    ``None`` where the library's collator and sampler are used; and the result's settings: which input,
    and its preparation time."""
    import datasets

    t0 = time.perf_counter()
    fast_input, pipeline = None, "library"
    if cfg.input_pipeline == "fast":
        from pipelines.fastdata import FastPathUnsupported, prepare_train_input

        try:
            with _quiet_progress_bars(run.quiet):
                fast_input = prepare_train_input(model, run.train_df, data_dir=run.data_dir, split="train")
            pipeline = "fast"
        except FastPathUnsupported as exc:
            if progress:
                print(f"input pipeline: the library's collator and sampler ({exc})", flush=True)
            pipeline = f"library (fast path unsupported: {exc})"
    settings = {"input_pipeline": pipeline, "input_prep_seconds": round(time.perf_counter() - t0, 3)}
    return datasets.Dataset.from_pandas(run.train_df, preserve_index=False), fast_input, settings


def _names_stage(model: SentenceTransformer, run: _Run, cfg: TrainingConfig, progress: bool) -> dict[str, Any] | None:
    """Run the names stage on ``model`` in place; what it did (or why it was skipped), None when off."""
    from pipelines.names_stage import NAMES_FILE, load_names, train_names
    from pipelines.trainer import resolve_precision

    if cfg.name_rounds == 0:
        return None
    # Resuming runs it too: the checkpoint holds the trained weights, but the base mix needs the stage's model.
    skipped = None
    if (names := load_names(run.data_dir)) is None:
        skipped = f"the dataset has no {NAMES_FILE} (synthesized datasets have one)"
    elif names.empty:
        skipped = f"{NAMES_FILE} has no rows"
    if skipped:
        if progress:
            print(f"names stage: skipped ({skipped})", flush=True)
        return {"skipped": skipped}
    import torch

    from pipelines.attention import attention_context

    bf16 = resolve_precision(cfg.precision, run.device) == "bf16"
    log = (lambda line: print(line, flush=True)) if progress and distributed.is_main_process() else None
    with attention_context(cfg.attention_backend, run.device):
        result = train_names(
            model,
            names,
            _build_loss(model, cfg),  # one rank's own batches: every rank runs the whole stage, nothing gathered
            rounds=cfg.name_rounds,
            batch_size=cfg.name_batch_size,
            max_seq_length=cfg.name_max_seq_length,
            learning_rate=cfg.learning_rate,
            max_grad_norm=cfg.max_grad_norm,
            seed=cfg.seed,
            device=run.device,
            autocast_dtype=torch.bfloat16 if bf16 else None,
            log_every=max(1, cfg.logging_steps * 2),
            log=log,
        )
    distributed.broadcast_weights(model)  # every rank ran the same steps; rank 0's weights are the ones kept
    if log:
        log(
            f"names stage: {result.rounds} rounds over {result.pairs:,} name pairs in {result.classes:,} classes, "
            f"{result.steps} steps, {result.seconds:.1f} s, loss {result.first_loss:.4f} -> {result.last_loss:.4f}"
        )
    return result.to_dict()


def _validation_evaluator(run: _Run, cfg: TrainingConfig, model: SentenceTransformer) -> ValidationIREvaluator | None:
    """The per-epoch validation at every Matryoshka dim; ``None`` with ``training.eval_strategy=no``."""
    if run.validation_df is None:
        return None
    from pipelines.trainer import ValidationIREvaluator

    dims, batch = cfg.matryoshka_dims, cfg.eval_batch_size
    return ValidationIREvaluator(run.validation_df, dims, batch, model.similarity_fn_name)


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


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What one ``train`` call works with, settled before the model loads."""

    data_dir: Path
    out_dir: Path
    train_df: pd.DataFrame
    validation_df: pd.DataFrame | None  # None: no per-epoch validation (training.eval_strategy=no)
    world: int
    global_batch: int
    resume_from: Path | None
    device: str
    attention: str
    quiet: bool  # no tqdm bars into a pipe or a log

    @property
    def checkpoints_dir(self) -> Path:
        return self.out_dir / CHECKPOINTS_SUBDIR


def _start_run(data_dir: Path, out_dir: Path, cfg: TrainingConfig, resume: bool, progress: bool) -> _Run:
    """The checks that need no model, so a bad input fails before it loads: the splits, the batch
    over the ranks, the checkpoint to resume from (or the stale ones cleared), the device."""
    from pipelines.attention import describe_attention_backend
    from pipelines.models import pick_device

    data_dir = Path(data_dir)
    out_dir = Path(out_dir).resolve()
    train_df = load_split(data_dir, "train")
    validation_df = load_split(data_dir, "validation") if cfg.eval_strategy != "no" else None
    world = distributed.world_size()
    global_batch, _ = distributed.batch_split(cfg.global_batch_size, cfg.per_device_batch_size, world)
    if world > 1 and len(train_df) < global_batch:
        raise InputError(f"{len(train_df)} train pairs are fewer than one global batch of {global_batch}")
    resume_from = resume_or_clear(out_dir / CHECKPOINTS_SUBDIR, resume, world)
    device = pick_device(cfg.device)
    distributed.setup_rank(device)
    attention = describe_attention_backend(cfg.attention_backend, device)  # InputError before loading
    quiet = not progress or not sys.stderr.isatty()
    return _Run(data_dir, out_dir, train_df, validation_df, world, global_batch, resume_from, device, attention, quiet)


def _base_model(model_cfg: ModelConfig, cfg: TrainingConfig, run: _Run) -> SentenceTransformer:
    """The base model at ``model.max_seq_length``; its dimension must hold every Matryoshka dim."""
    from pipelines.models import resolve_base_model

    with _quiet_progress_bars(run.quiet):
        model = load_training_model(resolve_base_model(model_cfg.base_model), run.device, model_cfg.base_model)
    model.max_seq_length = model_cfg.max_seq_length
    full_dim = model.get_embedding_dimension()
    if full_dim is not None and max(cfg.matryoshka_dims) > full_dim:
        raise InputError(
            f"training.matryoshka_dims {list(cfg.matryoshka_dims)} exceed the model's dimension {full_dim}"
        )
    return model


@contextlib.contextmanager
def _explained_failures(run: _Run, cfg: TrainingConfig) -> Iterator[None]:
    """Failures of the training loop as what to do next: an interrupt notes how to resume, running
    out of memory is an :class:`OutOfMemoryError` (with the batch-size hint), a missing attention
    kernel a :class:`TrainingError`."""
    try:
        with out_of_memory_as_error(run.global_batch // run.world, "training"):
            yield
    except KeyboardInterrupt as exc:
        note_interrupt(exc, resume_hint(run.data_dir, run.out_dir))
        raise
    except (RuntimeError, ValueError) as exc:
        if "no available kernel" in str(exc).lower():
            raise TrainingError(
                f"training.attention_backend={cfg.attention_backend}: torch has no such attention kernel "
                "for these inputs (flash takes no padding mask); use auto or efficient"
            ) from exc
        raise


# --- results ------------------------------------------------------------------------------------


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
    return {
        k.removeprefix("eval_"): float(v)
        for k, v in chosen.items()
        if (parsed := parse_key(k.removeprefix("eval_"))) and parsed[2] in dims
    }


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


def _train_result(
    run: _Run,
    model_cfg: ModelConfig,
    cfg: TrainingConfig,
    trainer: GuardedTrainer,
    seconds: float,
    pairs_seen: int,
    primary: str,
    input_settings: dict[str, Any],
    mix: Interpolation | None = None,
    names_stage: dict[str, Any] | None = None,
) -> TrainResult:
    from pipelines.attention import model_attn_implementation
    from pipelines.trainer import resolve_precision

    state, args, clocks = trainer.state, trainer.args, trainer.clocks
    best_step = state.best_global_step if state.best_model_checkpoint else None
    eval_seconds = float(getattr(trainer.evaluator, "seconds", 0.0))
    return TrainResult(
        model_dir=run.out_dir / MODEL_SUBDIR,
        loss_history=_loss_history(state.log_history),
        best_checkpoint=state.best_model_checkpoint,
        validation_metrics=mix.metrics
        if mix
        else _best_validation_metrics(state.log_history, best_step, cfg.matryoshka_dims),
        train_pairs=len(run.train_df),
        seconds=round(seconds, 3),
        pairs_per_second=round(pairs_seen / max(seconds - eval_seconds, 1e-9), 2),
        device=run.device,
        global_step=int(state.global_step),
        resumed_from=str(run.resume_from) if run.resume_from else None,
        eval_seconds=round(eval_seconds, 3),
        settings={
            "base_model": model_cfg.base_model,
            "max_seq_length": model_cfg.max_seq_length,
            "optim": args.optim if isinstance(args.optim, str) else str(args.optim.value),
            "precision": resolve_precision(cfg.precision, run.device),
            "per_device_batch_size": run.global_batch // run.world,
            "global_batch_size": run.global_batch,
            "world_size": run.world,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "loss": cfg.loss,
            "matryoshka_dims": list(cfg.matryoshka_dims),
            "pairs_seen": pairs_seen,
            "primary_metric": primary,
            "attention_backend": cfg.attention_backend,
            "attention_kernels": run.attention,
            "attn_implementation": model_attn_implementation(trainer.model),
            **input_settings,  # input_pipeline, input_prep_seconds
            "data_wait_seconds": round(float(clocks.data_wait_seconds), 3),
            "loop_seconds": round(float(clocks.loop_seconds), 3),
            "loop_pairs_per_second": round(pairs_seen / clocks.loop_seconds, 2) if clocks.loop_seconds > 0 else None,
            "checkpoint_seconds": round(float(clocks.checkpoint_seconds), 3),
            "names_stage": names_stage,
            "base_interpolation": mix.to_dict() if mix else None,
        },
        world_size=run.world,
    )


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
    from pipelines.attention import attention_context
    from pipelines.clocks import LineProgress
    from pipelines.trainer import GuardedTrainer, build_training_args

    # 1. Load the base model, after the checks that need none (data, checkpoints, device, ranks).
    run = _start_run(data_dir, out_dir, train_cfg, resume, progress)
    model = _base_model(model_cfg, train_cfg, run)

    # 2. The names stage (training.name_rounds): an ingredient's names are one thing. The base mix of
    #    step 9 starts from here, so it keeps the names and mixes back only what the questions wore away.
    names_stage = _names_stage(model, run, train_cfg, progress)
    base_state = base_weights(model, train_cfg) if run.validation_df is not None else None  # for step 9

    # 3. Load data: the train pairs, pre-tokenized once by the fast input pipeline where it applies.
    train_dataset, fast_input, input_settings = _train_data(model, run, train_cfg, progress)

    # 4. The loss: MatryoshkaLoss(MultipleNegativesRankingLoss) at training.matryoshka_dims.
    loss = _build_loss(model, train_cfg, run.world)

    # 5. The validation evaluator (none with training.eval_strategy=no) and the metric the checkpoint is
    #    chosen on: map@100 at the largest dim, averaged over validation's slices where it has them.
    evaluator = _validation_evaluator(run, train_cfg, model)
    sim = model.similarity_fn_name
    primary = str(evaluator.primary_metric) if evaluator else primary_metric_key(train_cfg.matryoshka_dims, sim)

    # 6. Training arguments.
    args = build_training_args(train_cfg, run.checkpoints_dir, run.device, primary, progress, run.world)

    # 7. The trainer, with one progress line per logging step (pairs per step: global batch x accumulation).
    trainer = GuardedTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        fast_input=fast_input,
        length_buckets=train_cfg.length_buckets if run.world == 1 else 1,
        device=run.device,
        callbacks=callbacks,
    )
    if progress:
        trainer.add_callback(LineProgress(primary, run.global_batch * train_cfg.gradient_accumulation_steps))

    # 8. Train, from the last complete checkpoint when resuming.
    t0 = time.perf_counter()
    with (
        _explained_failures(run, train_cfg),
        _quiet_progress_bars(run.quiet),
        attention_context(train_cfg.attention_backend, run.device),
    ):
        trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    seconds = time.perf_counter() - t0

    # 9. Keep what the base model knew: mix its weights back in, the mix chosen on validation (rank 0).
    pairs_seen = int(distributed.sum_across_ranks(trainer.pairs_seen, run.device))  # the whole job's pairs
    distributed.barrier()
    mix = mix_with_base(trainer.model, base_state, evaluator, train_cfg, run.device)

    # 10. Save the model (rank 0, once every rank finished) and train_result.json.
    if distributed.is_main_process():
        with _quiet_progress_bars(run.quiet):
            _install_model(trainer.model, run.out_dir / MODEL_SUBDIR)
    result = _train_result(
        run, model_cfg, train_cfg, trainer, seconds, pairs_seen, primary, input_settings, mix, names_stage
    )
    if distributed.is_main_process():
        write_json(result.to_dict(), run.out_dir / RESULT_FILE)
    return result
